//! Retrieval over the indexer's stores, within a caller's scope.
//!
//! Tier 2 of the two-tier retriever (topic packages are tier 1): BM25 over
//! the lexical index and cosine similarity over the vector store, each
//! filtered by the caller's scope (allowed sources, tier ceiling) inside
//! the engine, fused by weighted reciprocal rank, de-duplicated, packed
//! into a token budget, and tagged with provenance. Without a model or
//! vectors the same query is served lexically and says so.

mod fusion;
mod policy_now;
mod provenance;
mod topics;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indexer::embed::Embedder;
use indexer::lexical::{ChunkDoc, Filter, Lexical};
use indexer::manifest::{Manifests, SourceManifest};
use indexer::vector::{VectorFilter, VectorStore};
use registry::{Registry, Scope, Status};
use serde::Serialize;

pub use fusion::Fusion;
pub use provenance::{Freshness, Provenance, citation};
pub use topics::{
    CitationProvenance, LoadProblem, MatchScore, PackageHit, PackageProvenance, TopicDecision, TopicMatch,
    Topics, default_max_age, read_package_file, readable_by, terms,
};

#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    #[error("no index at {0}; run `ctxplane index` first")]
    NoIndex(PathBuf),
    #[error(transparent)]
    Index(#[from] indexer::IndexError),
    #[error("embedding the query failed: {0}")]
    Embed(String),
}

pub type Result<T> = std::result::Result<T, RetrieveError>;

/// Which engines answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Hybrid,
    Lexical,
    Dense,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    /// Most results to return.
    pub limit: usize,
    /// Token budget for the returned content (about four characters a token).
    pub max_tokens: usize,
    /// Try topic packages (tier 1) before search.
    pub packages: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Hybrid,
            limit: 10,
            max_tokens: 4_000,
            packages: true,
        }
    }
}

/// Who asks: the registry in force and the scope it grants them.
#[derive(Debug)]
pub struct Caller<'a> {
    pub registry: &'a Registry,
    pub scope: Scope,
}

impl<'a> Caller<'a> {
    /// The operator: every approved source, every tier.
    pub fn operator(registry: &'a Registry) -> Caller<'a> {
        Caller {
            registry,
            scope: Scope {
                principal: "(operator)".into(),
                role: registry::Role::Steward,
                tier_ceiling: registry::Tier::MAX,
                sources: registry
                    .sources
                    .values()
                    .filter(|s| s.status == Status::Approved)
                    .map(|s| s.id.clone())
                    .collect(),
            },
        }
    }
}

/// One result.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Hit {
    /// The result id: the chunk id, stable while the content is unchanged.
    pub id: String,
    pub score: f32,
    /// Estimated tokens of `content`.
    pub tokens: usize,
    pub content: String,
    pub provenance: Provenance,
}

/// Why dense search is off when the vector store fails: callers are not
/// told addresses or server messages (the operator's log and /readyz are).
pub const STORE_UNAVAILABLE: &str = "vector store unavailable";

/// The dense side's state, reported with every answer.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct DenseStatus {
    pub available: bool,
    pub model_id: Option<String>,
    pub vectors: usize,
    pub chunks: u64,
    /// Share of chunks that have a vector.
    pub coverage: f64,
    /// Why dense search is not available, if it is not.
    pub reason: Option<String>,
}

impl DenseStatus {
    /// No dense search, and why (nothing counted).
    pub fn unavailable(reason: impl Into<String>) -> DenseStatus {
        DenseStatus {
            available: false,
            model_id: None,
            vectors: 0,
            chunks: 0,
            coverage: 0.0,
            reason: Some(reason.into()),
        }
    }
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Answer {
    pub query: String,
    /// `topic_package` (tier 1: the answer is `package`), or `hybrid`,
    /// `lexical` or `dense` (tier 2: the answer is `results`).
    pub served_by: String,
    /// The topic package served, when tier 1 answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageHit>,
    /// What tier 1 decided, when topic packages are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<TopicDecision>,
    pub results: Vec<Hit>,
    /// Tokens used of `max_tokens`.
    pub tokens: usize,
    pub max_tokens: usize,
    /// Results left out because they did not fit the budget.
    pub over_budget: usize,
    /// Results left out because the registry as it is now denies their
    /// path (a never-ingest rule or a lapsed exception not yet applied by
    /// an indexing pass, which will purge them).
    pub withheld_by_policy: usize,
    pub dense: DenseStatus,
    pub took_ms: f64,
    pub embed_ms: f64,
}

/// A manifest and the modification time of its file when read.
type CachedManifest = (Option<std::time::SystemTime>, Arc<SourceManifest>);
/// A source's pinned versions, for the manifest they were read with.
type CachedDeps = (Arc<SourceManifest>, Arc<packages::lockfile::DependencyMap>);
/// A file's imports, by (source, path, file hash).
type CachedImports = Arc<Vec<indexer::chunk::imports::Import>>;
/// Files whose imports are kept before the cache starts over.
const MAX_CACHED_IMPORTS: usize = 20_000;

struct Dense {
    embedder: Arc<Embedder>,
    store: std::sync::RwLock<Box<dyn VectorStore>>,
}

pub struct Retriever {
    lexical: Lexical,
    dense: Option<Dense>,
    dense_reason: Option<String>,
    manifests: Manifests,
    /// Where topic packages' text vectors are kept between processes.
    topic_vectors: PathBuf,
    manifest_cache: Mutex<HashMap<String, CachedManifest>>,
    deps_cache: Mutex<HashMap<String, CachedDeps>>,
    imports_cache: Mutex<HashMap<(String, String, String), CachedImports>>,
    topics: Option<Topics>,
    decisions: policy_now::Decisions,
    pub fusion: Fusion,
    pub topic_match: TopicMatch,
    /// Every reading of "now" (freshness, topic staleness) comes from here.
    clock: Arc<dyn registry::Clock>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("dense", &self.dense.is_some())
            .field("fusion", &self.fusion)
            .finish_non_exhaustive()
    }
}

