//! Ingest: the unit of work every interface shares. One pass under the
//! data-dir lock, its audit entry, the vectors caught up (and expunged
//! after a purge), the retriever refreshed. Also the vector backend
//! factory: which store holds the vectors, opened for reading or writing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indexer::embed::Embedder;
use indexer::redact::RuleSet;
use indexer::vector::VectorStore;
use indexer::{Indexer, PassOptions, PassReport};
use registry::audit::Event;
use registry::{Registry, RegistryStore};
use serde_json::json;

use crate::error::{Error, Result};
use crate::settings::{ConfigError, Settings, VectorBackend};

/// The model and a vector store.
pub struct Dense {
    pub embedder: Arc<Embedder>,
    pub store: Box<dyn VectorStore>,
}

impl std::fmt::Debug for Dense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dense")
            .field("model_id", &self.embedder.model_id())
            .field("store", &self.store.kind())
            .finish()
    }
}

/// Loads the model: `bulk_threads` for indexing, the settings'
/// `embed_threads` for queries. `Err(reason)` when there is none (the
/// service then works lexically and says so).
pub fn load_model(s: &Settings, bulk_threads: usize) -> Result<Arc<Embedder>, String> {
    let dir = indexer::embed::find_model_dir(s.model_dir.as_deref()).map_err(|e| e.to_string())?;
    Embedder::load_with(&dir, bulk_threads, s.embed_threads)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The vector store the settings choose, with `embedder`'s model.
/// Readers (`writable: false`) never change the store: an indexer may be
/// appending to it.
pub fn open_vectors(
    s: &Settings,
    data_dir: &Path,
    writable: bool,
    embedder: Arc<Embedder>,
) -> Result<Dense, String> {
    use indexer::vector::embedded::EmbeddedStore;
    let vectors = Indexer::vectors_dir(data_dir);
    let store: Box<dyn VectorStore> = match &s.vectors {
        VectorBackend::Embedded if writable => {
            Box::new(EmbeddedStore::open(&vectors, embedder.model_id()).map_err(|e| e.to_string())?)
        }
        VectorBackend::Embedded => Box::new(
            EmbeddedStore::open_read(&vectors, embedder.model_id())
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "no vectors for model {} yet; run `ctxplane index`",
                        embedder.model_id()
                    )
                })?,
        ),
        VectorBackend::Qdrant { .. } => {
            Box::new(connect_qdrant(s, data_dir, writable, embedder.model_id()).map_err(|e| e.to_string())?)
        }
    };
    Ok(Dense { embedder, store })
}

/// The Qdrant collection the settings name, for `model_id`'s vectors.
fn connect_qdrant(
    s: &Settings,
    data_dir: &Path,
    writable: bool,
    model_id: &str,
) -> Result<indexer::vector::qdrant::QdrantStore, Error> {
    let VectorBackend::Qdrant {
        url,
        api_key,
        prefix,
        deployment,
        shards,
        replication,
    } = &s.vectors
    else {
        return Err(Error::Config("vector_store is not \"qdrant\"".into()));
    };
    let deployment = match deployment {
        Some(d) => d.clone(),
        None => deployment_id(data_dir, writable).map_err(Error::Config)?,
    };
    indexer::vector::qdrant::QdrantStore::connect(
        &indexer::vector::qdrant::QdrantTarget {
            url,
            api_key: api_key.as_deref(),
            prefix,
            model_id,
            deployment: &deployment,
            shards: *shards,
            replication: *replication,
        },
        writable,
    )
    .map_err(|e| match e {
        // The server may come back, or the indexer may not have written
        // the collection yet.
        indexer::IndexError::Unavailable { .. } => Error::from(e),
        // A collection of the wrong layout, a bad address: the operator's.
        other => Error::Config(other.to_string()),
    })
}

/// The shared index a read-only replica answers from: the chunks and
/// their BM25 term vectors in the Qdrant collection, read only.
/// [`Error::Unavailable`] when the server cannot be reached or the
/// collection is not there yet; [`Error::Config`] for the rest.
pub fn open_shared_index(
    s: &Settings,
    data_dir: &Path,
    embedder: &Embedder,
) -> Result<Arc<dyn indexer::lexical::ChunkIndex>, Error> {
    Ok(Arc::new(connect_qdrant(s, data_dir, false, embedder.model_id())?))
}

