//! Stewardship: proposing sources, approving, denying and revoking them
//! (a revocation purges every store at once and proves it), exceptions,
//! and the audit log. Every edit goes through `registry::store` (validated,
//! written atomically, audited) before it is acknowledged.

use registry::audit::Event;
use registry::edit::{Edit, NewException, NewSource};
use registry::{ContentHash, Permit, SourceId, SourceKind, Status, Tier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::ingest::Remaining;
use crate::{PassKind, Plane, Quiet, Who};

/// Longest reason recorded for a transition or a stop.
pub const MAX_REASON_CHARS: usize = 500;

/// A source proposed by a steward (it starts as `proposed`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceProposal {
    /// Lowercase letters, digits, `-`, `_` and `.`, starting with a letter
    /// or digit; at most 64 bytes.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub id: String,
    pub kind: SourceKindName,
    /// A path, relative to the registry file or absolute.
    #[schemars(length(min = 1), regex(pattern = r"\S"))]
    pub location: String,
    #[schemars(length(min = 1), regex(pattern = r"\S"))]
    pub owner: String,
    /// 1 (least sensitive) to 4 (most).
    #[serde(deserialize_with = "crate::query::whole::required")]
    #[schemars(range(min = 1, max = 4))]
    pub tier: u8,
    #[serde(default)]
    pub description: Option<String>,
    /// Globs (relative to the source root, `/`-separated, no backslashes,
    /// no leading or trailing spaces).
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[^\s\\]([^\\]*[^\s\\])?$")))]
    pub include: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[^\s\\]([^\\]*[^\s\\])?$")))]
    pub exclude: Vec<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[^\s\\]([^\\]*[^\s\\])?$")))]
    pub never_ingest: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceKindName {
    Dir,
    Git,
}

/// The outcome of a registry edit.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct EditOutcome {
    pub subject: String,
    pub action: String,
    pub audit_seq: u64,
    pub audit_hash: String,
    pub registry_version: String,
}

/// The outcome of a status change; a revocation carries the purge proof.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct StatusOutcome {
    pub source: String,
    pub status: String,
    /// The audit action recorded (`source.approve`, `source.deny`, `source.revoke`).
    pub action: String,
    pub audit_seq: u64,
    pub audit_hash: String,
    pub registry_version: String,
    /// Sources purged by the pass that followed (a revocation's own source among them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purged: Option<Vec<String>>,
    /// What remains of the source in each store (all zero after a verified purge).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remaining: Option<Remaining>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_verified: Option<bool>,
}

/// A time-bounded exception to the never-ingest rules for one path.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExceptionGrant {
    /// Defaults to an id derived from the source, path and time.
    #[serde(default)]
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub id: Option<String>,
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub source: String,
    /// A glob relative to the source root.
    #[schemars(length(min = 1), regex(pattern = r"\S"))]
    pub path: String,
    #[schemars(length(min = 1, max = 500), regex(pattern = r"\S"))]
    pub reason: String,
    /// RFC 3339; after now and at most 366 days ahead.
    #[schemars(extend("format" = "date-time"))]
    pub expires_at: String,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct GrantOutcome {
    pub id: String,
    pub granted: bool,
    pub audit_seq: u64,
}

fn reason_rule(status: Status, reason: Option<String>) -> Result<Option<String>> {
    let reason = reason.map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(r) = &reason
        && r.chars().count() > MAX_REASON_CHARS
    {
        return Err(Error::bad(format!(
            "reason is at most {MAX_REASON_CHARS} characters"
        )));
    }
    if reason.is_none() && matches!(status, Status::Denied | Status::Revoked) {
        return Err(Error::bad(format!(
            "a reason is required to {}",
            if status == Status::Denied {
                "deny"
            } else {
                "revoke"
            }
        )));
    }
    Ok(reason)
}

fn source_id(id: &str) -> Result<SourceId> {
    SourceId::new(id.to_string()).map_err(Error::BadRequest)
}

impl Plane {
    /// Applies a registry edit as `actor` and makes the result the registry in force.
    pub fn edit(&self, actor: &str, edit: Edit) -> Result<EditOutcome> {
        let applied = self.store().apply(actor, edit)?;
        let e = &applied.entry;
        let out = EditOutcome {
            subject: e.subject.clone(),
            action: e.action.clone(),
            audit_seq: e.seq,
            audit_hash: e.hash.clone(),
            registry_version: applied.registry.version.to_hex(),
        };
        self.set_registry(applied.registry);
        Ok(out)
    }

    /// Proposes a source (status `proposed`, nothing ingested until approved).
    pub fn propose_source(&self, actor: &str, p: SourceProposal) -> Result<EditOutcome> {
        let edit = Edit::AddSource(NewSource {
            id: source_id(&p.id)?,
            kind: match p.kind {
                SourceKindName::Dir => SourceKind::Dir,
                SourceKindName::Git => SourceKind::Git,
            },
            location: p.location,
            owner: p.owner,
            tier: Tier::new(p.tier).map_err(Error::BadRequest)?,
            description: p.description,
            include: p.include,
            exclude: p.exclude,
            never_ingest: p.never_ingest,
        });
        self.edit(actor, edit)
    }

