//! One indexing pass over every approved source: decide, read, redact,
//! chunk, store; remove what is gone or no longer allowed; purge sources
//! that are no longer approved.
//!
//! A file whose content is unchanged keeps the commit it was ingested at
//! (its content is the same at that commit), so moving HEAD re-processes
//! only the files that differ.
//!
//! Crash safety: every file's old chunks are deleted before its new ones
//! are added; before the index commit, the files whose chunks changed are
//! written to a journal (`index/pending.json`), and the journal is removed
//! only after the manifests are stored. A pass that finds a journal drops
//! those files' chunks and manifest entries, so they are ingested afresh:
//! a pass interrupted anywhere is completed by the next one.
//!
//! Purges are durable intents: the sources a pass purges are added to
//! `index/purges.json` before the deletion is committed, and leave it only
//! once every store is verified clean (see `Indexer::finish_purges`). A
//! process killed anywhere in between leaves the intent behind, and the
//! next pass (or server start) finishes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use registry::{Policy, Registry, Status};
use serde::Serialize;

use crate::chunk::{chunk, language_of_text};
use crate::error::{IndexError, Result};
use crate::lexical::{ChunkDoc, Lexical};
use crate::manifest::{FileEntry, Manifests, SkippedEntry, SourceManifest};
use crate::redact::{KnownSecrets, Redacted, Redactor};
use crate::walk::{self, Skip};

/// How many example paths a report keeps per reason.
const EXAMPLES: usize = 20;
/// Files prepared in parallel between two in-order commits to the index.
const BATCH: usize = 64;
/// Most threads that read, redact and chunk files at once.
pub const WORKERS: usize = 8;

/// A file that must be read: what was decided about it in order.
struct Work<'f> {
    found: &'f walk::Found,
    decision: registry::Decision,
    mtime_ns: i64,
    /// Its hash as ingested, when it may be unchanged.
    unchanged_hash: Option<String>,
}

/// A file read, hashed, and (when changed) redacted and chunked.
struct Prepared {
    text: String,
    hash: String,
    /// `None` when the hash is unchanged (nothing else was done).
    redacted: Option<Redacted>,
    /// Values this file holds (keyed hashes), for later files.
    found_here: KnownSecrets,
    chunks: Option<Vec<crate::chunk::Chunk>>,
}

#[derive(Clone, Debug)]
pub struct PassOptions {
    pub max_file_bytes: u64,
    /// Threads that read, redact and chunk files (1 to [`WORKERS`]).
    pub threads: usize,
}

impl PassOptions {
    /// One thread per core, up to [`WORKERS`].
    pub fn default_threads() -> usize {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, WORKERS)
    }
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            max_file_bytes: 1 << 20,
            threads: PassOptions::default_threads(),
        }
    }
}