impl Retriever {
    /// Opens the indexes under `data_dir`. `dense` is the model and vector
    /// store, or why there are none; either way the retriever serves.
    pub fn open(
        data_dir: &Path,
        dense: std::result::Result<(Arc<Embedder>, Box<dyn VectorStore>), String>,
    ) -> Result<Retriever> {
        let dir = data_dir.join("index/lexical");
        if !dir.join("meta.json").exists() {
            return Err(RetrieveError::NoIndex(dir));
        }
        let lexical = Lexical::open(&dir)?;
        let (dense, dense_reason) = match dense.map(|(e, s)| (s.len(), e, s)) {
            Ok((Ok(n), embedder, store)) if n > 0 => (
                Some(Dense {
                    embedder,
                    store: std::sync::RwLock::new(store),
                }),
                None,
            ),
            Ok((Ok(_), _, _)) => (
                None,
                Some("no vectors yet (`serve` builds them in the background; `ctxplane index` builds them all)".to_string()),
            ),
            Ok((Err(_), _, _)) => (None, Some(STORE_UNAVAILABLE.to_string())),
            Err(reason) => (None, Some(reason)),
        };
        Ok(Retriever {
            lexical,
            dense,
            dense_reason,
            manifests: Manifests::new(data_dir.join("index/manifests")),
            topic_vectors: data_dir.join("vectors/topics"),
            manifest_cache: Mutex::new(HashMap::new()),
            deps_cache: Mutex::new(HashMap::new()),
            imports_cache: Mutex::new(HashMap::new()),
            topics: None,
            decisions: policy_now::Decisions::default(),
            fusion: Fusion::default(),
            topic_match: TopicMatch::default(),
            clock: Arc::new(registry::SystemClock),
        })
    }

    /// Serves topic packages from `dir` as tier 1; stale ones are served
    /// (flagged) for `grace_days` after they went stale.
    pub fn with_topics(mut self, dir: &Path, grace_days: u32) -> Retriever {
        self.topics = Some(Topics::new(dir, grace_days).with_vector_dir(&self.topic_vectors));
        self
    }

    /// Reads "now" from `clock` (the service's injectable clock).
    pub fn with_clock(mut self, clock: Arc<dyn registry::Clock>) -> Retriever {
        self.clock = clock;
        self
    }

    pub(crate) fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    pub fn topics(&self) -> Option<&Topics> {
        self.topics.as_ref()
    }

    pub fn lexical(&self) -> &Lexical {
        &self.lexical
    }

    pub fn dense_status(&self) -> DenseStatus {
        let chunks = self.lexical.total_chunks();
        let counted = self.dense.as_ref().map(|d| {
            d.store
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len()
        });
        match (&self.dense, counted) {
            (Some(d), Some(Ok(vectors))) => DenseStatus {
                available: true,
                model_id: Some(d.embedder.model_id().to_string()),
                vectors,
                chunks,
                coverage: if chunks == 0 {
                    1.0
                } else {
                    vectors as f64 / chunks as f64
                },
                reason: None,
            },
            (d, counted) => DenseStatus {
                available: false,
                model_id: d.as_ref().map(|d| d.embedder.model_id().to_string()),
                vectors: 0,
                chunks,
                coverage: 0.0,
                reason: match counted {
                    Some(Err(_)) => Some(STORE_UNAVAILABLE.to_string()),
                    _ => self.dense_reason.clone(),
                },
            },
        }
    }

