//! The watcher: follows the approved sources and the registry file and
//! turns bursts of file events into the sources to pass over. It only
//! emits changes; the plane's unit of work indexes them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use anyhow::Context;
use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, NoCache, new_debouncer_opt};
use plane::{PassKind, PassOutcome, Plane, Quiet};
use registry::{Registry, RegistryStore, Status};

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
                tracing::warn!(source = %id, root = %root.display(), error = %e, "cannot watch source");
            }
        }
        self.watched = now;
    }

    /// The sources touched by the next burst of events and whether the
    /// registry file changed, waiting at most `wait`: `Ok(None)` when nothing
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
                        tracing::warn!(error = %e, "watcher");
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
}

/// Follows changes until `stop` is set (checked every 250 ms) or the
/// watcher ends: each burst is one update pass over the touched sources
/// (everything when the registry changed); held while stopped, caught up
/// on resume. `on_pass` sees each pass that ran.
pub(crate) fn follow(
    plane: &Plane,
    mut w: Watching,
    stop: &AtomicBool,
    on_pass: &mut dyn FnMut(bool, &PassOutcome),
) {
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut registry_changed = false;
    while !stop.load(Ordering::Relaxed) {
        match w.next_burst_within(Duration::from_millis(250)) {
            Err(()) => break,
            Ok(Some((touched, reg_changed))) => {
                pending.extend(touched);
                registry_changed |= reg_changed;
            }
            Ok(None) => {}
        }
        plane.metrics.set_pending_sources(pending.len());
        if plane.stopped().is_some() || (pending.is_empty() && !registry_changed) {
            continue;
        }
        if registry_changed {
            match plane.reload_registry() {
                Ok(reg) => w.follow(&reg),
                Err(e) => {
                    tracing::error!(error = %e, "registry not reloaded, keeping the previous one");
                    registry_changed = false;
                    continue;
                }
            }
        }
        let only = (!registry_changed).then_some(&pending);
        match plane.update(only, PassKind::Update, &mut Quiet) {
            Ok(outcome) => {
                if let Some(o) = &outcome {
                    on_pass(registry_changed, o);
                }
                pending.clear();
                registry_changed = false;
            }
            Err(e) => tracing::error!(error = %e, "update failed (the next change retries)"),
        }
        plane.metrics.set_pending_sources(0);
    }
}

/// Starts following in a thread (unless `off`); stop it with [`stop`].
pub(crate) fn spawn(
    plane: &Arc<Plane>,
    off: bool,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Option<std::thread::JoinHandle<()>>> {
    if off {
        return Ok(None);
    }
    let reg = plane.registry()?;
    let w = Watching::start(&reg, plane.store(), 100)?;
    let (p, s) = (plane.clone(), stop.clone());
    Ok(Some(std::thread::spawn(move || {
        follow(&p, w, &s, &mut |_, _| {})
    })))
}

/// Stops the watcher thread after its current pass.
pub(crate) fn stop(stop: &AtomicBool, handle: Option<std::thread::JoinHandle<()>>) {
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = handle {
        let _ = h.join();
    }
}