/// Counts with a few example paths.
#[derive(Clone, Debug, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Tally {
    pub count: u64,
    pub examples: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, path: &str) {
        self.count += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(path.to_string());
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SourceReport {
    pub source: String,
    pub root: PathBuf,
    pub commit: Option<String>,
    pub files_seen: u64,
    pub indexed: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub chunks_added: u64,
    pub chunks_removed: u64,
    pub bytes_read: u64,
    pub redactions: u64,
    pub denied: BTreeMap<String, Tally>,
    pub skipped: BTreeMap<String, Tally>,
    /// Set when the source could not be walked; its indexed content is kept.
    pub error: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct PassReport {
    pub sources: Vec<SourceReport>,
    /// Sources whose content was removed because they are no longer approved.
    pub purged: Vec<String>,
    pub committed: bool,
    pub total_chunks: u64,
}

impl PassReport {
    pub fn changed(&self) -> bool {
        self.committed
    }
}

/// One redaction, as logged: never the value.
#[derive(Clone, Debug, Serialize)]
pub struct RedactionRecord {
    pub source: String,
    pub path: String,
    pub line: u32,
    pub column: u32,
    pub rule_id: String,
    pub keyed_hash: String,
    pub at: Timestamp,
}

pub(crate) struct Pass<'a> {
    pub lexical: &'a Lexical,
    pub manifests: &'a Manifests,
    pub redactor: &'a Redactor,
    pub options: &'a PassOptions,
    pub now: Timestamp,
    /// Walk only these sources (purging still covers all).
    pub only: Option<&'a BTreeSet<String>>,
    /// `index/pending.json`: the files whose chunks a pass changed, written
    /// before the index commit and removed once the manifests are stored.
    pub journal: &'a Path,
    /// `index/purges.json`: sources whose purge is not verified yet.
    pub purges: &'a Path,
    /// (source, path) of every file whose chunks this pass added or deleted.
    pub touched: std::cell::RefCell<BTreeSet<(String, String)>>,
}

impl Pass<'_> {
    pub fn run(
        &self,
        registry: &Registry,
        policy: &Policy<'_>,
        progress: &mut dyn FnMut(&str, u64, u64),
    ) -> Result<(PassReport, Vec<RedactionRecord>)> {
        // The writer's lock is held until the manifests are stored (below),
        // so no other pass is writing one now: a temp file here is a killed
        // writer's.
        let mut writer = self.lexical.writer()?;
        self.manifests.remove_leftovers()?;
        let mut report = PassReport::default();
        let mut redactions = Vec::new();
        let mut dirty: Vec<SourceManifest> = Vec::new();
        let mut changed = false;

        // Recover from a pass that committed chunks but died before storing
        // its manifests: those files' chunks and entries are dropped, so the
        // files are ingested afresh (or stay gone).
        let pending = read_journal(self.journal)?;
        let mut pending_by_source: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (source, path) in &pending {
            self.lexical.delete_file(&writer, source, path);
            pending_by_source
                .entry(source.clone())
                .or_default()
                .insert(path.clone());
            changed = true;
        }

        // Purge sources that are gone from the registry or not approved.
        let approved: BTreeSet<String> = registry
            .sources
            .values()
            .filter(|s| s.status == Status::Approved)
            .map(|s| s.id.to_string())
            .collect();
        let mut purge = Vec::new();
        for id in self.manifests.sources()? {
            if !approved.contains(&id) {
                self.lexical.delete_source(&writer, &id);
                purge.push(id);
                changed = true;
            }
        }
        let walked = |id: &str| approved.contains(id) && self.only.is_none_or(|only| only.contains(id));
        for (id, paths) in &pending_by_source {
            if approved.contains(id) && !walked(id) {
                let mut m = self.manifests.load(id)?;
                for p in paths {
                    m.files.remove(p);
                }
                dirty.push(m);
            }
        }

        for source in registry
            .sources
            .values()
            .filter(|s| s.status == Status::Approved)
            .filter(|s| self.only.is_none_or(|only| only.contains(s.id.as_str())))
        {
            let id = source.id.as_str();
            let root = source.root(&registry.base_dir);
            let mut manifest = self.manifests.load(id)?;
            // Files processed by another chunker or other redaction rules
            // are processed again, even when unchanged on disk.
            let pipeline = format!("{}+tier-{}", self.pipeline(), source.tier.get());
            let reprocess = manifest.pipeline != pipeline;
            let mut source_dirty = false;
            for p in pending_by_source.get(id).into_iter().flatten() {
                source_dirty |= manifest.files.remove(p).is_some();
            }
            let mut sr = SourceReport {
                source: id.to_string(),
                root: root.clone(),
                ..Default::default()
            };
            let files = match walk::list(&root) {
                Ok(f) => f,
                Err(e) => {
                    sr.error = Some(format!("cannot walk {}: {e}", root.display()));
                    report.sources.push(sr);
                    continue;
                }
            };
            // A `dir` source that is a git checkout has a commit too.
            let commit = crate::git::head_commit(&root);
            sr.commit = commit.clone();
            let mut seen = BTreeSet::new();
            // Values found in this source's files so far (keyed hashes, never
            // values), so a later file's copy is redacted where no rule fires.
            let mut known = KnownSecrets::default();
            let total = files.len() as u64;
            for (b, batch) in files.chunks(BATCH).enumerate() {
                // 1. In order, cheaply: what each file needs (policy,
                //    manifest); files to read become work.
                let mut work: Vec<Work<'_>> = Vec::new();
                for (i, found) in batch.iter().enumerate() {
                    progress(id, (b * BATCH + i) as u64 + 1, total);
                    sr.files_seen += 1;
                    seen.insert(found.rel.clone());
                    // A path that holds a secret is refused before anything else:
                    // only its redacted form is ever recorded.
                    if let Some(shown) = self.redactor.redact_path(&found.rel) {
                        sr.denied
                            .entry("secret_in_path".to_string())
                            .or_default()
                            .add(&shown);
                        source_dirty |= self.forget(&writer, &mut manifest, &mut sr, &found.rel);
                        source_dirty |= manifest.skipped.remove(&found.rel).is_some();
                        continue;
                    }
                    if let Some(problem) = &found.problem {
                        // Reported only: an escaped name may equal a real file's,
                        // whose chunks must not be touched for it.
                        sr.skipped
                            .entry(problem.code().to_string())
                            .or_default()
                            .add(&found.rel);
                        continue;
                    }
                    let decision = policy.decide_ingest(id, &found.rel);
                    if let Some(reason) = decision.deny_reason() {
                        sr.denied
                            .entry(reason.code().to_string())
                            .or_default()
                            .add(&found.rel);
                        source_dirty |= self.forget(&writer, &mut manifest, &mut sr, &found.rel);
                        source_dirty |= manifest.skipped.remove(&found.rel).is_some();
                        continue;
                    }
                    let mtime_ns = i64::try_from(found.mtime_ns).unwrap_or(i64::MAX);
                    if let Some(old) = manifest.skipped.get(&found.rel)
                        && !reprocess
                        && old.size == found.size
                        && old.mtime_ns == mtime_ns
                    {
                        sr.skipped.entry(old.reason.clone()).or_default().add(&found.rel);
                        continue;
                    }
                    if let Some(old) = manifest.files.get_mut(&found.rel)
                        && !reprocess
                        && old.size == found.size
                        && old.mtime_ns == mtime_ns
                    {
                        if old.decision_id != decision.id {
                            old.decision_id = decision.id.clone();
                            source_dirty = true;
                        }
                        sr.unchanged += 1;
                        continue;
                    }
                    let unchanged_hash = manifest
                        .files
                        .get(&found.rel)
                        .filter(|_| !reprocess)
                        .map(|old| old.hash.clone());
                    work.push(Work {
                        found,
                        decision,
                        mtime_ns,
                        unchanged_hash,
                    });
                }
                // 2. On every core: read, hash, redact and chunk.
                let prepared = self.prepare_all(&work);
                // 3. In order: what the files say goes into the index and
                //    the manifest, exactly as one file at a time would.
                for (w, prep) in work.into_iter().zip(prepared) {
                    let found = w.found;
                    let Prepared {
                        text,
                        hash,
                        redacted,
                        found_here,
                        chunks,
                    } = match prep {
                        Ok(p) => p,
                        Err(skip) => {
                            sr.skipped
                                .entry(skip.code().to_string())
                                .or_default()
                                .add(&found.rel);
                            source_dirty |= self.forget(&writer, &mut manifest, &mut sr, &found.rel);
                            // Remember what will not change by itself; retry the rest.
                            if matches!(
                                skip,
                                Skip::TooLarge { .. }
                                    | Skip::Binary
                                    | Skip::InvalidUtf8 { .. }
                                    | Skip::NotRegular
                            ) {
                                let entry = SkippedEntry {
                                    size: found.size,
                                    mtime_ns: w.mtime_ns,
                                    reason: skip.code().to_string(),
                                };
                                if manifest.skipped.get(&found.rel) != Some(&entry) {
                                    manifest.skipped.insert(found.rel.clone(), entry);
                                    source_dirty = true;
                                }
                            } else {
                                source_dirty |= manifest.skipped.remove(&found.rel).is_some();
                            }
                            continue;
                        }
                    };
                    // Readable now; both paths below mark the manifest dirty.
                    manifest.skipped.remove(&found.rel);
                    sr.bytes_read += text.len() as u64;
                    if let Some(old) = manifest.files.get_mut(&found.rel)
                        && w.unchanged_hash.as_deref() == Some(hash.as_str())
                    {
                        // Touched but not changed: remember the new mtime only.
                        old.mtime_ns = w.mtime_ns;
                        old.size = found.size;
                        old.decision_id = w.decision.id.clone();
                        sr.unchanged += 1;
                        source_dirty = true;
                        continue;
                    }
                    // Copies of values an earlier file held are redacted
                    // too: when the file holds no copy of a known value the
                    // parallel result is exact; otherwise this file is
                    // redacted again knowing them.
                    let (redacted, chunks) = match (redacted, chunks) {
                        (Some(r), Some(c)) if !self.redactor.mentions_known(&text, &known) => {
                            known.extend(&found_here);
                            (r, c)
                        }
                        _ => {
                            let r = self
                                .redactor
                                .redact_remembering(&text, Some(&found.rel), &mut known);
                            let c = chunk(&r.text, language_of_text(&found.rel, &text));
                            (r, c)
                        }
                    };
                    let entry = self.ingest(
                        &writer,
                        source,
                        found,
                        (redacted, chunks),
                        FileEntry {
                            hash: hash.clone(),
                            size: found.size,
                            mtime_ns: w.mtime_ns,
                            commit: commit.clone(),
                            ingested_at: self.now,
                            language: language_of_text(&found.rel, &text).to_string(),
                            chunk_ids: Vec::new(),
                            redactions: 0,
                            decision_id: w.decision.id.clone(),
                            content_since: Some(
                                manifest
                                    .files
                                    .get(&found.rel)
                                    .filter(|old| old.hash == hash)
                                    .map_or(self.now, FileEntry::content_since),
                            ),
                        },
                        &mut redactions,
                    )?;
                    if let Some(old) = manifest.files.get(&found.rel) {
                        sr.chunks_removed += old.chunk_ids.len() as u64;
                    }
                    sr.chunks_added += entry.chunk_ids.len() as u64;
                    sr.redactions += u64::from(entry.redactions);
                    sr.indexed += 1;
                    manifest.files.insert(found.rel.clone(), entry);
                    source_dirty = true;
                }
            }
            let gone: Vec<String> = manifest
                .files
                .keys()
                .filter(|p| !seen.contains(*p))
                .cloned()
                .collect();
            for path in gone {
                source_dirty |= self.forget(&writer, &mut manifest, &mut sr, &path);
            }
            let before = manifest.skipped.len();
            manifest.skipped.retain(|p, _| seen.contains(p));
            source_dirty |= manifest.skipped.len() != before;
            if reprocess {
                manifest.pipeline = pipeline;
                source_dirty = true;
            }
            if source_dirty {
                changed |= sr.indexed > 0 || sr.removed > 0;
                dirty.push(manifest);
            }
            report.sources.push(sr);
        }

        if !purge.is_empty() {
            // The intent is durable before the deletion is.
            let mut intents = read_purges(self.purges)?;
            intents.extend(purge.iter().cloned());
            write_purges(self.purges, &intents)?;
        }
        if changed {
            let mut journal = pending;
            journal.extend(self.touched.borrow().iter().cloned());
            write_journal(self.journal, &journal)?;
            self.lexical.commit(&mut writer)?;
            report.committed = true;
            registry::fsutil::crash_point("pass.committed");
        }
        for m in &dirty {
            self.manifests.store(m)?;
        }
        for id in &purge {
            self.manifests.remove(id)?;
        }
        // Index and manifests agree again.
        remove_journal(self.journal)?;
        drop(writer);
        report.purged = purge;
        report.total_chunks = self.lexical.total_chunks();
        Ok((report, redactions))
    }

    /// Removes a file's chunks and manifest entry, if it had any.
    fn forget(
        &self,
        writer: &tantivy::IndexWriter,
        manifest: &mut SourceManifest,
        sr: &mut SourceReport,
        path: &str,
    ) -> bool {
        let Some(old) = manifest.files.remove(path) else {
            return false;
        };
        self.lexical.delete_file(writer, &manifest.source, path);
        self.touched
            .borrow_mut()
            .insert((manifest.source.clone(), path.to_string()));
        sr.chunks_removed += old.chunk_ids.len() as u64;
        sr.removed += 1;
        true
    }

    /// What a manifest records about how its files were processed.
    fn pipeline(&self) -> String {
        format!(
            "chunker-{}+rules-{}",
            crate::chunk::CHUNKER_VERSION,
            self.redactor.rules().fingerprint()
        )
    }

    /// Reads, hashes, redacts and chunks `work` on `options.threads`
    /// threads; results in `work`'s order. Redaction here knows no values
    /// from other files (the caller redacts again when it knows some);
    /// a file whose hash is unchanged is only read and hashed.
    fn prepare_all(&self, work: &[Work<'_>]) -> Vec<std::result::Result<Prepared, Skip>> {
        let prepare = |w: &Work<'_>| -> std::result::Result<Prepared, Skip> {
            let (text, hash) = walk::read_text(w.found, self.options.max_file_bytes)?;
            let hash = hash.to_hex().to_string();
            if w.unchanged_hash.as_deref() == Some(hash.as_str()) {
                return Ok(Prepared {
                    text,
                    hash,
                    redacted: None,
                    found_here: KnownSecrets::default(),
                    chunks: None,
                });
            }
            let mut found_here = KnownSecrets::default();
            let redacted = self
                .redactor
                .redact_remembering(&text, Some(&w.found.rel), &mut found_here);
            let chunks = chunk(&redacted.text, language_of_text(&w.found.rel, &text));
            Ok(Prepared {
                text,
                hash,
                redacted: Some(redacted),
                found_here,
                chunks: Some(chunks),
            })
        };
        let workers = self.options.threads.clamp(1, WORKERS).min(work.len());
        if workers <= 1 {
            return work.iter().map(prepare).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut out: Vec<Option<std::result::Result<Prepared, Skip>>> =
            (0..work.len()).map(|_| None).collect();
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(w) = work.get(i) else { break };
                            mine.push((i, prepare(w)));
                        }
                        mine
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(mine) => {
                        for (i, r) in mine {
                            out[i] = Some(r);
                        }
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
        out.into_iter()
            .map(|r| r.unwrap_or(Err(Skip::NotRegular)))
            .collect()
    }

    /// Chunks and stores one file's redacted text and logs its findings;
    /// returns `entry` with its chunk ids and redaction count filled in.
    fn ingest(
        &self,
        writer: &tantivy::IndexWriter,
        source: &registry::Source,
        found: &walk::Found,
        (redacted, chunks): (Redacted, Vec<crate::chunk::Chunk>),
        mut entry: FileEntry,
        log: &mut Vec<RedactionRecord>,
    ) -> Result<FileEntry> {
        let id = source.id.as_str();
        let rel = found.rel.as_str();
        for f in &redacted.findings {
            log.push(RedactionRecord {
                source: id.to_string(),
                path: rel.to_string(),
                line: f.line,
                column: f.column,
                rule_id: f.rule_id.clone(),
                keyed_hash: f.keyed_hash.clone(),
                at: self.now,
            });
        }
        self.touched
            .borrow_mut()
            .insert((id.to_string(), rel.to_string()));
        self.lexical.delete_file(writer, id, rel);
        let mut chunk_ids = Vec::with_capacity(chunks.len());
        for c in chunks {
            let chunk_hash = blake3::hash(c.text.as_bytes()).to_hex().to_string();
            let chunk_id = chunk_id(id, rel, c.start_line, c.end_line, &chunk_hash);
            let evidence = crate::lexical::Evidence {
                signature: c.signature.as_deref(),
                doc: c.doc.as_deref(),
            };
            self.lexical.add_with(
                writer,
                &ChunkDoc {
                    chunk_id: chunk_id.clone(),
                    source: id.to_string(),
                    tier: source.tier.get(),
                    path: rel.to_string(),
                    language: entry.language.clone(),
                    symbol: c.symbol,
                    kind: c.kind,
                    start_line: c.start_line,
                    end_line: c.end_line,
                    content: c.text,
                    file_hash: entry.hash.clone(),
                    chunk_hash,
                    commit: entry.commit.clone(),
                    ingested_at: self.now.as_second(),
                },
                &evidence,
            )?;
            chunk_ids.push(chunk_id);
        }
        entry.chunk_ids = chunk_ids;
        entry.redactions = redacted.findings.len() as u32;
        Ok(entry)
    }
}

/// Stable id of a chunk: where it is and what it says.
pub fn chunk_id(source: &str, path: &str, start: u32, end: u32, chunk_hash: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [source, path, &start.to_string(), &end.to_string(), chunk_hash] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("c-{}", &h.finalize().to_hex()[..24])
}

fn read_journal(path: &Path) -> Result<BTreeSet<(String, String)>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| IndexError::Layout {
            path: path.into(),
            message: format!(
                "pending-changes journal is unreadable ({e}); delete the index directory to rebuild"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(IndexError::io(path, e)),
    }
}

fn write_journal(path: &Path, entries: &BTreeSet<(String, String)>) -> Result<()> {
    let bytes = serde_json::to_vec(entries).map_err(|e| IndexError::Layout {
        path: path.into(),
        message: e.to_string(),
    })?;
    registry::fsutil::write_atomic(path, &bytes)?;
    Ok(())
}

/// Sources whose purge was started and is not verified yet.
pub(crate) fn read_purges(path: &Path) -> Result<BTreeSet<String>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| IndexError::Layout {
            path: path.into(),
            message: format!(
                "purge journal is unreadable ({e}); run `ctxplane registry list` and re-revoke what must go"
            ),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(IndexError::io(path, e)),
    }
}

