//! Tier 1: topic packages.
//!
//! Packages are read from a directory (re-read when a file there changes),
//! their bodies redacted like any ingested text, and matched against a
//! query by a mix of embedding similarity (the query against the title,
//! each question and the head of the body; the best counts) and term
//! overlap (the IDF-weighted share of the query's content words found in
//! the title and questions, half credit for the body; IDF over the packages
//! the caller can see). A package is a candidate for a
//! caller only when every source it cites is in the caller's scope, so
//! nothing about a package outside it is ever scored or named.
//!
//! Before a confident match is served its citations are verified against
//! the index: the cited lines must hash as recorded at review. A stale
//! package is served flagged while within the grace period, then falls
//! through to search.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use indexer::embed::Embedder;
use indexer::redact::{Redactor, RuleSet};
use jiff::Timestamp;
use packages::topic::{CitationStatus, Cited, PackageStatus, TopicPackage, Verification, parse, verify};
use registry::{Registry, Scope, SourceId};
use serde::Serialize;

use crate::{Caller, Result, Retriever, estimate_tokens};

/// Largest package file read.
pub const MAX_PACKAGE_BYTES: u64 = 256 * 1024;

/// Reads one topic package file: a regular file (never a symlink, FIFO or
/// device, opened without blocking) of at most [`MAX_PACKAGE_BYTES`], in
/// UTF-8. The error is a sentence for the steward. Retrieval and the
/// `packages`/`check` commands both load packages through this.
pub fn read_package_file(file: &Path) -> std::result::Result<String, String> {
    let meta = std::fs::symlink_metadata(file).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("a symlink; topic packages must be regular files".into());
    }
    if !meta.is_file() {
        // A FIFO or device would block or never end: never opened.
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_PACKAGE_BYTES {
        return Err(format!("larger than {MAX_PACKAGE_BYTES} bytes"));
    }
    let file = indexer::walk::open_regular(file).map_err(|skip| format!("not readable ({})", skip.code()))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_PACKAGE_BYTES + 1), &mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_PACKAGE_BYTES {
        return Err(format!("larger than {MAX_PACKAGE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not valid UTF-8".to_string())
}
/// Characters of the body embedded as one of a package's texts.
const BODY_HEAD_CHARS: usize = 1_000;

/// How a query is matched to packages. The defaults are the calibration
/// of `scripts/bench-topics.sh` (`benches/src/bin/topic_eval.rs`): on the
/// dev half of a labelled set of 124 queries over 14 Django packages, the
/// weight and least threshold with precision >= 0.95 that serve the most
/// correct answers.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct TopicMatch {
    /// Weight of embedding similarity; the rest is term overlap.
    pub dense_weight: f32,
    /// Least blended score served.
    pub threshold: f32,
    /// Least term-overlap score served when there is no model.
    pub lexical_threshold: f32,
}

impl Default for TopicMatch {
    fn default() -> Self {
        TopicMatch {
            dense_weight: 0.5,
            threshold: 0.469,
            lexical_threshold: 0.391,
        }
    }
}

/// A loaded package with what matching needs.
#[derive(Debug)]
pub(crate) struct Entry {
    pub file: PathBuf,
    pub file_hash: String,
    pub pkg: TopicPackage,
    /// The body after redaction.
    pub body: String,
    pub redactions: usize,
    head_terms: HashSet<String>,
    body_terms: HashSet<String>,
    texts: Vec<String>,
}

/// A package file that could not be loaded.
#[derive(Clone, Debug, Serialize)]
pub struct LoadProblem {
    pub file: String,
    pub line: usize,
    pub message: String,
}

#[derive(Default)]
struct State {
    fingerprint: Vec<(PathBuf, u64, Option<std::time::SystemTime>)>,
    entries: Vec<Arc<Entry>>,
    problems: Vec<LoadProblem>,
    /// Per package id: the file hashes of its citations and the day it was
    /// verified for, and the outcome.
    verified: HashMap<String, Verified>,
}