/// This data dir's deployment id (`deployment-id`: 16 random hex digits
/// written by the first writer); a reader never makes one.
pub fn deployment_id(data_dir: &Path, writable: bool) -> Result<String, String> {
    let file = data_dir.join("deployment-id");
    match std::fs::read_to_string(&file) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", file.display())),
    }
    if !writable {
        return Err(format!(
            "no deployment id: set deployment_id (or CTXPLANE_DEPLOYMENT_ID) to the indexer's, or run `ctxplane index` on {}",
            data_dir.display()
        ));
    }
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a deployment id: {e}"))?;
    let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::create_dir_all(data_dir).map_err(|e| e.to_string())?;
    registry::fsutil::write_atomic(&file, id.as_bytes()).map_err(|e| e.to_string())?;
    Ok(id)
}

/// The redaction rules in force: the built-in ones, plus the settings'
/// extra rules file (unless `builtin` is off, for `ctxplane redact`).
pub fn load_rules(path: Option<&Path>, builtin: bool) -> Result<RuleSet> {
    Ok(match path {
        None => RuleSet::builtin(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("reading {}: {e}", path.display())))?;
            let user = RuleSet::from_toml(&text, &path.display().to_string())
                .map_err(|e| ConfigError(e.to_string()))?;
            if builtin {
                RuleSet::builtin().merged(user)
            } else {
                user
            }
        }
    })
}

/// The indexer and its (writable) vector store: used by one pass at a time.
pub struct Ingest {
    pub indexer: Indexer,
    pub dense: Result<Dense, String>,
    /// The vectors (and, for replicas, the chunks) live on a server: a
    /// purge is proven only with the store open.
    pub shared_vectors: bool,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("dense", &self.dense)
            .finish_non_exhaustive()
    }
}

/// Where a long step reports progress (the CLI draws bars; servers ignore it).
pub trait Progress {
    /// Files of `source` done out of `total`.
    fn files(&mut self, _source: &str, _done: u64, _total: u64) {}
    /// Chunks embedded out of `total`.
    fn chunks(&mut self, _done: u64, _total: u64) {}
    /// The step is over (finish any bar).
    fn finish(&mut self) {}
}

/// Progress nobody watches.
#[derive(Debug, Default)]
pub struct Quiet;

impl Progress for Quiet {}

/// Which pass this is: a full pass (the CLI's `index`, a server's start,
/// always audited as `index.pass`) or an update after changes (audited as
/// `index.update` only when it changed something).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassKind {
    Full,
    Update,
}

/// What one unit of work did.
#[derive(Debug, serde::Serialize)]
pub struct PassOutcome {
    pub report: PassReport,
    pub elapsed_ms: u64,
    pub audit_seq: Option<u64>,
    /// The vectors' state after the pass (`status`: ready, unavailable,
    /// not_run).
    pub vectors: serde_json::Value,
    /// Every purge this pass verified (its own and any a killed process
    /// left unfinished): what remains of each source.
    pub purges: BTreeMap<String, Remaining>,
}

/// Checks every unfinished purge and audits the proof: a source no longer
/// approved must be gone from every store; one approved again since only
/// needs its deleted text expunged. Verified purges leave the journal;
/// the others stay for the next pass (and are reported).
pub(crate) fn verify_purges(
    ing: &Ingest,
    reg: &Registry,
    store: &RegistryStore,
    actor: &str,
    this_pass: &[String],
) -> Result<BTreeMap<String, Remaining>> {
    let mut out = BTreeMap::new();
    let mut events = Vec::new();
    let mut verified = Vec::new();
    // One lock over checking and finishing, so that a pass of another
    // process cannot add an intent in between that this one then drops.
    let lock = registry::fsutil::DirLock::acquire(store.data_dir())?;
    let pending = ing.indexer.pending_purges()?;
    if pending.is_empty() {
        return Ok(out);
    }
    for id in &pending {
        let remaining = ing.remaining_locked(store.data_dir(), id)?;
        let approved_again = reg.is_approved(id);
        let clean = if approved_again {
            remaining.deleted_in_index == 0
                && remaining.dead_vectors == 0
                && remaining.vectors_checked
                && remaining.cached_vectors == 0
        } else {
            remaining.clean()
        };
        let mut ev = Event::new(actor, "source.purge_verified", id)
            .detail("clean", clean)
            .detail("remaining", serde_json::to_value(&remaining)?);
        if !this_pass.contains(id) {
            // Started by a process that did not live to finish it.
            ev = ev.detail("resumed", true);
        }
        if approved_again {
            ev = ev.detail("approved_again", true);
        }
        events.push(ev);
        if clean {
            verified.push(id.clone());
        } else {
            tracing::warn!(source = %id, "purge not verified yet; the next pass retries");
        }
        out.insert(id.clone(), remaining);
    }
    // Audited before the intent is dropped: a kill in between audits twice,
    // never not at all.
    store.record(events)?;
    ing.indexer.finish_purges(&verified)?;
    drop(lock);
    Ok(out)
}

