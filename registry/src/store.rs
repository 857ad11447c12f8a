//! The registry as a stewarded store: loads are observed, edits are
//! validated, written atomically and audited, all under one lock.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, Entry, Event, audit_dir};
use crate::clock::Clock;
use crate::edit::{Edit, apply};
use crate::error::{RegistryError, Result};
use crate::fsutil::{DirLock, write_atomic};
use crate::model::Registry;
use crate::vocab::ContentHash;

/// What the store last saw of the registry, so that changes made outside
/// ctxplane (a `git pull`, a hand edit) and exception expiries are audited
/// once each.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Observed {
    registry_version: Option<String>,
    #[serde(default)]
    expired_recorded: BTreeSet<String>,
}

#[derive(Debug)]
pub struct RegistryStore {
    registry_path: PathBuf,
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    signer: Option<Arc<crate::checkpoint::AuditSigner>>,
    /// This process's own audit chain, if it keeps one.
    audit_process: Option<String>,
}

/// The result of an applied edit.
#[derive(Debug)]
pub struct Applied {
    pub registry: Registry,
    pub entry: Entry,
}

impl RegistryStore {
    pub fn new(
        registry_path: impl Into<PathBuf>,
        data_dir: impl Into<PathBuf>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        RegistryStore {
            registry_path: registry_path.into(),
            data_dir: data_dir.into(),
            clock,
            signer: None,
            audit_process: None,
        }
    }

    /// Appends go to a chain of this process's own (`audit/chains/<id>/`,
    /// each entry naming it), so processes sharing the data directory
    /// (serve replicas) never wait on one log's lock. Reads and
    /// verification cover every chain. An invalid name is refused.
    pub fn with_audit_process(mut self, id: &str) -> Result<Self> {
        if !crate::audit::valid_process_id(id) {
            return Err(crate::error::RegistryError::Audit {
                path: audit_dir(&self.data_dir),
                message: format!("{id:?} cannot name an audit chain (letters, digits, - _ . only)"),
            });
        }
        self.audit_process = Some(id.to_string());
        Ok(self)
    }

    pub fn audit_signer(&self) -> Option<&Arc<crate::checkpoint::AuditSigner>> {
        self.signer.as_ref()
    }

    /// Audit appends sign checkpoints with `signer`.
    pub fn with_audit_signer(mut self, signer: Option<Arc<crate::checkpoint::AuditSigner>>) -> Self {
        self.signer = signer;
        self
    }

