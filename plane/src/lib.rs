//! ctxplane as a service: the one door every interface goes through.
//!
//! [`Plane`] holds what a running context plane needs (settings, the
//! registry in force, the retriever, the ingest state, the emergency stop,
//! metrics) and offers the operations by use case: [`access`]
//! (authentication, the role matrix, the stop gate), [`query`] (limits,
//! validation, the one audit record), [`lookup`] (provenance chains,
//! sources, freshness, status), [`ingest`] (the unit of work), stewardship
//! (source transitions, revoke -> purge -> proof, exceptions, stop and
//! resume), [`check`] (the CI gate) and [`metrics`]. The CLI, HTTP and MCP
//! adapters convert their input, call these functions and convert the
//! result; none of them decides policy, limits or audit records.
//!
//! It knows no HTTP, MCP or clap types.

pub mod access;
pub mod check;
pub mod error;
pub mod ingest;
mod limits;
pub mod lookup;
pub mod metrics;
pub mod overview;
pub mod query;
pub mod settings;
pub mod snapshots;
pub mod stewardship;
pub mod topics;
pub mod views;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use indexer::embed::Embedder;
use registry::{Registry, RegistryStore};
use retriever::Retriever;

pub use access::{Operation, Who};
pub use error::{Error, Result, UNAVAILABLE_RETRY_SECS, warn_unavailable};
pub use ingest::{PassKind, PassOutcome, Progress, Quiet};
pub use metrics::Metrics;
pub use settings::{ConfigError, Overrides, Settings, VectorBackend};

/// How a process uses the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Embedding {
    /// No model: lexical search only, no vectors built (the reason is
    /// reported on every answer).
    Off(String),
    /// Load the model; indexing embeds on `bulk_threads` (queries keep the
    /// settings' `embed_threads`).
    On { bulk_threads: usize },
}

/// What a process needs of the plane.
#[derive(Clone, Debug)]
pub struct Profile {
    pub embedding: Embedding,
    /// Approving a source ingests it at once (a serving process); the CLI
    /// leaves that to `ctxplane index`. Revocation always purges at once.
    pub ingest_on_approve: bool,
    /// Most chunks a pass embeds before it returns (`None`: all). A server
    /// embeds none in a pass: it answers from the lexical index at once and
    /// fills the vectors in the background ([`Plane::fill_vectors`]); the
    /// CLI embeds everything.
    pub embed_per_pass: Option<u64>,
    /// A read-only replica (`serve --read-only`): no local index, no
    /// passes; both search tiers are read from the shared Qdrant
    /// collection the one indexer (`ctxplane index --watch`) writes.
    pub read_only: bool,
}

/// Chunks embedded per background step: a few seconds of one core, so a
/// pass or a revocation waiting for the ingest lock waits at most that.
pub const FILL_STEP: u64 = 64;

impl Profile {
    /// A one-shot command that reads (queries, provenance, status).
    pub fn reader(embedding: Embedding) -> Profile {
        Profile {
            embedding,
            ingest_on_approve: false,
            embed_per_pass: None,
            read_only: false,
        }
    }

    /// A serve replica with no local index ([`Profile::read_only`]).
    pub fn replica() -> Profile {
        Profile {
            embedding: Embedding::On { bulk_threads: 1 },
            ingest_on_approve: false,
            embed_per_pass: None,
            read_only: true,
        }
    }

    /// A long-running server: indexing embeds on one thread so queries keep a core.
    pub fn server(embed: bool) -> Profile {
        Profile {
            embedding: if embed {
                Embedding::On { bulk_threads: 1 }
            } else {
                Embedding::Off("embedding disabled (--no-embed)".into())
            },
            ingest_on_approve: true,
            // Passes only commit the lexical index (and remove what is
            // gone); the background filler embeds.
            embed_per_pass: Some(0),
            read_only: false,
        }
    }
}

