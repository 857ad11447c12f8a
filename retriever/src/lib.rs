//! Retrieval over the indexer's stores, within a caller's scope.
//!
//! Tier 2 of the two-tier retriever (topic packages are tier 1): BM25 over
//! the lexical index and cosine similarity over the vector store, each
//! filtered by the caller's scope (allowed sources, tier ceiling) inside
//! the engine, fused by calibrated scores (each engine's over its best for
//! the query; see `fusion`), de-duplicated, packed
//! into a token budget, and tagged with provenance. Without a model or
//! vectors the same query is served lexically and says so.

mod fusion;
mod policy_now;
mod provenance;
mod shape;
mod topics;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use indexer::embed::Embedder;
use indexer::lexical::{ChunkDoc, ChunkIndex, Filter, Lexical};
use indexer::manifest::{Manifests, SourceManifest};
use indexer::vector::{VectorFilter, VectorStore};
use registry::{Registry, Scope, Status, Treatment};
use serde::Serialize;

use fusion::Fused;
pub use fusion::{Fusion, Method, Weights};
pub use provenance::{Freshness, Provenance, citation};
pub use shape::{EvidenceWeights, Shape};
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
    /// Chunks, or files ranked by their chunks (`limit` counts files).
    pub group_by: GroupBy,
}

/// What tier 2 ranks and `limit` counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// Chunks, best first.
    #[default]
    Chunk,
    /// Files, ranked by an aggregate of their chunks' fused scores (the
    /// best counts fully, the next two half and a quarter), each with its
    /// best chunks as results.
    File,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            mode: Mode::Hybrid,
            limit: 10,
            max_tokens: 4_000,
            packages: true,
            group_by: GroupBy::Chunk,
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