    /// The dense side's state as a caller may see it: chunks and vectors
    /// counted only within `sources` up to `max_tier`, so that an answer
    /// never tells a scoped caller the size of what it cannot see.
    pub fn dense_status_within(&self, sources: &BTreeSet<String>, max_tier: u8) -> DenseStatus {
        let listed: Vec<String> = sources.iter().cloned().collect();
        let chunks = self.lexical.count_within(&listed, max_tier);
        let mut status = self.dense_status();
        status.chunks = chunks;
        if let Some(d) = &self.dense {
            let filter = VectorFilter {
                sources: sources.clone(),
                max_tier,
                path_prefix: None,
            };
            let counted = d
                .store
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .count(&filter);
            match counted {
                Ok(n) => status.vectors = n,
                Err(_) => {
                    status.available = false;
                    status.vectors = 0;
                    status.reason = Some(STORE_UNAVAILABLE.to_string());
                }
            }
            status.coverage = if chunks == 0 {
                1.0
            } else {
                status.vectors as f64 / chunks as f64
            };
        }
        status
    }

    /// Picks up commits made by an indexer since the last call: the
    /// lexical index and the vectors.
    pub fn refresh(&self) -> Result<()> {
        self.lexical.reload()?;
        if let Some(d) = &self.dense {
            d.store
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .refresh()?;
        }
        Ok(())
    }