/// Stores the unfinished purges (the file goes when none is left).
pub(crate) fn write_purges(path: &Path, sources: &BTreeSet<String>) -> Result<()> {
    if sources.is_empty() {
        return remove_journal(path);
    }
    let bytes = serde_json::to_vec(sources).map_err(|e| IndexError::Layout {
        path: path.into(),
        message: e.to_string(),
    })?;
    registry::fsutil::write_atomic(path, &bytes)?;
    Ok(())
}

fn remove_journal(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                registry::fsutil::fsync_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IndexError::io(path, e)),
    }
}

/// Appends redaction records (JSON lines) and fsyncs.
/// Rewrites the redaction log without the records of `purged` sources: a
/// revoked source leaves no paths or keyed hashes behind.
pub(crate) fn drop_redactions(path: &Path, purged: &[String]) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(IndexError::io(path, e)),
    };
    let keep = |line: &str| {
        serde_json::from_str::<serde_json::Value>(line)
            .map(|v| !purged.iter().any(|p| v["source"] == p.as_str()))
            .unwrap_or(false)
    };
    let kept: String = text.lines().filter(|l| keep(l)).flat_map(|l| [l, "\n"]).collect();
    if kept.len() != text.len() {
        registry::fsutil::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

pub(crate) fn append_redactions(path: &Path, records: &[RedactionRecord]) -> Result<()> {
    use std::io::Write;
    if records.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).map_err(|e| IndexError::Layout {
            path: path.into(),
            message: e.to_string(),
        })?;
        buf.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| IndexError::io(path, e))?;
    f.write_all(&buf)
        .and_then(|()| f.sync_data())
        .map_err(|e| IndexError::io(path, e))
}
