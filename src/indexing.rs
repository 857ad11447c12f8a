//! `ctxplane index [--watch]` and `ctxplane freshness`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indexer::{Indexer, PassOptions, PassReport};
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, NoCache, new_debouncer_opt};
use registry::audit::Event;
use registry::{Registry, RegistryStore, Status};
use serde_json::json;

use crate::cli::{FreshnessArgs, IndexArgs};
use crate::commands::{load_rules, print_json};
use crate::config::Settings;

pub fn index(args: IndexArgs, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let rules = load_rules(args.rules.as_deref(), true)?;
    let options = PassOptions {
        max_file_bytes: args.max_file_bytes.unwrap_or(s.max_file_bytes),
    };
    let indexer = Indexer::open(store.data_dir(), rules, options)?;
    let reg = store.load(&s.actor)?;
    // Watch before the first pass, so nothing that changes during it is missed.
    let watching = if args.watch {
        Some(Watching::start(&reg, store, args.debounce_ms)?)
    } else {
        None
    };
    let show_progress = !args.out.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (report, elapsed) = run_pass(&indexer, &reg, store, None, show_progress)?;
    let audit_seq = audit_pass(s, store, &reg, &report, "index.pass")?;
    if args.out.json && args.watch {
        println!(
            "{}",
            json!({"event": "pass", "report": report, "elapsed_ms": elapsed.as_millis() as u64})
        );
    } else if !args.out.json {
        print_summary(&report, elapsed);
    }
    let mut dense = if args.no_embed {
        Err("skipped (--no-embed)".to_string())
    } else {
        Dense::open(s, store.data_dir(), true)
    };
    let vectors = sync_vectors(
        &indexer,
        &mut dense,
        s,
        store,
        show_progress,
        !report.purged.is_empty(),
    )?;
    if args.out.json && args.watch {
        println!("{}", json!({"event": "vectors", "vectors": vectors}));
    } else if args.out.json {
        print_json(&json!({
            "report": report, "elapsed_ms": elapsed.as_millis() as u64, "audit_seq": audit_seq, "vectors": vectors,
        }))?;
    } else {
        print_vectors(&vectors);
    }
    if let Some(w) = watching {
        return w.run(&indexer, reg, s, store, args.out.json, &mut dense);
    }
    let failed = report.sources.iter().any(|s| s.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The model and the vector store, loaded once per process.
pub(crate) struct Dense {
    pub embedder: Arc<indexer::embed::Embedder>,
    pub store: Box<dyn indexer::vector::VectorStore>,
}

impl Dense {
    /// `Err(reason)` when there is no model (the service then works
    /// lexically). Readers (`writable: false`) never change the store: an
    /// indexer may be appending to it.
    pub(crate) fn open(s: &Settings, data_dir: &Path, writable: bool) -> Result<Dense, String> {
        Dense::open_threads(s, data_dir, writable, s.embed_threads)
    }

    /// With `bulk_threads` for indexing (queries keep `embed_threads`).
    pub(crate) fn open_threads(
        s: &Settings,
        data_dir: &Path,
        writable: bool,
        bulk_threads: usize,
    ) -> Result<Dense, String> {
        let dir = indexer::embed::find_model_dir(s.model_dir.as_deref()).map_err(|e| e.to_string())?;
        let embedder = Arc::new(
            indexer::embed::Embedder::load_with(&dir, bulk_threads, s.embed_threads)
                .map_err(|e| e.to_string())?,
        );
        Dense::with_embedder(s, data_dir, writable, embedder)
    }

    /// The same model (onnxruntime allows one environment per process)
    /// with another handle on the vector store.
    pub(crate) fn with_embedder(
        s: &Settings,
        data_dir: &Path,
        writable: bool,
        embedder: Arc<indexer::embed::Embedder>,
    ) -> Result<Dense, String> {
        use indexer::vector::embedded::EmbeddedStore;
        let vectors = Indexer::vectors_dir(data_dir);
        let store: Box<dyn indexer::vector::VectorStore> = match &s.vectors {
            crate::config::VectorBackend::Embedded if writable => {
                Box::new(EmbeddedStore::open(&vectors, embedder.model_id()).map_err(|e| e.to_string())?)
            }
            crate::config::VectorBackend::Embedded => Box::new(
                EmbeddedStore::open_read(&vectors, embedder.model_id())
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!(
                            "no vectors for model {} yet; run `ctxplane index`",
                            embedder.model_id()
                        )
                    })?,
            ),
            crate::config::VectorBackend::Qdrant {
                url,
                api_key,
                collection,
            } => Box::new(
                indexer::vector::qdrant::QdrantStore::connect(url, api_key.as_deref(), collection)
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(Dense { embedder, store })
    }
}

/// Vectors for every chunk, under the data-dir lock; audited.
pub(crate) fn sync_vectors(
    indexer: &Indexer,
    dense: &mut Result<Dense, String>,
    s: &Settings,
    store: &RegistryStore,
    show_progress: bool,
    purged: bool,
) -> anyhow::Result<serde_json::Value> {
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
    let bar = show_progress.then(|| {
        let b = indicatif::ProgressBar::new(0).with_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>20} [{bar:30}] {pos}/{len} chunks {per_sec} eta {eta}",
            )
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix("embedding");
        b
    });
    let started = Instant::now();
    let report = indexer.sync_vectors(d.store.as_mut(), &d.embedder, &mut |done, total| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
        }
    });
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    // After a purge, the removed vectors leave the store's files too.
    let expunged = match (&report, purged) {
        (Ok(_), true) => d.store.expunge(),
        _ => Ok(()),
    };
    drop(lock);
    let report = report?;
    expunged?;
    if report.embedded > 0 || report.files_removed > 0 {
        store.record(vec![
            Event::new(&s.actor, "index.vectors", d.store.kind())
                .detail("model_id", report.model_id.clone())
                .detail("embedded", report.embedded)
                .detail("from_cache", report.from_cache)
                .detail("files_removed", report.files_removed)
                .detail("vectors", report.vectors)
                .detail("chunks", report.chunks),
        ])?;
    }
    Ok(json!({
        "status": "ready", "store": d.store.kind(), "model_id": report.model_id,
        "chunks": report.chunks, "vectors": report.vectors, "coverage": report.coverage(),
        "embedded": report.embedded, "from_cache": report.from_cache, "files_removed": report.files_removed,
        "embed_ms": report.embed_ms, "elapsed_ms": started.elapsed().as_millis() as u64, "served_by": "hybrid",
    }))
}