    pub fn registry_path(&self) -> &Path {
        &self.registry_path
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The clock itself, for components that keep it.
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    pub fn audit(&self) -> AuditLog {
        let dir = audit_dir(&self.data_dir);
        self.audit_process
            .as_deref()
            .and_then(|id| AuditLog::for_process(&dir, id))
            .unwrap_or_else(|| AuditLog::open(dir))
            .with_signer(self.signer.clone())
    }

    fn state_path(&self) -> PathBuf {
        self.data_dir.join("registry-state.json")
    }

    fn read_state(&self) -> Result<Observed> {
        match std::fs::read(self.state_path()) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                RegistryError::BadRequest(format!("{} is unreadable: {e}", self.state_path().display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Observed::default()),
            Err(e) => Err(RegistryError::io(self.state_path(), e)),
        }
    }

    fn write_state(&self, s: &Observed) -> Result<()> {
        write_atomic(
            &self.state_path(),
            &serde_json::to_vec_pretty(s).unwrap_or_default(),
        )
    }

    /// Loads the registry and audits what changed since the last load:
    /// a new registry version not made through ctxplane, and exceptions that
    /// have expired. `actor` is who is looking.
    pub fn load(&self, actor: &str) -> Result<Registry> {
        let _lock = DirLock::acquire(&self.data_dir)?;
        let registry = Registry::load(&self.registry_path)?;
        self.observe(&registry, actor, None)?;
        Ok(registry)
    }

    /// Records external changes and expiries; `made_here` is a version this
    /// process just wrote and audited itself.
    fn observe(
        &self,
        registry: &Registry,
        actor: &str,
        made_here: Option<&ContentHash>,
    ) -> Result<Vec<Entry>> {
        let mut state = self.read_state()?;
        let version = registry.version.to_hex();
        let mut events = Vec::new();
        if made_here.is_none() && state.registry_version.as_deref() != Some(version.as_str()) {
            let ev = match &state.registry_version {
                None => Event::new(
                    actor,
                    "registry.adopted",
                    &self.registry_path.display().to_string(),
                ),
                Some(prev) => Event::new(
                    actor,
                    "registry.changed_externally",
                    &self.registry_path.display().to_string(),
                )
                .detail("from_version", prev.as_str()),
            };
            events.push(
                ev.detail("registry_version", version.as_str())
                    .detail("sources", registry.sources.len())
                    .detail("principals", registry.principals.len())
                    .detail("exceptions", registry.exceptions.len()),
            );
        }
        let policy = registry.policy(self.clock.as_ref());
        let newly_expired: Vec<_> = policy
            .expired_exceptions()
            .filter(|x| !state.expired_recorded.contains(&x.id))
            .collect();
        for x in &newly_expired {
            events.push(
                Event::new("ctxplane", "exception.expired", &x.id)
                    .detail("source", x.source.as_str())
                    .detail("path", x.path.as_str())
                    .detail("expires_at", x.expires_at.to_string())
                    .detail("registry_version", version.as_str()),
            );
        }
        let changed = !events.is_empty() || state.registry_version.as_deref() != Some(version.as_str());
        let entries = self.audit().append(self.clock.now(), events)?;
        if changed {
            state.registry_version = Some(version);
            state
                .expired_recorded
                .extend(newly_expired.iter().map(|x| x.id.clone()));
            self.write_state(&state)?;
        }
        Ok(entries)
    }

    /// Validates and applies a steward's edit: the registry on disk changes
    /// only if the result is a valid registry, and the change is audited
    /// (fsynced) before this returns.
    pub fn apply(&self, actor: &str, edit: Edit) -> Result<Applied> {
        let _lock = DirLock::acquire(&self.data_dir)?;
        let before = Registry::load(&self.registry_path)?;
        self.observe(&before, actor, None)?;
        let text = std::fs::read_to_string(&self.registry_path)
            .map_err(|e| RegistryError::io(&self.registry_path, e))?;
        let now = self.clock.now();
        let new_text = apply(&text, &before, &edit, actor, now)?;
        let base = self
            .registry_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let after = Registry::parse(&new_text, &base).map_err(|problems| {
            let why: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            RegistryError::BadRequest(format!(
                "refused: the change would make the registry invalid ({}); nothing was written",
                why.join("; ")
            ))
        })?;
        write_atomic(&self.registry_path, new_text.as_bytes())?;
        let event = edit_event(actor, &edit)
            .detail("from_version", before.version.to_hex())
            .detail("registry_version", after.version.to_hex());
        let mut entries = self.audit().append(now, vec![event])?;
        self.observe(&after, actor, Some(&after.version))?;
        let mut state = self.read_state()?;
        state.registry_version = Some(after.version.to_hex());
        self.write_state(&state)?;
        let entry = entries
            .pop()
            .ok_or_else(|| RegistryError::BadRequest("audit append wrote nothing".into()))?;
        Ok(Applied {
            registry: after,
            entry,
        })
    }

    /// Appends events that are not registry edits (ingest runs, queries)
    /// under the audit log's own lock: a query's entry never waits for an
    /// indexing pass that holds the data directory.
    pub fn record(&self, events: Vec<Event>) -> Result<Vec<Entry>> {
        self.audit().append(self.clock.now(), events)
    }

    /// [`RegistryStore::record`] with sidecar records made durable first,
    /// in the same group commit (see [`crate::audit::AuditLog::append_with`]).
    pub fn record_with(
        &self,
        events: Vec<Event>,
        sidecars: Vec<crate::audit::Sidecar>,
    ) -> Result<Vec<Entry>> {
        self.audit().append_with(self.clock.now(), events, sidecars)
    }

    /// Creates a new registry file; refuses to overwrite one.
    pub fn init(&self, actor: &str, text: &str) -> Result<Registry> {
        let _lock = DirLock::acquire(&self.data_dir)?;
        if self.registry_path.exists() {
            return Err(RegistryError::BadRequest(format!(
                "{} already exists; not overwriting it",
                self.registry_path.display()
            )));
        }
        let base = self
            .registry_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let registry = Registry::parse(text, &base).map_err(|problems| RegistryError::Invalid {
            path: self.registry_path.clone(),
            problems,
        })?;
        write_atomic(&self.registry_path, text.as_bytes())?;
        let ev = Event::new(actor, "registry.init", &self.registry_path.display().to_string())
            .detail("registry_version", registry.version.to_hex());
        self.audit().append(self.clock.now(), vec![ev])?;
        self.write_state(&Observed {
            registry_version: Some(registry.version.to_hex()),
            ..Default::default()
        })?;
        Ok(registry)
    }
}

fn edit_event(actor: &str, edit: &Edit) -> Event {
    let ev = Event::new(actor, edit.action(), &edit.subject());
    match edit {
        Edit::AddSource(s) => ev
            .detail("kind", s.kind.as_str())
            .detail("location", s.location.as_str())
            .detail("owner", s.owner.as_str())
            .detail("tier", s.tier.get()),
        Edit::SetStatus { status, reason, .. } => {
            let ev = ev.detail("status", status.as_str());
            match reason {
                Some(r) => ev.detail("reason", r.as_str()),
                None => ev,
            }
        }
        Edit::GrantException(x) => ev
            .detail("source", x.source.as_str())
            .detail("path", x.path.as_str())
            .detail(
                "permits",
                x.permits.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            )
            .detail("approver", x.approver.as_str())
            .detail("reason", x.reason.as_str())
            .detail("granted_at", x.granted_at.to_string())
            .detail("expires_at", x.expires_at.to_string()),
        Edit::AddPrincipal(p) => ev
            .detail("role", p.role.as_str())
            .detail("tier_ceiling", p.tier_ceiling.get())
            .detail("token_hash_prefix", p.token_hash.short()),
    }
}