/// A verification and what it depended on: the cited files' hashes, the
/// day and the policy epoch.
type Verified = (Vec<Option<String>>, jiff::civil::Date, String, Arc<Verification>);

/// The topic packages a retriever serves.
pub struct Topics {
    dir: PathBuf,
    pub grace_days: u32,
    state: Mutex<State>,
    vectors: Mutex<HashMap<String, Arc<Vec<f32>>>>,
    redactor: Redactor,
    /// Where package texts' vectors are kept between processes (one file
    /// per model), so a one-shot query does not embed them again.
    vector_dir: Option<PathBuf>,
    /// Whether the file was read into `vectors` (once per model id).
    loaded_from_disk: Mutex<Option<String>>,
}

/// A vector file's first bytes (then records of a 64-hex key and DIM
/// little-endian f32, then the blake3 of everything before it).
const VECTOR_FILE_MAGIC: &[u8] = b"ctxplane-topic-vectors-1\n";

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("dir", &self.dir)
            .field("grace_days", &self.grace_days)
            .finish_non_exhaustive()
    }
}

impl Topics {
    pub fn new(dir: &Path, grace_days: u32) -> Topics {
        Topics {
            dir: dir.to_path_buf(),
            grace_days,
            state: Mutex::new(State::default()),
            vectors: Mutex::new(HashMap::new()),
            redactor: Redactor::new(RuleSet::builtin(), [0u8; 32]),
            vector_dir: None,
            loaded_from_disk: Mutex::new(None),
        }
    }

    /// Keeps package texts' vectors in `dir` (`topics-<model>.bin`), read
    /// on first use and rewritten atomically when new texts are embedded.
    pub fn with_vector_dir(mut self, dir: &Path) -> Topics {
        self.vector_dir = Some(dir.to_path_buf());
        self
    }

    fn vector_file(&self, model_id: &str) -> Option<PathBuf> {
        self.vector_dir
            .as_ref()
            .map(|d| d.join(format!("topics-{}.bin", indexer::embed::file_stem(model_id))))
    }

    /// Reads the vector file into memory once per model. A missing, torn
    /// or foreign file is ignored (the texts are embedded again).
    fn load_vectors(&self, model_id: &str) {
        let mut loaded = self
            .loaded_from_disk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if loaded.as_deref() == Some(model_id) {
            return;
        }
        *loaded = Some(model_id.to_string());
        let Some(bytes) = self.vector_file(model_id).and_then(|f| std::fs::read(f).ok()) else {
            return;
        };
        let record = 64 + indexer::embed::DIM * 4;
        let Some(body) = bytes
            .strip_prefix(VECTOR_FILE_MAGIC)
            .and_then(|b| b.len().checked_sub(32).map(|n| b.split_at(n)))
            .filter(|(body, sum)| {
                body.len() % record == 0
                    && blake3::hash(&bytes[..VECTOR_FILE_MAGIC.len() + body.len()]).as_bytes() == *sum
            })
            .map(|(body, _)| body)
        else {
            return;
        };
        let mut cache = self
            .vectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for r in body.chunks_exact(record) {
            let Ok(key) = std::str::from_utf8(&r[..64]) else {
                continue;
            };
            let v: Vec<f32> = r[64..]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            cache.entry(key.to_string()).or_insert_with(|| Arc::new(v));
        }
    }