pub(crate) fn print_vectors(v: &serde_json::Value) {
    if v["status"] == "ready" {
        println!(
            "vectors ({}, {}): {}/{} chunks ({:.1}%); {} embedded, {} from cache, {} files' vectors removed ({} ms)",
            v["store"].as_str().unwrap_or(""),
            v["model_id"].as_str().unwrap_or(""),
            v["vectors"],
            v["chunks"],
            v["coverage"].as_f64().unwrap_or(0.0) * 100.0,
            v["embedded"],
            v["from_cache"],
            v["files_removed"],
            v["elapsed_ms"]
        );
    } else {
        println!(
            "vectors: {}; search is lexical only",
            v["reason"].as_str().unwrap_or("unavailable")
        );
    }
}

/// One pass under the data-dir lock (released before auditing, which takes
/// it itself).
pub(crate) fn run_pass(
    indexer: &Indexer,
    reg: &Registry,
    store: &RegistryStore,
    only: Option<&BTreeSet<String>>,
    show_progress: bool,
) -> anyhow::Result<(PassReport, Duration)> {
    let lock = registry::fsutil::DirLock::acquire(store.data_dir())?;
    let policy = reg.policy(store.clock());
    let started = Instant::now();
    let mut bar: Option<(String, indicatif::ProgressBar)> = None;
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>20} [{bar:30}] {pos}/{len} files {per_sec} eta {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let report = indexer.run_pass_over(reg, &policy, policy.now(), only, &mut |source, done, total| {
        if !show_progress {
            return;
        }
        if bar.as_ref().is_none_or(|(s, _)| s != source) {
            if let Some((_, b)) = bar.take() {
                b.finish();
            }
            let b = indicatif::ProgressBar::new(total).with_style(style.clone());
            b.set_prefix(source.to_string());
            bar = Some((source.to_string(), b));
        }
        if let Some((_, b)) = &bar {
            b.set_position(done);
        }
    })?;
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    drop(lock);
    Ok((report, started.elapsed()))
}