/// The context plane.
pub struct Plane {
    settings: Settings,
    store: RegistryStore,
    profile: Profile,
    /// The registry in force and the hash of the file it was parsed from.
    registry: RwLock<(Option<registry::ContentHash>, Arc<Registry>)>,
    model: Mutex<Option<Result<Arc<Embedder>, String>>>,
    retriever: Mutex<RetrieverSlot>,
    ingest: Mutex<Option<ingest::Ingest>>,
    stop: access::StopGate,
    /// The rules in force, for checking paths (no findings log, so no key).
    path_redactor: std::sync::OnceLock<indexer::redact::Redactor>,
    pub metrics: Metrics,
    meter: limits::Meter,
    snapshots: snapshots::Store,
    /// Passes run by this process (a background filler waits for the next
    /// one once the vectors are complete).
    passes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane")
            .field("registry", &self.store.registry_path())
            .field("data_dir", &self.store.data_dir())
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// The retriever as far as it has been opened.
enum RetrieverSlot {
    /// Not opened yet, or closed to be opened again.
    Closed,
    Open(Arc<Retriever>),
    /// Opening it last failed with [`Error::Unavailable`], at `at`:
    /// requests within [`UNAVAILABLE_RETRY_SECS`] of it get the same answer
    /// at once instead of each waiting on a server that did not answer
    /// (they would queue behind one another on the slot's lock).
    Unavailable {
        at: std::time::Instant,
        reason: String,
        detail: String,
    },
}

impl RetrieverSlot {
    fn open(&self) -> Option<&Arc<Retriever>> {
        match self {
            RetrieverSlot::Open(r) => Some(r),
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Plane {
    /// Opens the plane over `store`: reads the registry (auditing changes
    /// made outside ctxplane) and the emergency-stop flag. The retriever,
    /// the model and the indexer are opened when first needed.
    pub fn open(settings: Settings, store: RegistryStore, profile: Profile) -> Result<Plane> {
        // Replicas may share the data directory: each appends to an audit
        // chain of its own.
        let store = if profile.read_only && store.audit().process().is_none() {
            store.with_audit_process(&replica_process_id())?
        } else {
            store
        };
        let reg = store.load(&settings.actor)?;
        let hash = registry_hash(store.registry_path());
        let stop = access::StopGate::load(&settings.data_dir);
        Ok(Plane {
            registry: RwLock::new((hash, Arc::new(reg))),
            model: Mutex::new(None),
            retriever: Mutex::new(RetrieverSlot::Closed),
            ingest: Mutex::new(None),
            stop,
            path_redactor: std::sync::OnceLock::new(),
            metrics: Metrics::default(),
            meter: limits::Meter::new(&settings.data_dir),
            snapshots: snapshots::Store::new(&settings.data_dir, store.audit().process()),
            passes: std::sync::atomic::AtomicU64::new(0),
            settings,
            store,
            profile,
        })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn store(&self) -> &RegistryStore {
        &self.store
    }

    /// The registry in force, re-parsed when its file's content changed
    /// (compared by hash, so an edit that keeps the modification time is
    /// seen too). Never takes the data-dir lock (an indexing pass may hold
    /// it): changes made outside ctxplane are audited by the next pass,
    /// which loads the registry through the store.
    pub fn registry(&self) -> Result<Arc<Registry>> {
        let path = self.store.registry_path();
        let bytes = Registry::read_file(path)?;
        let hash = registry::ContentHash::of(&bytes);
        {
            let r = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            if r.0 == Some(hash) {
                return Ok(r.1.clone());
            }
        }
        let reg = Arc::new(Registry::from_bytes(bytes, path)?);
        *self.registry.write().unwrap_or_else(PoisonError::into_inner) = (Some(hash), reg.clone());
        Ok(reg)
    }

    /// The registry through the store (changes made outside ctxplane and
    /// lapsed exceptions are audited), made the one in force.
    pub fn reload_registry(&self) -> Result<Arc<Registry>> {
        let reg = self.store.load(&self.settings.actor)?;
        Ok(self.set_registry(reg))
    }

    pub(crate) fn set_registry(&self, reg: Registry) -> Arc<Registry> {
        let reg = Arc::new(reg);
        let hash = registry_hash(self.store.registry_path());
        *self.registry.write().unwrap_or_else(PoisonError::into_inner) = (hash, reg.clone());
        reg
    }

    /// The model, loaded once (onnxruntime allows one environment per
    /// process, so indexing and queries share it).
    pub fn model(&self) -> Result<Arc<Embedder>, String> {
        let mut m = lock(&self.model);
        m.get_or_insert_with(|| match &self.profile.embedding {
            Embedding::Off(reason) => Err(reason.clone()),
            Embedding::On { bulk_threads } => ingest::load_model(&self.settings, *bulk_threads),
        })
        .clone()
    }

    /// The retriever, opened on first use with a read handle on the vectors.
    /// A replica whose shared index is unavailable tries again at most
    /// once every [`UNAVAILABLE_RETRY_SECS`]; requests in between are
    /// answered with that failure at once.
    pub fn retriever(&self) -> Result<Arc<Retriever>> {
        let mut slot = lock(&self.retriever);
        match &*slot {
            RetrieverSlot::Open(r) => return Ok(r.clone()),
            RetrieverSlot::Unavailable { at, reason, detail }
                if at.elapsed() < std::time::Duration::from_secs(UNAVAILABLE_RETRY_SECS) =>
            {
                return Err(Error::Unavailable {
                    reason: reason.clone(),
                    detail: detail.clone(),
                });
            }
            _ => {}
        }
        let opened = self.open_retriever();
        *slot = match &opened {
            Ok(r) => RetrieverSlot::Open(r.clone()),
            Err(Error::Unavailable { reason, detail }) => RetrieverSlot::Unavailable {
                at: std::time::Instant::now(),
                reason: reason.clone(),
                detail: detail.clone(),
            },
            Err(_) => RetrieverSlot::Closed,
        };
        opened
    }

    fn open_retriever(&self) -> Result<Arc<Retriever>> {
        let dense = self.model().and_then(|m| {
            ingest::open_vectors(&self.settings, self.store.data_dir(), false, m)
                .map(|d| (d.embedder, d.store))
                .map_err(|e| match self.settings.vectors {
                    VectorBackend::Embedded => e,
                    // A server's address and messages go to the log; every
                    // answer carries the reason.
                    _ => {
                        warn_unavailable("vector store unavailable", &e);
                        retriever::STORE_UNAVAILABLE.to_string()
                    }
                })
        });
        let opened = if self.profile.read_only {
            self.shared_retriever(dense)?
        } else {
            Retriever::open(self.store.data_dir(), dense)?
        };
        Ok(Arc::new(
            opened
                .with_topics(&self.settings.topics_dir, self.settings.topic_grace_days)
                .with_clock(self.store.clock_handle()),
        ))
    }

    /// A replica's retriever: chunks, BM25 and vectors all from the shared
    /// collection (as a reader: nothing is created), manifests and topic
    /// vectors from the data dir where there are any.
    fn shared_retriever(
        &self,
        dense: std::result::Result<(Arc<Embedder>, Box<dyn indexer::vector::VectorStore>), String>,
    ) -> Result<Retriever> {
        if self.settings.vectors == VectorBackend::Embedded {
            return Err(Error::Config(
                "a read-only replica reads the shared index: set vector_store = \"qdrant\"".into(),
            ));
        }
        let model = self
            .model()
            .map_err(|e| Error::Config(format!("a read-only replica needs the model: {e}")))?;
        // Not kept when it fails: the next request tries again, so a
        // replica started before Qdrant or the indexer serves once they are.
        let index =
            ingest::open_shared_index(&self.settings, self.store.data_dir(), &model).map_err(|e| {
                warn_unavailable("shared index unavailable", &e);
                match e {
                    Error::Config(m) => Error::Config(format!("the shared index cannot be read: {m}")),
                    other => other,
                }
            })?;
        Ok(Retriever::with_index(self.store.data_dir(), index, dense))
    }

    /// The ingest state (indexer and writable vectors), opened on first use.
    /// Holding the guard serialises passes. A read-only replica has none:
    /// what would write (a pass, a purge, filling vectors) is refused.
    pub(crate) fn ingest(&self) -> Result<MutexGuard<'_, Option<ingest::Ingest>>> {
        if self.profile.read_only {
            return Err(Error::Conflict(
                "this is a read-only replica; indexing and purges run in the indexer (`ctxplane index --watch`)"
                    .into(),
            ));
        }
        let mut g = lock(&self.ingest);
        if g.is_none() {
            let indexer = ingest::open_indexer(&self.settings, self.store.data_dir())?;
            let dense = match self.model() {
                // A configured server that cannot be reached (or refuses
                // us) fails the pass: nothing is indexed half-way and
                // nothing reports success. Without a model, vectors are
                // simply off.
                Ok(m) => match ingest::open_vectors(&self.settings, self.store.data_dir(), true, m) {
                    Err(e) if self.settings.vectors != VectorBackend::Embedded => {
                        return Err(Error::Config(format!("vector store: {e}")));
                    }
                    other => other,
                },
                Err(e) => Err(e),
            };
            *g = Some(ingest::Ingest {
                indexer,
                dense,
                shared_vectors: self.settings.vectors != VectorBackend::Embedded,
            });
        }
        Ok(g)
    }

    /// The unit of work: one pass over `only` (or every source) under the
    /// data-dir lock, audited, vectors caught up (and expunged after a
    /// purge), the retriever refreshed. Serialised with every other pass.
    /// Does nothing during an emergency stop.
    pub fn update(
        &self,
        only: Option<&BTreeSet<String>>,
        kind: PassKind,
        progress: &mut dyn Progress,
    ) -> Result<Option<PassOutcome>> {
        if self.stop.reason().is_some() {
            // Stopped: nothing is walked, but a purge a killed process left
            // unfinished is finished (a leak must still be purgeable).
            let pending = {
                let guard = self.ingest()?;
                match guard.as_ref() {
                    Some(ing) => !ing.indexer.pending_purges()?.is_empty(),
                    None => false,
                }
            };
            if pending {
                let actor = self.settings.actor.clone();
                self.purge_pass(&actor)?;
            }
            return Ok(None);
        }
        let actor = self.settings.actor.clone();
        self.pass(only, kind, &actor, progress).map(Some)
    }

    /// A pass that walks no source and purges every source no longer
    /// approved: what a revocation needs, also during an emergency stop.
    /// `actor` is who the purge proofs are audited for.
    pub(crate) fn purge_pass(&self, actor: &str) -> Result<PassOutcome> {
        self.pass(Some(&BTreeSet::new()), PassKind::Update, actor, &mut Quiet)
    }

    fn pass(
        &self,
        only: Option<&BTreeSet<String>>,
        kind: PassKind,
        actor: &str,
        progress: &mut dyn Progress,
    ) -> Result<PassOutcome> {
        let mut guard = self.ingest()?;
        let Some(ing) = guard.as_mut() else {
            return Err(Error::internal(anyhow::anyhow!("ingest state not opened")));
        };
        let reg = self.reload_registry()?;
        let started = std::time::Instant::now();
        let (report, _) = ingest::run_pass(&ing.indexer, &reg, &self.store, only, progress)?;
        let changed = report.committed || !report.purged.is_empty();
        let audit_seq = match kind {
            PassKind::Full => {
                ingest::audit_pass(&self.settings.actor, &self.store, &reg, &report, "index.pass")?
            }
            PassKind::Update if changed => {
                ingest::audit_pass(&self.settings.actor, &self.store, &reg, &report, "index.update")?
            }
            PassKind::Update => None,
        };
        self.metrics.record_pass(&report, self.store.clock().now());
        let pass_ms = started.elapsed().as_millis() as u64;
        let pending = ing.indexer.pending_purges()?;
        let vectors = if kind == PassKind::Full || report.committed || !pending.is_empty() {
            ingest::sync_vectors(
                &ing.indexer,
                &mut ing.dense,
                &self.settings.actor,
                &self.store,
                self.profile.embed_per_pass,
                progress,
            )?
        } else {
            serde_json::json!({"status": "not_run"})
        };
        registry::fsutil::crash_point("purge.expunged");
        let purges = ingest::verify_purges(ing, &reg, &self.store, actor, &report.purged)?;
        drop(guard);
        self.passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = lock(&self.retriever).open() {
            r.refresh()?;
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if changed {
            let files: u64 = report.sources.iter().map(|s| s.indexed + s.removed).sum();
            let added: u64 = report.sources.iter().map(|s| s.chunks_added).sum();
            tracing::info!(
                files_changed = files,
                chunks_added = added,
                chunks = report.total_chunks,
                embedded = vectors["embedded"].as_u64().unwrap_or(0),
                pass_ms,
                vectors_ms = elapsed_ms.saturating_sub(pass_ms),
                total_ms = elapsed_ms,
                "indexed"
            );
        }
        Ok(PassOutcome {
            report,
            elapsed_ms,
            audit_seq,
            vectors,
            purges,
        })
    }

    /// One step of filling in vectors behind the lexical index: embeds at
    /// most [`FILL_STEP`] chunks under the ingest lock, then makes them
    /// searchable. Returns the chunks still without a vector (0: complete,
    /// or no model). Does nothing during an emergency stop.
    pub fn fill_vectors(&self) -> Result<u64> {
        if self.stop.reason().is_some() {
            return Ok(0);
        }
        let (before, after, remaining) = {
            let mut guard = self.ingest()?;
            let Some(ing) = guard.as_mut() else {
                return Ok(0);
            };
            let before = match &ing.dense {
                Ok(d) => d.store.len()?,
                Err(_) => return Ok(0),
            };
            let v = ingest::sync_vectors(
                &ing.indexer,
                &mut ing.dense,
                &self.settings.actor,
                &self.store,
                Some(FILL_STEP),
                &mut Quiet,
            )?;
            let after = match &ing.dense {
                Ok(d) => d.store.len()?,
                Err(_) => 0,
            };
            (before, after, v["remaining"].as_u64().unwrap_or(0))
        };
        let mut slot = lock(&self.retriever);
        if before == 0 && after > 0 {
            // The retriever was opened without vectors: open it again so
            // that hybrid search starts.
            if slot.open().is_some() {
                *slot = RetrieverSlot::Closed;
            }
        } else if let Some(r) = slot.open() {
            r.refresh()?;
        }
        Ok(remaining)
    }

    /// The vector backend and whether it answers: the embedded store is
    /// always there; a Qdrant server is asked (off any async worker, as a
    /// reader: nothing is created). `(ok, detail)`.
    pub fn vector_backend(&self) -> (bool, serde_json::Value) {
        use serde_json::json;
        match &self.settings.vectors {
            VectorBackend::Embedded => (true, json!({"backend": "embedded"})),
            VectorBackend::Qdrant { url, prefix, .. } => {
                let Ok(model) = self.model() else {
                    return (true, json!({"backend": "qdrant", "status": "off (no model)"}));
                };
                let collection = indexer::vector::qdrant::collection_name(prefix, model.model_id());
                match ingest::open_vectors(&self.settings, self.store.data_dir(), false, model) {
                    Ok(_) => (
                        true,
                        json!({"backend": "qdrant", "collection": collection, "status": "reachable"}),
                    ),
                    Err(e) => {
                        // Addresses and server messages go to the log, not
                        // to an unauthenticated probe.
                        warn_unavailable("vector store unavailable", &format_args!("{url}: {e}"));
                        (
                            false,
                            json!({"backend": "qdrant", "collection": collection, "status": "unavailable", "error": "the Qdrant server cannot be reached or used; see the server log"}),
                        )
                    }
                }
            }
        }
    }

    /// Passes this process has run; changes when there may be new chunks
    /// to embed.
    pub fn passes(&self) -> u64 {
        self.passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records audit events; the action is acknowledged only after this returns.
    pub(crate) fn record(&self, events: Vec<registry::audit::Event>) -> Result<Vec<registry::audit::Entry>> {
        Ok(self.store.record(events)?)
    }

    /// A redactor with the rules in force, to keep paths that hold a secret
    /// out of every report (the indexer refuses them as `secret_in_path`).
    pub fn path_redactor(&self) -> Result<&indexer::redact::Redactor> {
        if let Some(r) = self.path_redactor.get() {
            return Ok(r);
        }
        let rules = ingest::load_rules(self.settings.redaction_rules.as_deref(), true)?;
        Ok(self
            .path_redactor
            .get_or_init(|| indexer::redact::Redactor::new(rules, [0u8; 32])))
    }

    /// The emergency stop's reason, if one is in force.
    pub fn stopped(&self) -> Option<String> {
        self.stop.reason()
    }

    /// Whether the process serves (approvals ingest at once).
    pub fn profile(&self) -> &Profile {
        &self.profile
    }
}

/// The name of a replica's audit chain: `CTXPLANE_AUDIT_PROCESS` (a pod's
/// name, say), else host, process id and start time, so a restarted
/// replica starts a new chain rather than continuing a dead one's.
pub fn replica_process_id() -> String {
    let clean = |s: &str| -> String {
        s.trim()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect()
    };
    if let Ok(id) = std::env::var("CTXPLANE_AUDIT_PROCESS")
        && !id.trim().is_empty()
    {
        return clean(&id);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| clean(&h))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("{host}-{}-{started}", std::process::id())
}

/// The hash of the registry file's content as it is now, if readable.
fn registry_hash(path: &std::path::Path) -> Option<registry::ContentHash> {
    Registry::read_file(path)
        .ok()
        .map(|b| registry::ContentHash::of(&b))
}