    /// Writes the vectors of the packages' current texts (others are
    /// dropped), atomically; a failure only costs embedding them again.
    fn store_vectors(&self, model_id: &str) {
        let Some(file) = self.vector_file(model_id) else {
            return;
        };
        let keys: BTreeSet<String> = self
            .lock()
            .entries
            .iter()
            .flat_map(|e| {
                e.texts
                    .iter()
                    .map(|t| blake3::hash(t.as_bytes()).to_hex().to_string())
            })
            .collect();
        let mut bytes = VECTOR_FILE_MAGIC.to_vec();
        {
            let cache = self
                .vectors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for k in &keys {
                if let Some(v) = cache.get(k).filter(|v| v.len() == indexer::embed::DIM) {
                    bytes.extend_from_slice(k.as_bytes());
                    for x in v.iter() {
                        bytes.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
        let sum = *blake3::hash(&bytes).as_bytes();
        bytes.extend_from_slice(&sum);
        let written = file
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .map_err(|e| e.to_string())
            .and_then(|()| registry::fsutil::write_atomic(&file, &bytes).map_err(|e| e.to_string()));
        // Not kept (a read-only data dir, say): the next process embeds
        // the texts again; nothing else depends on the file.
        drop(written);
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The packages now, re-read if a file changed.
    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        // An unreadable directory serves no packages (and says so in `problems`).
        let listing = packages::topic::list_dir(&self.dir).unwrap_or_default();
        let fingerprint: Vec<_> = listing
            .iter()
            .map(|p| {
                let m = std::fs::symlink_metadata(p).ok();
                (
                    p.clone(),
                    m.as_ref().map_or(0, |m| m.len()),
                    m.and_then(|m| m.modified().ok()),
                )
            })
            .collect();
        let mut st = self.lock();
        if st.fingerprint != fingerprint {
            let (entries, problems) = self.load(&listing);
            st.entries = entries;
            st.problems = problems;
            st.fingerprint = fingerprint;
            st.verified.clear();
        }
        st.entries.clone()
    }

    /// Files that did not load, and why.
    pub fn problems(&self) -> Vec<LoadProblem> {
        self.entries();
        self.lock().problems.clone()
    }

    fn load(&self, files: &[PathBuf]) -> (Vec<Arc<Entry>>, Vec<LoadProblem>) {
        let mut entries: Vec<Arc<Entry>> = Vec::new();
        let mut problems = Vec::new();
        let mut ids = BTreeSet::new();
        for file in files {
            let shown = file.display().to_string();
            let mut problem = |line: usize, message: String| {
                problems.push(LoadProblem {
                    file: shown.clone(),
                    line,
                    message,
                })
            };
            let text = match read_package_file(file) {
                Ok(t) => t,
                Err(why) => {
                    problem(1, why);
                    continue;
                }
            };
            let file_hash = blake3::hash(text.as_bytes()).to_hex().to_string();
            let pkg = match parse(&text) {
                Ok(p) => p,
                Err(ps) => {
                    for p in ps {
                        problem(p.line, format!("[{}] {}", p.code, p.message));
                    }
                    continue;
                }
            };
            if !ids.insert(pkg.id.clone()) {
                problem(
                    pkg.lines.id,
                    format!("id {:?} is used by another package", pkg.id),
                );
                continue;
            }
            let redacted = self.redactor.redact(&pkg.body, None);
            let body = redacted.text.trim().to_string();
            let mut head_terms = terms(&pkg.title);
            for q in &pkg.questions {
                head_terms.extend(terms(q));
            }
            let body_terms = terms(&body);
            let mut texts = vec![pkg.title.clone()];
            texts.extend(pkg.questions.iter().cloned());
            texts.push(body.chars().take(BODY_HEAD_CHARS).collect());
            entries.push(Arc::new(Entry {
                file: file.clone(),
                file_hash,
                redactions: redacted.findings.len(),
                body,
                pkg,
                head_terms,
                body_terms,
                texts,
            }));
        }
        (entries, problems)
    }

    /// Vectors for an entry's texts (embedded once, kept while the text is).
    fn vectors(&self, embedder: &Embedder, e: &Entry) -> Result<Vec<Arc<Vec<f32>>>> {
        self.load_vectors(embedder.model_id());
        let keys: Vec<String> = e
            .texts
            .iter()
            .map(|t| blake3::hash(t.as_bytes()).to_hex().to_string())
            .collect();
        let missing: Vec<(String, &str)> = {
            let cache = self
                .vectors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            keys.iter()
                .zip(&e.texts)
                .filter(|(k, _)| !cache.contains_key(*k))
                .map(|(k, t)| (k.clone(), t.as_str()))
                .collect()
        };
        if !missing.is_empty() {
            let texts: Vec<&str> = missing.iter().map(|(_, t)| *t).collect();
            let vecs = embedder
                .embed_interactive(&texts)
                .map_err(|err| crate::RetrieveError::Embed(err.to_string()))?;
            let mut cache = self
                .vectors
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for ((k, _), v) in missing.into_iter().zip(vecs) {
                cache.insert(k, Arc::new(v));
            }
            drop(cache);
            self.store_vectors(embedder.model_id());
        }
        let cache = self
            .vectors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(keys.iter().filter_map(|k| cache.get(k).cloned()).collect())
    }
}

const STOPWORDS: &[&str] = &[
    "a", "about", "an", "and", "any", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for",
    "from", "get", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "me", "my", "of", "on",
    "or", "our", "should", "so", "that", "the", "their", "them", "there", "these", "this", "to", "use",
    "using", "was", "we", "what", "when", "where", "which", "who", "why", "will", "with", "would", "you",
    "your",
];

/// Content words, lower-cased, with a light plural strip.
pub fn terms(text: &str) -> HashSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 2)
        .map(|w| {
            let w = w.to_lowercase();
            match w.strip_suffix('s') {
                Some(stem) if stem.len() >= 3 && !stem.ends_with('s') => stem.to_string(),
                _ => w,
            }
        })
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// Inverse document frequency of each query term among the packages the
/// caller can see (never the others, so scores say nothing about them).
fn idf(query: &HashSet<String>, visible: &[(Arc<Entry>, u8)]) -> HashMap<String, f32> {
    let n = visible.len() as f32;
    query
        .iter()
        .map(|t| {
            let df = visible
                .iter()
                .filter(|(e, _)| e.head_terms.contains(t) || e.body_terms.contains(t))
                .count() as f32;
            (t.clone(), (1.0 + n / (1.0 + df)).ln())
        })
        .collect()
}

/// The IDF-weighted share of the query's terms the package has: full
/// credit in the title or questions, half in the body.
fn overlap(query: &HashSet<String>, idf: &HashMap<String, f32>, e: &Entry) -> f32 {
    let total: f32 = query.iter().map(|t| idf.get(t).copied().unwrap_or(0.0)).sum();
    if total <= 0.0 {
        return 0.0;
    }
    let got: f32 = query
        .iter()
        .map(|t| {
            let w = idf.get(t).copied().unwrap_or(0.0);
            if e.head_terms.contains(t) {
                w
            } else if e.body_terms.contains(t) {
                0.5 * w
            } else {
                0.0
            }
        })
        .sum();
    got / total
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // Both are unit vectors.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A package's max age when it sets none: the strictest of its cited
/// sources' tiers.
pub fn default_max_age(registry: &Registry, pkg: &TopicPackage) -> u32 {
    pkg.citations
        .iter()
        .filter_map(|c| SourceId::new(c.source.clone()).ok())
        .filter_map(|id| registry.source(&id))
        .map(|s| registry.freshness.max_age_days(s))
        .min()
        .unwrap_or(registry::DEFAULT_MAX_AGE_DAYS[0])
}

/// How the best package scored.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct MatchScore {
    pub score: f32,
    pub dense: Option<f32>,
    pub lexical: f32,
}

/// What tier 1 decided for a query.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TopicDecision {
    /// `served`, `served_stale`, `below_threshold`, `stale_past_grace`,
    /// `citation_denied` (the policy now denies a cited path, or its source
    /// is no longer approved), `over_budget`, or `no_packages` (none in the
    /// caller's scope).
    pub outcome: String,
    /// The best package in the caller's scope, if any.
    pub candidate: Option<String>,
    #[serde(flatten)]
    pub scores: Option<MatchScore>,
    pub threshold: f32,
    pub packages_in_scope: usize,
    /// Why the candidate was not served, when a citation may not be served
    /// now (`citation_denied`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One cited span, as served.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct CitationProvenance {
    /// The marker number in the body, `[n]`.
    pub n: usize,
    #[serde(rename = "ref")]
    pub reference: String,
    /// `source:path#Lx-Ly@commit-or-hash` (see [`crate::citation`]).
    pub citation: String,
    pub source: String,
    pub owner: Option<String>,
    pub tier: u8,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    /// `unchanged`, `moved` (same text, other lines: `ref` and the lines
    /// are where it is now), `changed`, `gone`, `unhashed` or `denied`.
    pub status: String,
    pub recorded_hash: Option<String>,
    pub current_hash: Option<String>,
    pub commit: Option<String>,
    pub file_hash: Option<String>,
    pub content_since: Option<Timestamp>,
    /// Result ids of the indexed chunks that hold these lines, for
    /// `ctxplane provenance`.
    pub chunk_ids: Vec<String>,
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct PackageProvenance {
    pub package_id: String,
    pub title: String,
    pub file: String,
    /// blake3 of the package file as served.
    pub file_hash: String,
    pub owner: String,
    pub reviewed_at: Option<String>,
    pub reviewed_by: Option<String>,
    pub max_age_days: u32,
    pub expires_on: Option<String>,
    /// `fresh` or `stale`.
    pub status: String,
    pub stale: bool,
    pub stale_reasons: Vec<String>,
    pub stale_since: Option<Timestamp>,
    pub grace_days: u32,
    /// The highest tier among the cited sources.
    pub tier: u8,
    /// Secrets redacted from the body.
    pub redactions: usize,
    pub registry_version: String,
    pub served_by: String,
    pub citations: Vec<CitationProvenance>,
}

/// A package served as the answer.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct PackageHit {
    /// `topic:<package id>`.
    pub id: String,
    pub score: f32,
    pub tokens: usize,
    pub content: String,
    pub provenance: PackageProvenance,
}

/// The outcome of tier 1 for one query.
pub(crate) struct Tier1 {
    pub hit: Option<PackageHit>,
    pub decision: TopicDecision,
}

/// The one rule for topic packages and scope, wherever a package is
/// served, shown or checked: `pkg` is readable within `scope` only if every
/// source it cites is a registered source the scope permits at its tier.
/// Returns the highest cited tier (1 when it cites nothing).
pub fn readable_by(registry: &Registry, scope: &Scope, pkg: &TopicPackage) -> Option<u8> {
    let mut tier = 1;
    for c in &pkg.citations {
        let id = SourceId::new(c.source.clone()).ok()?;
        let src = registry.source(&id)?;
        if !scope.permits(&id, src.tier) {
            return None;
        }
        tier = tier.max(src.tier.get());
    }
    Some(tier)
}

impl Retriever {
    /// Whether tier 1 may serve `pkg` to `caller` (readable, cited, not a
    /// draft), and the highest tier it cites.
    fn visible(caller: &Caller<'_>, pkg: &TopicPackage) -> Option<u8> {
        readable_by(caller.registry, &caller.scope, pkg).filter(|_| !pkg.citations.is_empty() && !pkg.draft)
    }

    /// Verifies a package's citations against the index (cached while the
    /// cited files' hashes and the day stay the same).
    pub(crate) fn verify_package(
        &self,
        topics: &Topics,
        registry: &Registry,
        e: &Entry,
    ) -> Arc<Verification> {
        let today = self.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let policy = registry.policy(&*self.clock);
        let epoch = policy.epoch();
        let key: Vec<Option<String>> = e
            .pkg
            .citations
            .iter()
            .map(|c| {
                self.manifest(&c.source)
                    .and_then(|m| m.files.get(&c.path).map(|f| f.hash.clone()))
            })
            .collect();
        if let Some((k, d, p, v)) = topics.lock().verified.get(&e.pkg.id)
            && *k == key
            && *d == today
            && *p == epoch
        {
            return v.clone();
        }
        let mut read = |c: &packages::topic::Citation| -> Cited {
            let approved = registry.is_approved(&c.source);
            if !approved {
                return Cited::Denied(format!("source {} is not an approved source", c.source));
            }
            // The registry as it is now decides, not the last pass.
            if let Some((_, why)) = self.decisions.denied(&policy, &epoch, &c.source, &c.path) {
                return Cited::Denied(format!("the policy now denies {}: {why}", c.path));
            }
            let Some(entry) = self
                .manifest(&c.source)
                .and_then(|m| m.files.get(&c.path).cloned())
            else {
                return Cited::Missing("not in the index".into());
            };
            match indexer::alignment::indexed_text(&*self.lexical, &c.source, &c.path) {
                Ok(text) => Cited::Text {
                    text,
                    since: Some(entry.content_since()),
                },
                Err(err) => Cited::Missing(err.to_string()),
            }
        };
        let v = Arc::new(verify(
            &e.pkg,
            today,
            default_max_age(registry, &e.pkg),
            &mut read,
        ));
        topics
            .lock()
            .verified
            .insert(e.pkg.id.clone(), (key, today, epoch, v.clone()));
        v
    }

    /// Tier 1 for one query. `query_vec` is the query's embedding when the
    /// model is there.
    pub(crate) fn tier1(
        &self,
        topics: &Topics,
        caller: &Caller<'_>,
        text: &str,
        query_vec: Option<&[f32]>,
        max_tokens: usize,
    ) -> Result<Tier1> {
        let entries = topics.entries();
        let visible: Vec<(Arc<Entry>, u8)> = entries
            .into_iter()
            .filter_map(|e| Self::visible(caller, &e.pkg).map(|t| (e, t)))
            .collect();
        let threshold = match query_vec {
            Some(_) => self.topic_match.threshold,
            None => self.topic_match.lexical_threshold,
        };
        let mut decision = TopicDecision {
            outcome: "no_packages".into(),
            candidate: None,
            scores: None,
            threshold,
            packages_in_scope: visible.len(),
            reason: None,
        };
        if visible.is_empty() {
            return Ok(Tier1 { hit: None, decision });
        }
        let (best, tier, scores) = {
            let q = terms(text);
            let weights = idf(&q, &visible);
            let mut best: Option<(Arc<Entry>, u8, MatchScore)> = None;
            for (e, tier) in &visible {
                let lexical = overlap(&q, &weights, e);
                let (score, dense) = match (query_vec, &self.dense) {
                    (Some(qv), Some(d)) => {
                        let dense = self
                            .topics_vectors(topics, &d.embedder, e)?
                            .iter()
                            .map(|v| cosine(qv, v))
                            .fold(f32::MIN, f32::max);
                        let w = self.topic_match.dense_weight;
                        (w * dense + (1.0 - w) * lexical, Some(dense))
                    }
                    _ => (lexical, None),
                };
                if best.as_ref().is_none_or(|(_, _, s)| score > s.score) {
                    best = Some((
                        e.clone(),
                        *tier,
                        MatchScore {
                            score,
                            dense,
                            lexical,
                        },
                    ));
                }
            }
            match best {
                Some(b) => b,
                None => return Ok(Tier1 { hit: None, decision }),
            }
        };
        decision.candidate = Some(best.pkg.id.clone());
        decision.scores = Some(scores.clone());
        if scores.score < threshold {
            decision.outcome = "below_threshold".into();
            return Ok(Tier1 { hit: None, decision });
        }
        let v = self.verify_package(topics, caller.registry, &best);
        // A package citing what may not be served now is never served,
        // whatever its grace.
        if let Some(c) = v.citations.iter().find(|c| c.status == CitationStatus::Denied) {
            decision.outcome = "citation_denied".into();
            decision.reason = Some(format!(
                "{} may not be served: {}",
                c.reference,
                c.detail.as_deref().unwrap_or("denied")
            ));
            return Ok(Tier1 { hit: None, decision });
        }
        let stale = v.status != PackageStatus::Fresh;
        if stale {
            let grace = jiff::SignedDuration::from_hours(24 * i64::from(topics.grace_days));
            let within = v
                .stale_since
                .is_some_and(|since| self.now().duration_since(since) <= grace);
            if !within {
                decision.outcome = "stale_past_grace".into();
                return Ok(Tier1 { hit: None, decision });
            }
        }
        let content = render(&best, &v);
        let tokens = estimate_tokens(&content);
        if tokens > max_tokens {
            decision.outcome = "over_budget".into();
            return Ok(Tier1 { hit: None, decision });
        }
        decision.outcome = if stale { "served_stale" } else { "served" }.into();
        let provenance = self.package_provenance(topics, caller.registry, &best, &v, tier);
        Ok(Tier1 {
            hit: Some(PackageHit {
                id: format!("topic:{}", best.pkg.id),
                score: scores.score,
                tokens,
                content,
                provenance,
            }),
            decision,
        })
    }

    /// A package's provenance as it would be served now (verified against
    /// the index), looked up by id for the operator; with its content.
    /// A package by id, drafts included, with its provenance and text;
    /// with a `scope`, only if [`readable_by`] it (`None`: the operator).
    pub fn package_lookup(
        &self,
        registry: &Registry,
        scope: Option<&Scope>,
        id: &str,
    ) -> Option<(PackageProvenance, String)> {
        let topics = self.topics.as_ref()?;
        let e = topics.entries().into_iter().find(|e| e.pkg.id == id)?;
        if let Some(sc) = scope {
            readable_by(registry, sc, &e.pkg)?;
        }
        let v = self.verify_package(topics, registry, &e);
        let tier = e
            .pkg
            .citations
            .iter()
            .filter_map(|c| SourceId::new(c.source.clone()).ok())
            .filter_map(|sid| registry.source(&sid).map(|s| s.tier.get()))
            .max()
            .unwrap_or(0);
        let mut p = self.package_provenance(topics, registry, &e, &v, tier);
        p.served_by = "lookup".into();
        if e.pkg.draft {
            p.status = "draft".into();
        }
        Some((p, render(&e, &v)))
    }

    fn topics_vectors(&self, topics: &Topics, embedder: &Embedder, e: &Entry) -> Result<Vec<Arc<Vec<f32>>>> {
        topics.vectors(embedder, e)
    }

    pub(crate) fn package_provenance(
        &self,
        topics: &Topics,
        registry: &Registry,
        e: &Entry,
        v: &Verification,
        tier: u8,
    ) -> PackageProvenance {
        let citations = v
            .citations
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let src = registry.source_named(&c.source).cloned();
                let entry = self
                    .manifest(&c.source)
                    .and_then(|m| m.files.get(&c.path).cloned());
                let (start, end) = c.lines_now();
                let chunk_ids = self
                    .lexical
                    .docs_for_file(&c.source, &c.path)
                    .map(|docs| {
                        docs.into_iter()
                            .filter(|d| d.start_line <= end && d.end_line >= start)
                            .map(|d| d.chunk_id)
                            .collect()
                    })
                    .unwrap_or_default();
                CitationProvenance {
                    n: i + 1,
                    reference: format!("{}:{}#L{start}-L{end}", c.source, c.path),
                    citation: crate::provenance::citation(
                        &c.source,
                        &c.path,
                        start,
                        end,
                        entry.as_ref().and_then(|f| f.commit.as_deref()),
                        entry.as_ref().map_or("", |f| f.hash.as_str()),
                    ),
                    source: c.source.clone(),
                    owner: src.as_ref().map(|s| s.owner.clone()),
                    tier: src.as_ref().map_or(0, |s| s.tier.get()),
                    path: c.path.clone(),
                    start_line: start,
                    end_line: end,
                    status: serde_json::to_value(&c.status)
                        .ok()
                        .and_then(|s| s.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    recorded_hash: c.recorded.clone(),
                    current_hash: c.current.clone(),
                    commit: entry.as_ref().and_then(|f| f.commit.clone()),
                    file_hash: entry.as_ref().map(|f| f.hash.clone()),
                    content_since: entry.as_ref().map(|f| f.content_since()),
                    chunk_ids,
                }
            })
            .collect();
        let stale = v.status != PackageStatus::Fresh;
        PackageProvenance {
            package_id: e.pkg.id.clone(),
            title: e.pkg.title.clone(),
            file: e.file.display().to_string(),
            file_hash: e.file_hash.clone(),
            owner: e.pkg.owner.clone(),
            reviewed_at: e.pkg.reviewed_at.map(|d| d.to_string()),
            reviewed_by: e.pkg.reviewed_by.clone(),
            max_age_days: v.max_age_days,
            expires_on: v.expires_on.map(|d| d.to_string()),
            status: if stale { "stale" } else { "fresh" }.into(),
            stale,
            stale_reasons: v.reasons.iter().map(|r| r.message.clone()).collect(),
            stale_since: v.stale_since,
            grace_days: topics.grace_days,
            tier,
            redactions: e.redactions,
            registry_version: registry.version.to_hex(),
            served_by: "topic_package".into(),
            citations,
        }
    }
}

/// The package as an agent reads it: title, body, numbered citations at
/// the lines they are on now.
fn render(e: &Entry, v: &Verification) -> String {
    let mut out = format!("# {}\n\n{}\n\nCitations:\n", e.pkg.title, e.body);
    for (i, c) in v.citations.iter().enumerate() {
        let (a, b) = c.lines_now();
        out.push_str(&format!("[{}] {}:{}#L{a}-L{b}\n", i + 1, c.source, c.path));
    }
    out
}

#[cfg(test)]
mod vector_file_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn topics(dir: &Path, vectors: &Path) -> Topics {
        Topics::new(dir, 7).with_vector_dir(vectors)
    }