    /// Approves, denies or revokes a source (a reason is required to deny
    /// or revoke). A revocation purges the source from every store at once,
    /// even during an emergency stop, then checks that nothing remains and
    /// audits the proof; an incomplete purge is an error carrying what
    /// remains. In a serving process an approval starts ingesting at once.
    pub fn set_status(
        &self,
        actor: &str,
        id: &str,
        status: Status,
        reason: Option<String>,
    ) -> Result<StatusOutcome> {
        let reason = reason_rule(status, reason)?;
        let edited = self.edit(
            actor,
            Edit::SetStatus {
                id: source_id(id)?,
                status,
                reason,
            },
        )?;
        let mut out = StatusOutcome {
            source: id.to_string(),
            status: status.as_str().to_string(),
            action: edited.action.clone(),
            audit_seq: edited.audit_seq,
            audit_hash: edited.audit_hash.clone(),
            registry_version: edited.registry_version.clone(),
            purged: None,
            remaining: None,
            purge_verified: None,
        };
        let ingest_now =
            status == Status::Revoked || (self.profile().ingest_on_approve && self.stopped().is_none());
        if !ingest_now {
            return Ok(out);
        }
        let outcome = if status == Status::Revoked {
            // Purge only (no source is walked), and also during an
            // emergency stop: a leak must be purgeable.
            Some(self.purge_pass(actor)?)
        } else {
            self.update(None, PassKind::Update, &mut Quiet)?
        };
        let proof = outcome.as_ref().and_then(|o| o.purges.get(id).cloned());
        out.purged = outcome.map(|o| o.report.purged);
        if status == Status::Revoked {
            let remaining = match proof {
                // The pass verified (and audited) this purge.
                Some(remaining) => remaining,
                // Nothing of it was ever indexed: check and audit here.
                None => {
                    let remaining = self.remaining(id)?;
                    self.record(vec![
                        Event::new(actor, "source.purge_verified", id)
                            .detail("clean", remaining.clean())
                            .detail("remaining", serde_json::to_value(&remaining)?),
                    ])?;
                    remaining
                }
            };
            let clean = remaining.clean();
            out.remaining = Some(remaining);
            out.purge_verified = Some(clean);
            if !clean {
                return Err(Error::PurgeIncomplete {
                    detail: serde_json::to_value(&out)?,
                });
            }
        }
        Ok(out)
    }

    /// What of `id` is left in every store.
    pub fn remaining(&self, id: &str) -> Result<Remaining> {
        let guard = self.ingest()?;
        match guard.as_ref() {
            Some(ing) => ing.remaining(self.store().data_dir(), id),
            None => Err(Error::internal_msg("ingest state not opened")),
        }
    }

    /// Grants a never-ingest exception approved by `who`.
    pub fn grant_exception(&self, who: &Who, g: ExceptionGrant) -> Result<GrantOutcome> {
        let now = self.store().clock().now();
        let now = jiff::Timestamp::from_second(now.as_second()).unwrap_or(now);
        let expires_at: jiff::Timestamp = g
            .expires_at
            .parse()
            .map_err(|_| Error::bad("expires_at must be an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"))?;
        if expires_at <= now {
            return Err(Error::bad(format!(
                "expires_at {expires_at} is not in the future"
            )));
        }
        let source = source_id(&g.source)?;
        let id = g.id.unwrap_or_else(|| {
            let h = ContentHash::of(format!("{source}\0{}\0{now}", g.path).as_bytes());
            format!("exc-{}", &h.to_hex()[..10])
        });
        let edited = self.edit(
            who.name(),
            Edit::GrantException(NewException {
                id: id.clone(),
                source,
                path: g.path,
                permits: vec![Permit::NeverIngest],
                approver: who.name().to_string(),
                reason: g.reason,
                granted_at: now,
                expires_at,
            }),
        )?;
        Ok(GrantOutcome {
            id,
            granted: true,
            audit_seq: edited.audit_seq,
        })
    }

    /// Exceptions with their window now (live, not yet live, expired).
    pub fn exceptions(&self, who: &Who) -> Value {
        let now = self.store().clock().now();
        let views: Vec<_> = who
            .registry
            .exceptions
            .iter()
            .map(|x| crate::views::ExceptionView::new(x, now))
            .collect();
        json!({"now": now, "exceptions": views})
    }

    /// The last `n` audit entries (1 to 10000).
    pub fn audit_tail(&self, n: usize) -> Result<Value> {
        if !(1..=10_000).contains(&n) {
            return Err(Error::bad(format!("n must be between 1 and 10000, not {n}")));
        }
        let entries = self.store().audit().tail_entries(n)?;
        Ok(json!({"entries": entries}))
    }

    /// Verifies the audit chain.
    pub fn audit_verify(&self) -> Result<Value> {
        let report = self.store().audit().verify()?;
        Ok(serde_json::to_value(&report)?)
    }
}