    /// Answers `text` for `caller`. Excluded content is filtered inside both
    /// engines, so it never competes for a rank, and is checked again on
    /// the way out.
    pub fn query(&self, caller: &Caller<'_>, text: &str, opts: &Options) -> Result<Answer> {
        let started = Instant::now();
        let sources: BTreeSet<String> = caller.scope.sources.iter().map(|s| s.to_string()).collect();
        let max_tier = caller.scope.tier_ceiling.get();
        let want = opts.limit.clamp(1, 100);
        let candidates = self.fusion.candidates.max(want * 3);
        let mode = match (opts.mode, &self.dense) {
            (Mode::Lexical, _) | (_, None) => Mode::Lexical,
            (m, Some(_)) => m,
        };
        let mut embed_ms = 0.0;
        let query_vec = match &self.dense {
            Some(d) if mode != Mode::Lexical && !text.trim().is_empty() => {
                let t = Instant::now();
                let v = d
                    .embedder
                    .embed_interactive(&[text])
                    .map_err(|e| RetrieveError::Embed(e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                embed_ms = t.elapsed().as_secs_f64() * 1000.0;
                Some(v)
            }
            _ => None,
        };
        let mut topic = None;
        if opts.packages
            && let Some(topics) = &self.topics
        {
            let t1 = self.tier1(topics, caller, text, query_vec.as_deref(), opts.max_tokens)?;
            if let Some(hit) = t1.hit {
                return Ok(Answer {
                    query: text.to_string(),
                    served_by: "topic_package".into(),
                    tokens: hit.tokens,
                    package: Some(hit),
                    topic: Some(t1.decision),
                    results: Vec::new(),
                    max_tokens: opts.max_tokens,
                    over_budget: 0,
                    withheld_by_policy: 0,
                    dense: self.dense_status_within(&sources, max_tier),
                    took_ms: started.elapsed().as_secs_f64() * 1000.0,
                    embed_ms,
                });
            }
            topic = Some(t1.decision);
        }
        let mut dense_ranked: Vec<ChunkDoc> = Vec::new();
        // A vector store that fails (a server gone, a timeout) does not
        // fail the query: it is answered lexically and says why.
        let mut dense_failure: Option<String> = None;
        if mode != Mode::Lexical
            && let (Some(d), Some(v)) = (&self.dense, &query_vec)
        {
            let filter = VectorFilter {
                sources: sources.clone(),
                max_tier,
                path_prefix: None,
            };
            let found = d
                .store
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .search(v, &filter, candidates);
            match found {
                Ok(hits) => {
                    let ids: Vec<String> = hits.into_iter().map(|(id, _)| id).collect();
                    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                    dense_ranked = self.lexical.docs_by_id(&refs)?;
                }
                // The detail (addresses, server messages) is for the
                // operator's log and /readyz, not for every caller.
                Err(_) => dense_failure = Some(format!("{STORE_UNAVAILABLE}; answered lexically")),
            }
        }
        let mut lexical_ranked: Vec<ChunkDoc> = Vec::new();
        if mode != Mode::Dense || dense_failure.is_some() {
            let filter = Filter {
                sources: sources.iter().cloned().collect(),
                max_tier,
            };
            lexical_ranked = self
                .lexical
                .search(text, &filter, candidates)?
                .into_iter()
                .map(|(_, d)| d)
                .collect();
        }
        let fused = self.fusion.fuse(&lexical_ranked, &dense_ranked);
        let served_by = match mode {
            _ if dense_failure.is_some() => "lexical",
            Mode::Hybrid => "hybrid",
            Mode::Lexical => "lexical",
            Mode::Dense => "dense",
        };
        let mut seen_content = BTreeSet::new();
        let mut results = Vec::new();
        let mut tokens = 0;
        let mut over_budget = 0;
        let mut withheld_by_policy = 0;
        let policy = caller.registry.policy(&*self.clock);
        let epoch = policy.epoch();
        for f in fused {
            let doc = f.doc;
            // Defence in depth: the engines filtered already.
            let in_scope = sources.contains(&doc.source) && doc.tier <= max_tier && doc.tier >= 1;
            if !in_scope || !seen_content.insert(doc.chunk_hash.clone()) {
                continue;
            }
            if results.len() >= want {
                break;
            }
            if self
                .decisions
                .denied(&policy, &epoch, &doc.source, &doc.path)
                .is_some()
            {
                withheld_by_policy += 1;
                continue;
            }
            let t = estimate_tokens(&doc.content);
            if tokens + t > opts.max_tokens {
                over_budget += 1;
                continue;
            }
            tokens += t;
            let provenance = self.provenance(caller.registry, &doc, served_by, f.lexical_rank, f.dense_rank);
            results.push(Hit {
                id: doc.chunk_id.clone(),
                score: f.score,
                tokens: t,
                content: doc.content,
                provenance,
            });
        }
        Ok(Answer {
            query: text.to_string(),
            served_by: served_by.to_string(),
            package: None,
            topic,
            results,
            tokens,
            max_tokens: opts.max_tokens,
            over_budget,
            withheld_by_policy,
            dense: match dense_failure {
                Some(reason) => DenseStatus {
                    chunks: self
                        .lexical
                        .count_within(&sources.iter().cloned().collect::<Vec<_>>(), max_tier),
                    model_id: self.dense.as_ref().map(|d| d.embedder.model_id().to_string()),
                    ..DenseStatus::unavailable(reason)
                },
                None => self.dense_status_within(&sources, max_tier),
            },
            took_ms: started.elapsed().as_secs_f64() * 1000.0,
            embed_ms,
        })
    }

    /// Why the registry as it is now (at the retriever's clock) denies
    /// `source:path` (the reason's code and description), or `None` if it
    /// lets it in.
    pub fn denied_now(
        &self,
        registry: &Registry,
        source: &str,
        path: &str,
    ) -> Option<(&'static str, String)> {
        let policy = registry.policy(&*self.clock);
        self.decisions.denied(&policy, &policy.epoch(), source, path)
    }

    /// The chunk behind a result id, if it is still in the index.
    pub fn chunk(&self, id: &str) -> Result<Option<ChunkDoc>> {
        Ok(self.lexical.docs_by_id(&[id])?.pop())
    }

    /// A source's manifest, cached until its file changes.
    pub fn manifest(&self, source: &str) -> Option<Arc<SourceManifest>> {
        let path = self.manifests.path_of(source);
        let mtime = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let mut cache = self
            .manifest_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((t, m)) = cache.get(source)
            && *t == mtime
        {
            return Some(m.clone());
        }
        let m = Arc::new(self.manifests.load(source).ok()?);
        cache.insert(source.to_string(), (mtime, m.clone()));
        Some(m)
    }
}

impl Retriever {
    /// What the source's ingested lockfiles pin (cached per manifest).
    pub fn dependencies(&self, source: &str) -> Option<Arc<packages::lockfile::DependencyMap>> {
        self.dependencies_of(self.manifest(source)?)
    }

    /// [`Retriever::dependencies`] for a manifest already read.
    pub(crate) fn dependencies_of(
        &self,
        manifest: Arc<SourceManifest>,
    ) -> Option<Arc<packages::lockfile::DependencyMap>> {
        let mut cache = self
            .deps_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((m, d)) = cache.get(&manifest.source)
            && Arc::ptr_eq(m, &manifest)
        {
            return Some(d.clone());
        }
        let deps = Arc::new(indexer::alignment::dependency_map(&self.lexical, &manifest).ok()?);
        cache.insert(manifest.source.clone(), (manifest, deps.clone()));
        Some(deps)
    }
}

impl Retriever {
    /// The imports of an indexed file (its redacted text, as agents see
    /// it), cached by content hash.
    pub(crate) fn file_imports(&self, doc: &ChunkDoc) -> CachedImports {
        let key = (doc.source.clone(), doc.path.clone(), doc.file_hash.clone());
        if let Some(hit) = self
            .imports_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return hit.clone();
        }
        let found = Arc::new(
            indexer::alignment::indexed_text(&self.lexical, &doc.source, &doc.path)
                .map(|text| indexer::chunk::imports::imports(&text, &doc.language))
                .unwrap_or_default(),
        );
        let mut cache = self
            .imports_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= MAX_CACHED_IMPORTS {
            cache.clear();
        }
        cache.insert(key, found.clone());
        found
    }
}

/// About four characters per token for English and code.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4).max(1)
}