pub(crate) fn audit_pass(
    s: &Settings,
    store: &RegistryStore,
    reg: &Registry,
    report: &PassReport,
    action: &str,
) -> anyhow::Result<Option<u64>> {
    let mut ev = Event::new(&s.actor, action, "all")
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

pub(crate) fn print_summary(report: &PassReport, elapsed: Duration) {
    for sr in &report.sources {
        let denied: u64 = sr.denied.values().map(|t| t.count).sum();
        let skipped: u64 = sr.skipped.values().map(|t| t.count).sum();
        println!(
            "{}: {} files, {} indexed, {} unchanged, {} removed; {} chunks added, {} removed; {} denied, {} skipped, {} secrets redacted",
            sr.source,
            sr.files_seen,
            sr.indexed,
            sr.unchanged,
            sr.removed,
            sr.chunks_added,
            sr.chunks_removed,
            denied,
            skipped,
            sr.redactions
        );
        for (kind, tallies) in [("denied ", &sr.denied), ("skipped", &sr.skipped)] {
            for (reason, t) in tallies {
                println!(
                    "    {kind} {reason:<20} {:>5}  e.g. {}",
                    t.count,
                    t.examples.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        if let Some(e) = &sr.error {
            println!("    error: {e}");
        }
    }
    for id in &report.purged {
        println!("{id}: purged (no longer approved)");
    }
    println!(
        "{} chunks in the index; pass took {:.2?}",
        report.total_chunks, elapsed
    );
}

/// Approved sources' roots, canonicalised so event paths compare.
fn roots(reg: &Registry) -> BTreeMap<String, PathBuf> {
    reg.sources
        .values()
        .filter(|s| s.status == Status::Approved)
        .map(|s| {
            let root = s.root(&reg.base_dir);
            let root = root.canonicalize().unwrap_or(root);
            (s.id.to_string(), root)
        })
        .collect()
}

/// Keeps the index current: every change under an approved source is
/// indexed within the debounce window plus one incremental pass over that
/// source; a change to the registry file re-reads it and passes over
/// everything (approvals, revocations, new rules).
pub(crate) struct Watching {
    debouncer: notify_debouncer_full::Debouncer<notify_debouncer_full::notify::RecommendedWatcher, NoCache>,
    events: mpsc::Receiver<DebounceEventResult>,
    registry_path: PathBuf,
    data_dir: PathBuf,
    watched: BTreeMap<String, PathBuf>,
}

impl Watching {
    pub(crate) fn start(reg: &Registry, store: &RegistryStore, debounce_ms: u64) -> anyhow::Result<Watching> {
        let (tx, events) = mpsc::channel::<DebounceEventResult>();
        let mut debouncer = new_debouncer_opt::<_, notify_debouncer_full::notify::RecommendedWatcher, _>(
            Duration::from_millis(debounce_ms.clamp(10, 60_000)),
            None,
            tx,
            NoCache,
            notify_debouncer_full::notify::Config::default(),
        )
        .context("starting the file watcher")?;
        let registry_path = store
            .registry_path()
            .canonicalize()
            .unwrap_or_else(|_| store.registry_path().to_path_buf());
        let registry_dir = registry_path.parent().unwrap_or(Path::new("/")).to_path_buf();
        // Editors replace files by rename: watch the directory, not the file.
        debouncer
            .watch(&registry_dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", registry_dir.display()))?;
        let data_dir = store
            .data_dir()
            .canonicalize()
            .unwrap_or_else(|_| store.data_dir().to_path_buf());
        let mut w = Watching {
            debouncer,
            events,
            registry_path,
            data_dir,
            watched: BTreeMap::new(),
        };
        w.follow(reg);
        Ok(w)
    }

    /// Watches exactly the approved sources of `reg`.
    pub(crate) fn follow(&mut self, reg: &Registry) {
        let now = roots(reg);
        for (id, root) in &self.watched {
            if now.get(id) != Some(root) {
                let _ = self.debouncer.unwatch(root);
            }
        }
        for (id, root) in &now {
            if self.watched.get(id) != Some(root)
                && let Err(e) = self.debouncer.watch(root, RecursiveMode::Recursive)
            {
                eprintln!("warning: cannot watch {id} at {}: {e}", root.display());
            }
        }
        self.watched = now;
    }

    /// Sources touched by the next burst of events, and whether the
    /// registry file changed; `None` when the watcher has stopped.
    fn next_burst(&self) -> Option<(BTreeSet<String>, bool)> {
        let first = self.events.recv().ok()?;
        Some(self.burst(first))
    }

    /// Like `next_burst`, waiting at most `wait`: `Ok(None)` when nothing
    /// happened, `Err` when the watcher has stopped.
    pub(crate) fn next_burst_within(&self, wait: Duration) -> Result<Option<(BTreeSet<String>, bool)>, ()> {
        match self.events.recv_timeout(wait) {
            Ok(first) => Ok(Some(self.burst(first))),
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
        }
    }

    fn burst(&self, first: DebounceEventResult) -> (BTreeSet<String>, bool) {
        let mut touched = BTreeSet::new();
        let mut registry_changed = false;
        for batch in std::iter::once(first).chain(self.events.try_iter()) {
            let events = match batch {
                Ok(events) => events,
                Err(errors) => {
                    for e in errors {
                        eprintln!("warning: watcher: {e}");
                    }
                    // Something may have been missed: pass over everything.
                    touched.extend(self.watched.keys().cloned());
                    continue;
                }
            };
            for ev in events {
                if matches!(ev.kind, EventKind::Access(_)) {
                    continue;
                }
                for path in &ev.paths {
                    if path == &self.registry_path {
                        registry_changed = true;
                    }
                    if path.starts_with(&self.data_dir) || path.components().any(|c| c.as_os_str() == ".git")
                    {
                        continue;
                    }
                    for (id, root) in &self.watched {
                        if path.starts_with(root) {
                            touched.insert(id.clone());
                        }
                    }
                }
            }
        }
        (touched, registry_changed)
    }

    fn run(
        mut self,
        indexer: &Indexer,
        mut reg: Registry,
        s: &Settings,
        store: &RegistryStore,
        json: bool,
        dense: &mut Result<Dense, String>,
    ) -> anyhow::Result<ExitCode> {
        if !json {
            eprintln!(
                "watching {} source(s) and {}; Ctrl-C to stop",
                self.watched.len(),
                self.registry_path.display()
            );
        }
        while let Some((touched, registry_changed)) = self.next_burst() {
            if registry_changed {
                match store.load(&s.actor) {
                    Ok(new) => {
                        reg = new;
                        self.follow(&reg);
                    }
                    Err(e) => {
                        // Keep serving the last good registry; say why.
                        eprintln!("error: registry not reloaded, keeping the previous one: {e}");
                        continue;
                    }
                }
            } else if touched.is_empty() {
                continue;
            }
            let only = (!registry_changed).then_some(&touched);
            let (report, elapsed) = match run_pass(indexer, &reg, store, only, false) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: update failed (the next change retries): {e:#}");
                    continue;
                }
            };
            if report.committed || registry_changed {
                audit_pass(s, store, &reg, &report, "index.update")?;
            }
            if json {
                println!(
                    "{}",
                    json!({"event": "update", "registry_reloaded": registry_changed, "report": report, "elapsed_ms": elapsed.as_millis() as u64})
                );
            } else if report.committed || registry_changed {
                let now = jiff::Timestamp::now().strftime("%H:%M:%S");
                for sr in report.sources.iter().filter(|r| r.indexed + r.removed > 0) {
                    println!(
                        "{now} {}: {} indexed, {} removed, {} secrets redacted ({:.0?})",
                        sr.source, sr.indexed, sr.removed, sr.redactions, elapsed
                    );
                }
                for id in &report.purged {
                    println!("{now} {id}: purged (no longer approved)");
                }
            }
            // Lexical results are already searchable; vectors catch up now.
            if report.committed && dense.is_ok() {
                match sync_vectors(indexer, dense, s, store, false, !report.purged.is_empty()) {
                    Ok(v) if json => println!("{}", json!({"event": "vectors", "vectors": v})),
                    Ok(_) => {}
                    Err(e) => eprintln!("error: vectors not updated (the next change retries): {e:#}"),
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

pub fn freshness(args: FreshnessArgs, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    let indexer = Indexer::open(
        store.data_dir(),
        indexer::redact::RuleSet::builtin(),
        PassOptions::default(),
    )?;
    let report = indexer.freshness(&reg, &policy, policy.now())?;
    let attention = report.iter().filter(|f| f.status.needs_attention()).count();
    if args.out.json {
        print_json(&json!({"at": policy.now(), "sources": report, "needs_attention": attention}))?;
    } else {
        let ago = |t: Option<jiff::Timestamp>| match t {
            Some(t) => {
                let secs = policy.now().duration_since(t).as_secs().max(0);
                match secs {
                    0..120 => format!("{secs}s ago"),
                    120..7_200 => format!("{}m ago", secs / 60),
                    7_200..172_800 => format!("{}h ago", secs / 3600),
                    _ => format!("{}d ago", secs / 86_400),
                }
            }
            None => "never".into(),
        };
        println!(
            "{:<20} {:>4} {:<14} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7}",
            "SOURCE",
            "TIER",
            "STATUS",
            "LAST PASS",
            "LAST INGEST",
            "FILES",
            "MODIFIED",
            "ADDED",
            "REMOVED",
            "STALE"
        );
        for f in &report {
            println!(
                "{:<20} {:>4} {:<14} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7}",
                f.source,
                f.tier,
                f.status.as_str(),
                ago(f.last_pass),
                ago(f.last_ingest),
                f.files_indexed,
                f.modified.count,
                f.added.count,
                f.removed.count,
                f.stale.count
            );
            for (what, t) in [
                ("modified", &f.modified),
                ("added", &f.added),
                ("removed", &f.removed),
            ] {
                if t.count > 0 {
                    println!(
                        "    {what}: {}",
                        t.examples.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            if f.stale.count > 0 {
                println!(
                    "    stale (content unchanged for over {} days): {}",
                    f.max_age_days,
                    f.stale
                        .examples
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for d in &f.drift {
                println!(
                    "    drift: {}:{} says \"{}\" but the lockfiles pin {} {}",
                    d.file,
                    d.line,
                    d.claim,
                    d.dependency,
                    d.pinned.join(", ")
                );
            }
            if let Some(e) = &f.error {
                println!("    error: {e}");
            }
        }
    }
    Ok(if args.check && attention > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