/// One pass under the data-dir lock (released before auditing, which
/// takes the audit log's own lock).
pub(crate) fn run_pass(
    indexer: &Indexer,
    reg: &Registry,
    store: &RegistryStore,
    only: Option<&BTreeSet<String>>,
    progress: &mut dyn Progress,
) -> Result<(PassReport, Duration)> {
    let lock = registry::fsutil::DirLock::acquire(store.data_dir())?;
    let policy = reg.policy(store.clock());
    let started = Instant::now();
    let report = indexer.run_pass_over(reg, &policy, policy.now(), only, &mut |source, done, total| {
        progress.files(source, done, total)
    })?;
    progress.finish();
    drop(lock);
    Ok((report, started.elapsed()))
}

/// The pass's audit entry: per source what was indexed, denied, skipped.
pub(crate) fn audit_pass(
    actor: &str,
    store: &RegistryStore,
    reg: &Registry,
    report: &PassReport,
    action: &str,
) -> Result<Option<u64>> {
    let mut ev = Event::new(actor, action, "all")
        .detail("registry_version", reg.version.to_hex())
        .detail("committed", report.committed)
        .detail("purged", report.purged.clone())
        .detail("total_chunks", report.total_chunks);
    for sr in &report.sources {
        let tallies = |m: &BTreeMap<String, indexer::Tally>| -> serde_json::Value {
            m.iter()
                .map(|(k, t)| (k.clone(), json!({"count": t.count, "examples": t.examples})))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        ev = ev.detail(
            &format!("source:{}", sr.source),
            json!({
                "files": sr.files_seen, "indexed": sr.indexed, "unchanged": sr.unchanged, "removed": sr.removed,
                "chunks_added": sr.chunks_added, "chunks_removed": sr.chunks_removed, "redactions": sr.redactions,
                "denied": tallies(&sr.denied), "skipped": tallies(&sr.skipped),
                "commit": sr.commit, "error": sr.error,
            }),
        );
    }
    let entries = store.record(vec![ev])?;
    Ok(entries.first().map(|e| e.seq))
}

/// Vectors for every chunk, under the data-dir lock; audited.
pub(crate) fn sync_vectors(
    indexer: &Indexer,
    dense: &mut Result<Dense, String>,
    actor: &str,
    store: &RegistryStore,
    limit: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<serde_json::Value> {
    let d = match dense {
        Ok(d) => d,
        Err(reason) => {
            return Ok(json!({
                "status": "unavailable", "reason": reason, "served_by": "lexical",
                "chunks": indexer.lexical().total_chunks(),
            }));
        }
    };
    let lock = registry::fsutil::DirLock::acquire(store.data_dir())?;
    let started = Instant::now();
    let report = indexer.sync_vectors_at_most(d.store.as_mut(), &d.embedder, limit, &mut |done, total| {
        progress.chunks(done, total)
    });
    progress.finish();
    registry::fsutil::crash_point("vectors.synced");
    // Removed chunks' vectors leave the store's files too (also those a
    // killed process left behind).
    let expunged = match &report {
        Ok(_) if d.store.dead_records() > 0 => d.store.expunge(),
        _ => Ok(()),
    };
    drop(lock);
    let report = report?;
    expunged?;
    if report.embedded > 0 || report.files_removed > 0 {
        store.record(vec![
            Event::new(actor, "index.vectors", d.store.kind())
                .detail("model_id", report.model_id.clone())
                .detail("embedded", report.embedded)
                .detail("from_cache", report.from_cache)
                .detail("files_removed", report.files_removed)
                .detail("vectors", report.vectors)
                .detail("chunks", report.chunks),
        ])?;
    }
    Ok(json!({
        // `building`: a limited sync stopped with chunks still to embed
        // (a server fills them in the background).
        "status": if report.remaining > 0 { "building" } else { "ready" },
        "remaining": report.remaining,
        "store": d.store.kind(), "model_id": report.model_id,
        "chunks": report.chunks, "vectors": report.vectors, "coverage": report.coverage(),
        "embedded": report.embedded, "from_cache": report.from_cache, "files_removed": report.files_removed,
        "embed_ms": report.embed_ms, "elapsed_ms": started.elapsed().as_millis() as u64, "served_by": "hybrid",
    }))
}

/// What of a source is left in every store (all zero after a verified purge).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Remaining {
    pub chunks: u64,
    pub vectors: u64,
    pub manifest: bool,
    /// Deleted documents still held by index segments (any source).
    pub deleted_in_index: u64,
    /// Dead records still in the vector log (any source).
    pub dead_vectors: u64,
    /// The vector store could be checked (false when it exists but could
    /// not be opened: the model or the server is unavailable).
    pub vectors_checked: bool,
    /// Embedding-cache records for no text the index holds (any source;
    /// without the model, every cached record, since none can be checked).
    pub cached_vectors: u64,
}

impl Remaining {
    pub fn clean(&self) -> bool {
        self.chunks == 0
            && self.vectors == 0
            && !self.manifest
            && self.deleted_in_index == 0
            && self.dead_vectors == 0
            && self.vectors_checked
            && self.cached_vectors == 0
    }
}

impl Ingest {
    /// What remains, read under the data-dir lock (no pass of any process
    /// is mid-way) from a freshly reloaded index reader (another process
    /// may have committed since this one last looked).
    pub(crate) fn remaining(&self, data_dir: &Path, id: &str) -> Result<Remaining> {
        let _lock = registry::fsutil::DirLock::acquire(data_dir)?;
        self.remaining_locked(data_dir, id)
    }

    /// [`Ingest::remaining`] for a caller that holds the data-dir lock.
    fn remaining_locked(&self, data_dir: &Path, id: &str) -> Result<Remaining> {
        self.indexer.lexical().reload()?;
        let chunks = self.indexer.lexical().count_source(id);
        let vectors = match &self.dense {
            Ok(d) => d
                .store
                .file_chunks()?
                .iter()
                .filter(|((s, _), _)| s == id)
                .map(|(_, ids)| ids.len())
                .sum::<usize>(),
            Err(_) => 0,
        };
        let manifest = self.indexer.manifests().path_of(id).exists();
        let deleted_in_index = self.indexer.lexical().deleted_docs()?;
        let dead_vectors = self.dense.as_ref().map_or(0, |d| d.store.dead_records());
        // Without the store open, the purge is proven only if there is no
        // store on disk to hold anything.
        let vectors_checked = self.dense.is_ok() || (!self.shared_vectors && !vector_store_on_disk(data_dir));
        let model_id = self
            .dense
            .as_ref()
            .ok()
            .map(|d| d.embedder.model_id().to_string());
        let cached_vectors = self.indexer.cache_orphans(model_id.as_deref())?;
        Ok(Remaining {
            chunks,
            vectors: vectors as u64,
            manifest,
            deleted_in_index,
            dead_vectors: dead_vectors as u64,
            vectors_checked,
            cached_vectors,
        })
    }
}

/// Whether an embedded vector store has files on disk.
fn vector_store_on_disk(data_dir: &Path) -> bool {
    std::fs::read_dir(Indexer::vectors_dir(data_dir)).is_ok_and(|mut d| d.next().is_some())
}

/// Opens the indexer with the settings' rules and limits.
pub(crate) fn open_indexer(s: &Settings, data_dir: &Path) -> Result<Indexer> {
    let rules = load_rules(s.redaction_rules.as_deref(), true)?;
    Ok(Indexer::open(
        data_dir,
        rules,
        PassOptions {
            max_file_bytes: s.max_file_bytes,
            threads: s.index_threads,
        },
    )?)
}
