//! ctxplane's indexer: approved sources in, redacted chunks out.
//!
//! * [`redact`]: secret redaction, before anything is stored.
//! * [`walk`], [`git`]: listing a source's files and its HEAD commit.
//! * [`chunk`]: splitting redacted text into chunks with line spans.
//! * [`lexical`]: the tantivy index and its code-aware [`tokenizer`].
//! * [`manifest`]: per-source record of what was ingested.
//! * [`Indexer`]: the on-disk layout and the indexing pass.

pub mod alignment;
pub mod chunk;
pub mod embed;
pub mod error;
pub mod freshness;
pub mod git;
pub mod lexical;
pub mod manifest;
mod pass;
pub mod redact;
pub mod terms;
pub mod tokenizer;
pub mod vector;
pub mod walk;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use registry::{Policy, Registry};

pub use error::{IndexError, Result};
pub use pass::{
    PassOptions, PassReport, RedactionRecord, SourceReport, Tally, WORKERS as MAX_INDEX_THREADS, chunk_id,
};

use crate::lexical::Lexical;
use crate::manifest::Manifests;
use crate::redact::{Redactor, RuleSet};

/// The indexer's part of the data directory:
/// `index/lexical/` (tantivy), `index/manifests/<source>.json`,
/// `index/redactions.jsonl`, and `keys/redaction.key`.
#[derive(Debug)]
pub struct Indexer {
    data_dir: PathBuf,
    lexical: Lexical,
    manifests: Manifests,
    redactor: Redactor,
    options: PassOptions,
}