/// One file of a file-grouped answer.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct FileHit {
    pub source: String,
    pub path: String,
    pub language: String,
    /// The aggregate of its chunks' fused scores.
    pub score: f32,
    /// Its best chunks' result ids, best first; each is in `results` with
    /// its content and provenance.
    pub chunks: Vec<String>,
}

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
    /// The query as asked; one longer than [`QUERY_ECHO_BYTES`] is echoed
    /// by its beginning and `…` (the whole text still counts for the audit
    /// hash and snapshots).
    #[serde(serialize_with = "echo_query")]
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
    /// With `group_by = "file"`: the files, best first, each naming its
    /// chunks among `results` (which hold their content and provenance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHit>,
    /// Tokens used of `max_tokens`.
    pub tokens: usize,
    pub max_tokens: usize,
    /// Results left out because they did not fit the budget.
    pub over_budget: usize,
    /// Results left out because the registry as it is now denies their
    /// path (a never-ingest rule or a lapsed exception not yet applied by
    /// an indexing pass, which will purge them).
    pub withheld_by_policy: usize,
    /// Results left out by their source's answer rules (lockfiles,
    /// generated and vendored files by default; see `answers` in the
    /// registry). Tests and changelogs are ranked lower, not left out, by
    /// default.
    pub left_out_by_answer_rules: usize,
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
    /// Chunks and their BM25 index: the local tantivy index, or a shared
    /// one (Qdrant) on a replica that has none.
    lexical: Arc<dyn ChunkIndex>,
    dense: Option<Dense>,
    dense_reason: Option<String>,
    manifests: Manifests,
    /// Where topic packages' text vectors are kept between processes.
    topic_vectors: PathBuf,
    manifest_cache: Mutex<HashMap<String, CachedManifest>>,
    shared_manifests: Mutex<HashMap<String, SharedManifest>>,
    deps_cache: Mutex<HashMap<String, CachedDeps>>,
    imports_cache: Mutex<HashMap<(String, String, String), CachedImports>>,
    topics: Option<Topics>,
    decisions: policy_now::Decisions,
    pub fusion: Fusion,
    /// How much identifiers, paths, frames and error lines found in a
    /// query count in BM25.
    pub evidence: EvidenceWeights,
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
        let lexical: Arc<dyn ChunkIndex> = Arc::new(Lexical::open(&dir)?);
        Ok(Retriever::with_index(data_dir, lexical, dense))
    }

    /// A retriever over `index` (a shared index read by replicas that
    /// have no local one), with manifests and topic vectors under
    /// `data_dir` where there are any.
    pub fn with_index(
        data_dir: &Path,
        lexical: Arc<dyn ChunkIndex>,
        dense: std::result::Result<(Arc<Embedder>, Box<dyn VectorStore>), String>,
    ) -> Retriever {
        // A replica's shared store fills in while it serves: an empty one
        // now is not a reason to answer lexically for good.
        let shared = lexical.shares_manifests();
        let (dense, dense_reason) = match dense.map(|(e, s)| (s.len(), e, s)) {
            // (Nor is a failed count: each query asks the store again.)
            Ok((counted, embedder, store)) if shared || counted.as_ref().is_ok_and(|n| *n > 0) => (
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
        Retriever {
            lexical,
            dense,
            dense_reason,
            manifests: Manifests::new(data_dir.join("index/manifests")),
            topic_vectors: data_dir.join("vectors/topics"),
            manifest_cache: Mutex::new(HashMap::new()),
            shared_manifests: Mutex::new(HashMap::new()),
            deps_cache: Mutex::new(HashMap::new()),
            imports_cache: Mutex::new(HashMap::new()),
            topics: None,
            decisions: policy_now::Decisions::default(),
            fusion: Fusion::default(),
            evidence: EvidenceWeights::default(),
            topic_match: TopicMatch::default(),
            clock: Arc::new(registry::SystemClock),
        }
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

    /// The chunks and their BM25 index (local or shared).
    pub fn lexical(&self) -> &dyn ChunkIndex {
        &*self.lexical
    }

    pub fn dense_status(&self) -> DenseStatus {
        let chunks = self.lexical.total_chunks().unwrap_or(0);
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
        let chunks = self.lexical.count_within(&listed, max_tier).unwrap_or(0);
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

    /// Chunks each engine is asked for to answer with `opts`.
    pub fn candidates(&self, opts: &Options) -> usize {
        let want = opts.limit.clamp(1, 100);
        match opts.group_by {
            // Files need more chunks to rank: several per file.
            GroupBy::File => self.fusion.candidates.max(want * 3 * CHUNKS_PER_FILE).min(500),
            GroupBy::Chunk => self.fusion.candidates.max(want * 3),
        }
    }

    /// Both engines' candidates for `text` as `caller` sees them, before
    /// fusion, with the weights hybrid fusion would give them: what
    /// [`Retriever::query`] fuses, for benchmarks and diagnosis. No topic
    /// packages, no answer rules, no budget.
    pub fn engine_lists(&self, caller: &Caller<'_>, text: &str, opts: &Options) -> Result<EngineLists> {
        let q = self.prepare(caller, text, opts)?;
        self.lists(text, &q, self.candidates(opts))
    }

    /// What both tiers need of a query before searching: the caller's
    /// reach, the mode the retriever can serve, the query's shape and its
    /// vector (with the time embedding took).
    fn prepare(&self, caller: &Caller<'_>, text: &str, opts: &Options) -> Result<Prepared> {
        let mode = match (opts.mode, &self.dense) {
            (Mode::Lexical, _) | (_, None) => Mode::Lexical,
            (m, Some(_)) => m,
        };
        let shape = Shape::of(text);
        let mut embed_ms = 0.0;
        let vector = match &self.dense {
            Some(d) if mode != Mode::Lexical && !text.trim().is_empty() => {
                let t = Instant::now();
                let v = d
                    .embedder
                    .embed_interactive(&[shape.dense_text(text).as_str()])
                    .map_err(|e| RetrieveError::Embed(e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                embed_ms = t.elapsed().as_secs_f64() * 1000.0;
                Some(v)
            }
            _ => None,
        };
        Ok(Prepared {
            sources: caller.scope.sources.iter().map(|s| s.to_string()).collect(),
            max_tier: caller.scope.tier_ceiling.get(),
            mode,
            shape,
            vector,
            embed_ms,
        })
    }

    /// Each engine's list for one query, best first, and the weights to
    /// fuse them with.
    fn lists(&self, text: &str, q: &Prepared, candidates: usize) -> Result<EngineLists> {
        let Prepared {
            sources,
            max_tier,
            mode,
            shape,
            ..
        } = q;
        let (max_tier, mode) = (*max_tier, *mode);
        let query_vec = q.vector.as_deref();
        // Each engine's list: (score, chunk), best first.
        let mut dense_ranked: Vec<(f32, ChunkDoc)> = Vec::new();
        // A vector store that fails (a server gone, a timeout) does not
        // fail the query: it is answered lexically and says why.
        let mut dense_failure: Option<String> = None;
        if mode != Mode::Lexical
            && let (Some(d), Some(v)) = (&self.dense, query_vec)
        {
            let filter = VectorFilter {
                sources: sources.clone(),
                max_tier,
                path_prefix: None,
            };
            let store = d.store.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            // On a replica the store is the index: the chunks come with the
            // hits. (Beside a local index they come from it, never from a
            // store that may lag behind it.)
            let shared = self.lexical.shares_manifests();
            let chunks = if shared {
                store.search_chunks(v, &filter, candidates)
            } else {
                Ok(None)
            };
            let found = match chunks {
                Ok(Some(docs)) => {
                    dense_ranked = docs;
                    Ok(None)
                }
                Ok(None) => store.search(v, &filter, candidates).map(Some),
                Err(e) => Err(e),
            };
            drop(store);
            match found {
                Ok(None) => {}
                Ok(Some(hits)) => {
                    let refs: Vec<&str> = hits.iter().map(|(id, _)| id.as_str()).collect();
                    let mut docs: HashMap<String, ChunkDoc> = self
                        .lexical
                        .docs_by_id(&refs)?
                        .into_iter()
                        .map(|d| (d.chunk_id.clone(), d))
                        .collect();
                    // In the store's order; a vector whose chunk has left
                    // the index since is skipped.
                    dense_ranked = hits
                        .iter()
                        .filter_map(|(id, score)| docs.remove(id).map(|d| (*score, d)))
                        .collect();
                }
                // The detail (addresses, server messages) is for the
                // operator's log and /readyz, not for every caller.
                Err(_) => dense_failure = Some(format!("{STORE_UNAVAILABLE}; answered lexically")),
            }
        }
        let mut lexical_ranked: Vec<(f32, ChunkDoc)> = Vec::new();
        let filter = Filter {
            sources: sources.iter().cloned().collect(),
            max_tier,
        };
        if mode != Mode::Dense || dense_failure.is_some() {
            lexical_ranked =
                self.lexical
                    .search_parts(&shape.lexical_parts(text, &self.evidence), &filter, candidates)?;
        }
        // One engine alone keeps its own ranking; hybrid weighs by the query.
        let weights = match mode {
            // The vector store failed: the lexical ranking alone.
            _ if dense_failure.is_some() => Weights::only(true),
            Mode::Hybrid => self.fusion.weights(shape, &dense_ranked),
            Mode::Lexical => Weights::only(true),
            Mode::Dense => Weights::only(false),
        };
        Ok(EngineLists {
            lexical: lexical_ranked,
            dense: dense_ranked,
            dense_failure,
            weights,
        })
    }

    /// Answers `text` for `caller`. Excluded content is filtered inside both
    /// engines, so it never competes for a rank, and is checked again on
    /// the way out.
    pub fn query(&self, caller: &Caller<'_>, text: &str, opts: &Options) -> Result<Answer> {
        let started = Instant::now();
        let want = opts.limit.clamp(1, 100);
        let q = self.prepare(caller, text, opts)?;
        let (sources, max_tier, mode, embed_ms) = (&q.sources, q.max_tier, q.mode, q.embed_ms);
        let mut topic = None;
        if opts.packages
            && let Some(topics) = &self.topics
        {
            let t1 = self.tier1(topics, caller, text, q.vector.as_deref(), opts.max_tokens)?;
            if let Some(hit) = t1.hit {
                return Ok(Answer {
                    query: text.to_string(),
                    served_by: "topic_package".into(),
                    tokens: hit.tokens,
                    package: Some(hit),
                    topic: Some(t1.decision),
                    results: Vec::new(),
                    files: Vec::new(),
                    max_tokens: opts.max_tokens,
                    over_budget: 0,
                    withheld_by_policy: 0,
                    left_out_by_answer_rules: 0,
                    dense: self.dense_status_within(sources, max_tier),
                    took_ms: started.elapsed().as_secs_f64() * 1000.0,
                    embed_ms,
                });
            }
            topic = Some(t1.decision);
        }
        let lists = self.lists(text, &q, self.candidates(opts))?;
        let EngineLists {
            lexical: lexical_ranked,
            dense: dense_ranked,
            dense_failure,
            weights,
            ..
        } = lists;
        let mut fused = self.fusion.fuse(&lexical_ranked, &dense_ranked, weights);
        // Each source's answer rules: tests and changelogs ranked lower,
        // lockfiles, generated and vendored files left out (unless the source says
        // otherwise). They stay indexed: drift and checks read them.
        let mut left_out_by_answer_rules = 0;
        fused.retain_mut(|f| match answer_treatment(caller.registry, &f.doc) {
            Treatment::Keep => true,
            Treatment::Demote => {
                f.score *= DEMOTION;
                true
            }
            Treatment::Exclude => {
                left_out_by_answer_rules += 1;
                false
            }
        });
        fusion::sort(&mut fused);
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
        // Defence in depth (the engines filtered already), one copy of each
        // text, and the registry as it is now.
        // The scope's sources whose tier, as the registry says now, is
        // within reach (decided once per query, not per candidate): a
        // store may still carry the tier a chunk was written with (a shared
        // one is re-tiered by the next sync), and a tier raised since must
        // hold at once.
        let reachable: BTreeSet<&str> = caller
            .scope
            .sources
            .iter()
            .filter(|id| {
                caller
                    .registry
                    .source(id)
                    .is_some_and(|s| (1..=max_tier).contains(&s.tier.get()))
            })
            .map(|id| id.as_str())
            .collect();
        let mut admit = |doc: &ChunkDoc, withheld: &mut usize| -> bool {
            let in_scope = reachable.contains(doc.source.as_str()) && doc.tier <= max_tier && doc.tier >= 1;
            if !in_scope || !seen_content.insert(doc.chunk_hash.clone()) {
                return false;
            }
            if self
                .decisions
                .denied(&policy, &epoch, &doc.source, &doc.path)
                .is_some()
            {
                *withheld += 1;
                return false;
            }
            true
        };
        // A chunk within the budget becomes a result.
        let mut serve = |f: Fused, results: &mut Vec<Hit>| {
            let t = estimate_tokens(&f.doc.content);
            if tokens + t > opts.max_tokens {
                over_budget += 1;
                return false;
            }
            tokens += t;
            let provenance =
                self.provenance(caller.registry, &f.doc, served_by, f.lexical_rank, f.dense_rank);
            results.push(Hit {
                id: f.doc.chunk_id.clone(),
                score: f.score,
                tokens: t,
                content: f.doc.content,
                provenance,
            });
            true
        };
        let mut files = Vec::new();
        match opts.group_by {
            GroupBy::Chunk => {
                for f in fused {
                    if results.len() >= want {
                        break;
                    }
                    if admit(&f.doc, &mut withheld_by_policy) {
                        serve(f, &mut results);
                    }
                }
            }
            GroupBy::File => {
                let admitted: Vec<Fused> = fused
                    .into_iter()
                    .filter(|f| admit(&f.doc, &mut withheld_by_policy))
                    .collect();
                for group in group_files(admitted, want) {
                    let mut served = Vec::new();
                    for f in group.chunks {
                        if serve(f, &mut results) {
                            served.push(results.last().map(|h| h.id.clone()).unwrap_or_default());
                        }
                    }
                    if let Some(best) = served.first().and_then(|id| results.iter().find(|h| &h.id == id)) {
                        files.push(FileHit {
                            source: best.provenance.source.clone(),
                            path: best.provenance.path.clone(),
                            language: best.provenance.language.clone(),
                            score: group.score,
                            chunks: served,
                        });
                    }
                }
            }
        }
        Ok(Answer {
            query: text.to_string(),
            served_by: served_by.to_string(),
            package: None,
            topic,
            results,
            files,
            tokens,
            max_tokens: opts.max_tokens,
            over_budget,
            withheld_by_policy,
            left_out_by_answer_rules,
            dense: match dense_failure {
                Some(reason) => DenseStatus {
                    chunks: self
                        .lexical
                        .count_within(&sources.iter().cloned().collect::<Vec<_>>(), max_tier)
                        .unwrap_or(0),
                    model_id: self.dense.as_ref().map(|d| d.embedder.model_id().to_string()),
                    ..DenseStatus::unavailable(reason)
                },
                None => self.dense_status_within(sources, max_tier),
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

    /// A source's manifest, cached until its file changes (or, from a
    /// shared index, until the indexer publishes another version; the
    /// version is asked for at most every [`MANIFEST_RECHECK`]).
    pub fn manifest(&self, source: &str) -> Option<Arc<SourceManifest>> {
        if self.lexical.shares_manifests() {
            return self.shared_manifest(source);
        }
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

    fn shared_manifest(&self, source: &str) -> Option<Arc<SourceManifest>> {
        let cached = self
            .shared_manifests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(source)
            .cloned();
        if let Some((checked, _, m)) = &cached
            && checked.elapsed() < MANIFEST_RECHECK
        {
            return m.clone();
        }
        let remember = |version: Option<String>, m: Option<Arc<SourceManifest>>| {
            self.shared_manifests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(source.to_string(), (Instant::now(), version, m.clone()));
            m
        };
        let version = match self.lexical.manifest_version(source) {
            Ok(v) => v,
            // The server is away: what was read last, if anything.
            Err(_) => return cached.and_then(|(_, _, m)| m),
        };
        if let Some((_, v, m)) = &cached
            && *v == version
        {
            return remember(version, m.clone());
        }
        match self.lexical.manifest(source) {
            Ok(Some((v, m))) => remember(Some(v), Some(Arc::new(m))),
            Ok(None) => remember(None, None),
            // Being republished: keep the last one and ask again soon.
            Err(_) => cached.and_then(|(_, _, m)| m),
        }
    }

    /// Whether provenance may look at the sources' checkouts: not on a
    /// replica of a shared index, which has none (status then comes from
    /// the published manifest alone).
    pub(crate) fn checks_disk(&self) -> bool {
        !self.lexical.shares_manifests()
    }
}

/// How long a replica trusts a published manifest before asking for its
/// version again.
pub const MANIFEST_RECHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// A published manifest as last read: when its version was last asked
/// for, the version, and the manifest (`None`: none published).
type SharedManifest = (Instant, Option<String>, Option<Arc<SourceManifest>>);

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
        let deps = Arc::new(indexer::alignment::dependency_map(&*self.lexical, &manifest).ok()?);
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
            indexer::alignment::indexed_text(&*self.lexical, &doc.source, &doc.path)
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

/// Both engines' candidates for one query, before fusion.
#[derive(Debug)]
pub struct EngineLists {
    /// BM25's chunks, (score, chunk), best first.
    pub lexical: Vec<(f32, ChunkDoc)>,
    /// The dense engine's chunks, (cosine, chunk), best first.
    pub dense: Vec<(f32, ChunkDoc)>,
    /// Why the dense engine did not answer, when its store failed.
    pub dense_failure: Option<String>,
    /// The weights and method the fusion uses for this query.
    pub weights: Weights,
}

/// A query made ready to search (see `Retriever::prepare`).
struct Prepared {
    sources: BTreeSet<String>,
    max_tier: u8,
    mode: Mode,
    shape: Shape,
    /// The query's vector, when the dense engine answers.
    vector: Option<Vec<f32>>,
    embed_ms: f64,
}

/// Chunks of a file a file-grouped answer returns at most.
pub const CHUNKS_PER_FILE: usize = 3;

/// A file's candidates, for ranking files.
struct FileGroup {
    score: f32,
    chunks: Vec<Fused>,
}

/// Files in order of an aggregate of their chunks' scores (the best
/// chunk fully, the second half, the third a quarter: a file that answers
/// in several places beats one lucky chunk, without long files winning by
/// size), the best `want`, each with its best [`CHUNKS_PER_FILE`] chunks.
fn group_files(fused: Vec<Fused>, want: usize) -> Vec<FileGroup> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut groups: HashMap<(String, String), FileGroup> = HashMap::new();
    for f in fused {
        let key = (f.doc.source.clone(), f.doc.path.clone());
        let g = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            FileGroup {
                score: 0.0,
                chunks: Vec::new(),
            }
        });
        if g.chunks.len() < CHUNKS_PER_FILE {
            g.score += f.score * [1.0, 0.5, 0.25][g.chunks.len()];
            g.chunks.push(f);
        }
    }
    let mut out: Vec<FileGroup> = order.into_iter().filter_map(|k| groups.remove(&k)).collect();
    // Stable: equal aggregates keep the order of their best chunks.
    out.sort_by(|a, b| b.score.total_cmp(&a.score));
    out.truncate(want);
    out
}

/// A demoted file's fused score is multiplied by this.
pub const DEMOTION: f32 = 0.5;

/// What `doc`'s source's answer rules do with it.
fn answer_treatment(registry: &Registry, doc: &ChunkDoc) -> Treatment {
    let Some(class) = indexer::chunk::answer_class(&doc.path, &doc.language) else {
        return Treatment::Keep;
    };
    let rules = registry
        .source_named(&doc.source)
        .map(|s| s.answers)
        .unwrap_or_default();
    rules
        .entries()
        .into_iter()
        .find(|(key, _)| *key == class)
        .map_or(Treatment::Keep, |(_, treatment)| treatment)
}

/// The most of a query an answer echoes back.
pub const QUERY_ECHO_BYTES: usize = 1_024;

fn echo_query<S: serde::Serializer>(query: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    if query.len() <= QUERY_ECHO_BYTES {
        return s.serialize_str(query);
    }
    let mut end = QUERY_ECHO_BYTES;
    while !query.is_char_boundary(end) {
        end -= 1;
    }
    s.serialize_str(&format!("{}…", &query[..end]))
}

/// About four characters per token for English and code.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    /// Every class of file the indexer tells apart has a key in a source's
    /// answer rules: a class without one would be ranked like any file.
    #[test]
    fn every_answer_class_has_a_rule() {
        let rules = registry::AnswerRules::default();
        let keys: Vec<&str> = rules.entries().iter().map(|(key, _)| *key).collect();
        for path in [
            "Cargo.lock",
            "vendor/lib.go",
            "static/app.min.js",
            "tests/test_app.py",
            "CHANGELOG.md",
        ] {
            let class = indexer::chunk::answer_class(path, indexer::chunk::language_of(path))
                .unwrap_or_else(|| panic!("{path} has no class"));
            assert!(keys.contains(&class), "{class} has no rule");
        }
        assert_eq!(keys.len(), 5, "a new rule key needs a class here: {keys:?}");
    }
}
