//! Access: who the caller is, whether their role may use the operation,
//! and whether the emergency stop lets it through. Every interface admits a
//! caller here and nowhere else.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use registry::audit::Event;
use registry::{Principal, Registry, Role};
use serde_json::json;

use crate::Plane;
use crate::error::{Error, Result};

/// Longest bearer token considered (longer ones match no principal).
pub const MAX_TOKEN_BYTES: usize = 512;

/// Everything a caller can ask of the plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Context,
    Provenance,
    /// Resolving an answer's snapshot (no content is served: hashes,
    /// lines and what changed), so CI may check citations too.
    Snapshot,
    ListSources,
    Freshness,
    Check,
    ProposeSource,
    Approve,
    Deny,
    Revoke,
    ListExceptions,
    GrantException,
    ReadAudit,
    VerifyAudit,
    Stop,
    Resume,
    /// Listing principals and what each may read (never a token).
    ListPrincipals,
    /// Adding a principal (its token is shown once).
    AddPrincipal,
    /// Asking the policy what it decides for paths of a source (audited).
    DecidePolicy,
    /// Signing in to the steward console and reading its pages of registry
    /// metadata in scope (no content is served). Also during a stop, so
    /// the stop stays visible and revocation reachable.
    ConsoleRead,
    /// The console's steward-only pages (exceptions, principals, activity).
    ConsoleOversee,
}

const READERS: &[Role] = &[Role::Agent, Role::Developer, Role::Steward];
const EVERYONE: &[Role] = &[Role::Agent, Role::Developer, Role::Steward, Role::Ci];
const STEWARDS: &[Role] = &[Role::Steward];
const CHECKERS: &[Role] = &[Role::Ci, Role::Developer, Role::Steward];
/// Who may sign in to the console: people, not agents or CI.
const CONSOLE: &[Role] = &[Role::Developer, Role::Steward];

impl Operation {
    /// The role matrix: which roles may use the operation.
    pub fn roles(self) -> &'static [Role] {
        use Operation::*;
        match self {
            Context | Provenance => READERS,
            ListSources | Freshness | Snapshot => EVERYONE,
            Check => CHECKERS,
            ConsoleRead => CONSOLE,
            ProposeSource | Approve | Deny | Revoke | ListExceptions | GrantException | ReadAudit
            | VerifyAudit | Stop | Resume | ListPrincipals | AddPrincipal | DecidePolicy | ConsoleOversee => {
                STEWARDS
            }
        }
    }

    /// Operations an emergency stop does not refuse: the stop itself, its
    /// release, and revocation (a leak must still be purgeable).
    pub fn even_when_stopped(self) -> bool {
        matches!(
            self,
            Operation::Stop
                | Operation::Resume
                | Operation::Revoke
                | Operation::ConsoleRead
                | Operation::ConsoleOversee
        )
    }

    /// Operations that change the registry or the index: a read-only
    /// replica refuses them (the indexer's deployment makes them, and each
    /// replica picks the registry up when its file changes).
    pub fn writes_shared_state(self) -> bool {
        use Operation::*;
        matches!(
            self,
            ProposeSource | Approve | Deny | Revoke | GrantException | AddPrincipal
        )
    }

    /// Operations that read what only the indexer's deployment has (its
    /// passes, the sources' checkouts): a replica sends callers there.
    pub fn reads_indexer_state(self) -> bool {
        use Operation::*;
        matches!(self, Freshness | Check | ConsoleRead | ConsoleOversee)
    }

    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            Context => "context",
            Provenance => "provenance",
            Snapshot => "snapshot",
            ListSources => "list_sources",
            Freshness => "freshness",
            Check => "check",
            ProposeSource => "propose_source",
            Approve => "approve",
            Deny => "deny",
            Revoke => "revoke",
            ListExceptions => "list_exceptions",
            GrantException => "grant_exception",
            ReadAudit => "read_audit",
            VerifyAudit => "verify_audit",
            Stop => "stop",
            Resume => "resume",
            ListPrincipals => "list_principals",
            AddPrincipal => "add_principal",
            DecidePolicy => "decide_policy",
            ConsoleRead => "console_read",
            ConsoleOversee => "console_oversee",
        }
    }
}

/// An admitted caller: the registry in force when admitted and the
/// principal it names.
#[derive(Clone, Debug)]
pub struct Who {
    pub registry: Arc<Registry>,
    pub principal: Principal,
}

impl Who {
    pub fn name(&self) -> &str {
        &self.principal.name
    }

    /// What this caller may read right now.
    pub fn scope(&self, plane: &Plane) -> registry::Scope {
        self.registry
            .policy(plane.store().clock())
            .scope_for(&self.principal)
    }
}

/// The emergency stop: a reason while in force, persisted in the data dir
/// so that it survives a restart and reaches every process on the data
/// dir (a `ctxplane mcp` sees a stop issued over HTTP on its next call).
/// Checking it never changes it.
#[derive(Debug)]
pub(crate) struct StopGate {
    file: PathBuf,
    /// The stop file's modification time when last read (`None`: absent),
    /// and the reason it held.
    state: RwLock<(Option<SystemTime>, Option<String>)>,
}

fn read_stop(file: &Path) -> (Option<SystemTime>, Option<String>) {
    let Ok(meta) = std::fs::metadata(file) else {
        return (None, None);
    };
    let reason = match std::fs::read(file).map(|b| serde_json::from_slice::<serde_json::Value>(&b)) {
        Ok(Ok(v)) => v["reason"].as_str().unwrap_or("stopped").to_string(),
        // An unreadable flag still stops: failing open would be worse.
        _ => "stopped (the stop file is unreadable)".to_string(),
    };
    (
        Some(meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)),
        Some(reason),
    )
}