impl Indexer {
    pub fn open(data_dir: &Path, rules: RuleSet, options: PassOptions) -> Result<Indexer> {
        let index_dir = data_dir.join("index");
        let lexical = match Lexical::open(&index_dir.join("lexical")) {
            Err(IndexError::SchemaChanged(dir)) => {
                // Written by an older version: rebuild from the sources. The
                // manifests go too, so every file is ingested again; vectors
                // stay (chunk ids do not depend on the schema).
                for stale in [dir.clone(), index_dir.join("manifests")] {
                    match std::fs::remove_dir_all(&stale) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(IndexError::io(stale, e)),
                    }
                }
                for stale in [index_dir.join("passes.json"), index_dir.join("pending.json")] {
                    match std::fs::remove_file(&stale) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(IndexError::io(stale, e)),
                    }
                }
                Lexical::open(&dir)?
            }
            other => other?,
        };
        let key = redaction_key(&data_dir.join("keys"))?;
        Ok(Indexer {
            data_dir: data_dir.to_path_buf(),
            lexical,
            manifests: Manifests::new(index_dir.join("manifests")),
            redactor: Redactor::new(rules, key),
            options,
        })
    }

    pub fn lexical(&self) -> &Lexical {
        &self.lexical
    }

    pub fn manifests(&self) -> &Manifests {
        &self.manifests
    }

    /// Runs one pass over every approved source. `progress(source, done,
    /// total)` is called per file.
    pub fn run_pass(
        &self,
        registry: &Registry,
        policy: &Policy<'_>,
        now: Timestamp,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<PassReport> {
        self.run_pass_over(registry, policy, now, None, progress)
    }

    /// Like [`Indexer::run_pass`], walking only the sources in `only`
    /// (`None`: all); sources that are no longer approved are purged either way.
    pub fn run_pass_over(
        &self,
        registry: &Registry,
        policy: &Policy<'_>,
        now: Timestamp,
        only: Option<&std::collections::BTreeSet<String>>,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<PassReport> {
        let pass = pass::Pass {
            lexical: &self.lexical,
            manifests: &self.manifests,
            redactor: &self.redactor,
            options: &self.options,
            now,
            only,
            journal: &self.data_dir.join("index/pending.json"),
            purges: &self.purges_path(),
            touched: Default::default(),
        };
        let (report, redactions) = pass.run(registry, policy, progress)?;
        registry::fsutil::crash_point("pass.stored");
        // Removed text (a purged source, a file deleted, edited or newly
        // denied, or left by a pass killed before this step) must leave the
        // segment files too, not only results.
        if self.lexical.deleted_docs()? > 0 {
            self.lexical.expunge_deletes()?;
        }
        // A purged source leaves no paths or keyed hashes behind (unless it
        // was approved again since, and this pass logged its redactions anew).
        let redactions_log = self.data_dir.join("index/redactions.jsonl");
        let unfinished: Vec<String> = self
            .pending_purges()?
            .into_iter()
            .filter(|id| !registry.is_approved(id))
            .collect();
        if !unfinished.is_empty() {
            pass::drop_redactions(&redactions_log, &unfinished)?;
        }
        pass::append_redactions(&redactions_log, &redactions)?;
        let mut passes = self.passes()?;
        for s in report.sources.iter().filter(|s| s.error.is_none()) {
            passes.insert(s.source.clone(), now);
        }
        for id in &report.purged {
            passes.remove(id);
        }
        let path = self.passes_path();
        let bytes = serde_json::to_vec_pretty(&passes).map_err(|e| IndexError::Layout {
            path: path.clone(),
            message: e.to_string(),
        })?;
        registry::fsutil::write_atomic(&path, &bytes)?;
        Ok(report)
    }

    /// Where the embedded vector store lives.
    pub fn vectors_dir(data_dir: &Path) -> PathBuf {
        data_dir.join("vectors/embedded")
    }

    /// Gives every chunk in the lexical index a vector (from the cache or
    /// the model) and removes vectors of chunks that are gone.
    pub fn sync_vectors(
        &self,
        store: &mut dyn vector::VectorStore,
        embedder: &embed::Embedder,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<vector::sync::SyncReport> {
        self.sync_vectors_at_most(store, embedder, None, progress)
    }

    /// [`Indexer::sync_vectors`] that embeds at most `limit` chunks (removals
    /// and cache hits are always done in full); `remaining` in the report
    /// says what is left for the next call.
    pub fn sync_vectors_at_most(
        &self,
        store: &mut dyn vector::VectorStore,
        embedder: &embed::Embedder,
        limit: Option<u64>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<vector::sync::SyncReport> {
        let cache_dir = self.cache_dir();
        let purging = !self.pending_purges()?.is_empty();
        if purging {
            // Another model's cache (or a torn rewrite) cannot be checked
            // against the index: a purge removes it.
            for (path, _) in vector::cache::other_files(&cache_dir, Some(embedder.model_id()))? {
                std::fs::remove_file(&path).map_err(|e| IndexError::io(&path, e))?;
            }
        }
        let mut cache = vector::cache::EmbeddingCache::open(&cache_dir, embedder.model_id())?;
        vector::sync::sync(
            &self.manifests,
            &self.lexical,
            store,
            &mut cache,
            embedder,
            vector::sync::SyncOptions { limit, purging },
            progress,
        )
    }

    fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("vectors/cache")
    }

    /// Embedding-cache records that belong to no text the index holds:
    /// with `model_id`, that model's records for other texts plus every
    /// record of other models' caches; without one, every record there
    /// is (no key can be checked). 0 after a purge's sync.
    pub fn cache_orphans(&self, model_id: Option<&str>) -> Result<u64> {
        let dir = self.cache_dir();
        let mut n: u64 = vector::cache::other_files(&dir, model_id)?
            .iter()
            .map(|(_, records)| records)
            .sum();
        if let Some(model_id) = model_id {
            let name = dir.join(format!("{}.cache", embed::file_stem(model_id)));
            if name.exists() {
                let cache = vector::cache::EmbeddingCache::open(&dir, model_id)?;
                n += cache.outside(&vector::sync::live_keys(&self.lexical, model_id)?) as u64;
            }
        }
        Ok(n)
    }

    fn purges_path(&self) -> PathBuf {
        self.data_dir.join("index/purges.json")
    }

    /// Sources whose purge was started and not yet verified clean (a
    /// process killed mid-purge leaves them here; the next pass finishes).
    pub fn pending_purges(&self) -> Result<std::collections::BTreeSet<String>> {
        pass::read_purges(&self.purges_path())
    }

    /// Marks purges verified: they leave the journal.
    pub fn finish_purges(&self, verified: &[String]) -> Result<()> {
        let mut left = self.pending_purges()?;
        for id in verified {
            left.remove(id);
        }
        pass::write_purges(&self.purges_path(), &left)
    }

    fn passes_path(&self) -> PathBuf {
        self.data_dir.join("index/passes.json")
    }

    /// When each source was last walked by a pass.
    pub fn passes(&self) -> Result<BTreeMap<String, Timestamp>> {
        read_passes(self.passes_path())
    }

    /// Per source: what changed on disk since the last pass, and which
    /// indexed content is past its max age. Reads no file contents.
    pub fn freshness(
        &self,
        registry: &Registry,
        policy: &Policy<'_>,
        now: Timestamp,
    ) -> Result<Vec<freshness::SourceFreshness>> {
        freshness::report(
            &self.lexical,
            &self.manifests,
            &self.passes()?,
            registry,
            policy,
            now,
            &self.redactor,
        )
    }
}

/// The key that makes redaction hashes unlinkable outside this deployment;
/// created once with owner-only permissions.
fn redaction_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join("redaction.key");
    match std::fs::read(&path) {
        Ok(bytes) => <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| IndexError::Layout {
            path: path.clone(),
            message: "redaction key must be exactly 32 bytes".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| IndexError::io(dir, e))?;
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| IndexError::Layout {
                path: path.clone(),
                message: e.to_string(),
            })?;
            registry::fsutil::write_atomic(&path, &key)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| IndexError::io(&path, e))?;
            }
            Ok(key)
        }
        Err(e) => Err(IndexError::io(path, e)),
    }
}

/// When each source was last walked by a pass, read from `path`.
fn read_passes(path: PathBuf) -> Result<BTreeMap<String, Timestamp>> {
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| IndexError::Layout {
            path,
            message: format!("unreadable ({e}); delete it, the next pass rewrites it"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(IndexError::io(path, e)),
    }
}

/// Freshness from a read-only view of the index under `data_dir` (a
/// reader's `lexical`): what `Indexer::freshness` reports, without the
/// indexer, so that asking never waits for a pass.
pub fn freshness_of(
    data_dir: &Path,
    lexical: &dyn lexical::ChunkIndex,
    registry: &Registry,
    policy: &Policy<'_>,
    now: Timestamp,
    redactor: &Redactor,
) -> Result<Vec<freshness::SourceFreshness>> {
    let manifests = Manifests::new(data_dir.join("index/manifests"));
    let passes = read_passes(data_dir.join("index/passes.json"))?;
    freshness::report(lexical, &manifests, &passes, registry, policy, now, redactor)
}