    #[test]
    fn package_vectors_are_kept_between_processes() {
        let Ok(model) = indexer::embed::find_model_dir(None) else {
            panic!("run scripts/setup-model.sh first");
        };
        let embedder = Embedder::load(&model, 1).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("topics");
        std::fs::create_dir_all(&dir).unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/topics");
        for f in ["refunds.md", "postgres-failover.md"] {
            std::fs::copy(example.join(f), dir.join(f)).unwrap();
        }
        let vdir = tmp.path().join("vectors");
        let first = topics(&dir, &vdir);
        let entries = first.entries();
        assert_eq!(entries.len(), 2);
        let want: Vec<_> = entries
            .iter()
            .map(|e| first.vectors(&embedder, e).unwrap())
            .collect();
        let file = first.vector_file(embedder.model_id()).unwrap();
        assert!(file.exists());

        // A second process reads them instead of embedding: everything it
        // needs is in memory before it asks, and the vectors are the same.
        let second = topics(&dir, &vdir);
        let entries = second.entries();
        second.load_vectors(embedder.model_id());
        let cached = second.vectors.lock().unwrap().len();
        let needed: usize = entries.iter().map(|e| e.texts.len()).sum();
        assert_eq!(cached, needed);
        for (e, w) in entries.iter().zip(&want) {
            assert_eq!(&second.vectors(&embedder, e).unwrap(), w);
        }

        // A damaged file is ignored, not trusted.
        let mut bytes = std::fs::read(&file).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0x40;
        std::fs::write(&file, &bytes).unwrap();
        let third = topics(&dir, &vdir);
        third.entries();
        third.load_vectors(embedder.model_id());
        assert_eq!(third.vectors.lock().unwrap().len(), 0);
    }
}