impl StopGate {
    pub(crate) fn load(data_dir: &Path) -> StopGate {
        let file = data_dir.join("stopped.json");
        let state = RwLock::new(read_stop(&file));
        StopGate { file, state }
    }

    /// The reason in force, re-read when another process changed the file.
    pub(crate) fn reason(&self) -> Option<String> {
        let mtime = std::fs::metadata(&self.file)
            .ok()
            .map(|m| m.modified().unwrap_or(SystemTime::UNIX_EPOCH));
        {
            let s = self.state.read().unwrap_or_else(PoisonError::into_inner);
            if s.0 == mtime {
                return s.1.clone();
            }
        }
        let fresh = read_stop(&self.file);
        let reason = fresh.1.clone();
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        reason
    }
}

impl Plane {
    /// The principal presenting `token`: 401 for none, an empty or
    /// oversized one, or one that matches no principal.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Who> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_BYTES);
        let registry = self.registry()?;
        let principal = token.and_then(|t| registry.authenticate(t).cloned());
        match principal {
            Some(principal) => Ok(Who { registry, principal }),
            None => {
                self.metrics.unauthorized();
                Err(Error::Unauthorized)
            }
        }
    }

    /// The principal by name (an operator who holds the registry and data
    /// dir acting as one principal): looked up again on every call.
    pub fn principal_named(&self, name: &str) -> Result<Who> {
        let registry = self.registry()?;
        let principal = registry
            .principal(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no principal {name:?} in the registry")))?;
        Ok(Who { registry, principal })
    }

    /// Whether `who` may use `op` now: the role first (403), then the
    /// emergency stop (503) unless the operation is one the stop lets through.
    pub fn authorize(&self, who: &Who, op: Operation) -> Result<()> {
        if !op.roles().contains(&who.principal.role) {
            self.metrics.forbidden();
            return Err(Error::Forbidden);
        }
        if self.profile().read_only && (op.writes_shared_state() || op.reads_indexer_state()) {
            return Err(Error::Conflict(format!(
                "this is a read-only replica; {} runs in the indexer's deployment (`ctxplane serve` or the CLI next to `ctxplane index --watch`)",
                op.name()
            )));
        }
        if !op.even_when_stopped()
            && let Some(reason) = self.stop.reason()
        {
            return Err(Error::Stopped { reason });
        }
        // Stop, resume and revoke are never rate limited: a leak response
        // must not wait for a bucket to refill.
        if !op.even_when_stopped()
            && let Some(per_minute) = who.registry.limits_for(&who.principal).requests_per_minute
        {
            self.meter
                .request(who.name(), per_minute)
                .map_err(|r| self.refused(who, op, r))?;
        }
        Ok(())
    }

    /// A limit refusal: counted, logged, and audited at most once a minute
    /// per principal (a flood must not flood the audit log).
    pub(crate) fn refused(&self, who: &Who, op: Operation, r: crate::limits::Refused) -> Error {
        self.metrics.limited();
        tracing::warn!(principal = %who.name(), operation = op.name(), error = %r.error, "limit reached");
        if r.audit
            && let Err(e) = self.record(vec![
                Event::new(who.name(), "principal.limited", who.name())
                    .detail("operation", op.name())
                    .detail("reason", r.error.to_string()),
            ])
        {
            tracing::error!(error = %e, "could not audit a limit refusal");
        }
        r.error
    }

    /// Authenticate, then authorize: the one admission for token callers.
    pub fn admit(&self, token: Option<&str>, op: Operation) -> Result<Who> {
        let who = self.authenticate(token)?;
        self.authorize(&who, op)?;
        Ok(who)
    }

    /// The same admission for a principal named by the operator (`mcp --as`).
    pub fn admit_named(&self, name: &str, op: Operation) -> Result<Who> {
        let who = self.principal_named(name)?;
        self.authorize(&who, op)?;
        Ok(who)
    }

    /// Emergency stop: audited and persisted before it is acknowledged;
    /// ingestion pauses and every operation but stop, resume and revoke
    /// is refused until resumed.
    pub fn stop(&self, who: &Who, reason: &str) -> Result<StopState> {
        let reason = reason.trim().to_string();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Error::bad("reason is 1 to 500 characters"));
        }
        let mut flag = self.stop.state.write().unwrap_or_else(PoisonError::into_inner);
        self.record(vec![
            Event::new(who.name(), "service.stop", "service").detail("reason", reason.clone()),
        ])?;
        registry::fsutil::write_atomic(
            &self.stop.file,
            json!({"reason": reason, "by": who.name(), "at": self.store().clock().now()})
                .to_string()
                .as_bytes(),
        )?;
        *flag = read_stop(&self.stop.file);
        Ok(StopState {
            stopped: true,
            reason: Some(reason),
        })
    }

    /// Lifts the emergency stop (audited first), then catches up on what
    /// changed while stopped.
    pub fn resume(&self, who: &Who) -> Result<StopState> {
        {
            let mut flag = self.stop.state.write().unwrap_or_else(PoisonError::into_inner);
            self.record(vec![Event::new(who.name(), "service.resume", "service")])?;
            match std::fs::remove_file(&self.stop.file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
            *flag = (None, None);
        }
        if self.profile().ingest_on_approve {
            self.update(None, crate::PassKind::Update, &mut crate::Quiet)?;
        }
        Ok(StopState {
            stopped: false,
            reason: None,
        })
    }
}

/// The emergency stop's state after a stop or resume.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct StopState {
    pub stopped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
