//! Policy as code: whether a file may be ingested, and what a principal may
//! read. Deny by default: anything not positively approved is refused.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::Serialize;

use crate::clock::Clock;
use crate::model::{Exception, Permit, Principal, Registry, SourceGrant, Status, Window};
use crate::rules::{RuleOrigin, check_relative_path};
use crate::vocab::{ContentHash, Role, SourceId, Tier};

/// Why an ingest was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum DenyReason {
    /// The path is not a clean relative path inside the source.
    InvalidPath { detail: String },
    /// No source with this id is registered.
    UnknownSource,
    /// The source exists but is not approved.
    SourceNotApproved { status: Status },
    /// A never-ingest rule matched and no live exception covers the path.
    NeverIngest {
        pattern: String,
        origin: RuleOrigin,
        /// Exceptions that would have covered the path but are out of their window.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        lapsed_exceptions: Vec<String>,
    },
    /// The source has include rules and none matched.
    NotIncluded,
    /// An exclude rule of the source matched.
    Excluded { pattern: String },
}

impl DenyReason {
    /// A short stable code, for counting and for the decision id.
    pub fn code(&self) -> &'static str {
        match self {
            DenyReason::InvalidPath { .. } => "invalid_path",
            DenyReason::UnknownSource => "unknown_source",
            DenyReason::SourceNotApproved { .. } => "source_not_approved",
            DenyReason::NeverIngest { .. } => "never_ingest",
            DenyReason::NotIncluded => "not_included",
            DenyReason::Excluded { .. } => "excluded",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DenyReason::InvalidPath { detail } => write!(f, "invalid path: {detail}"),
            DenyReason::UnknownSource => f.write_str("unknown source"),
            DenyReason::SourceNotApproved { status } => write!(f, "source is {status}, not approved"),
            DenyReason::NeverIngest {
                pattern,
                origin,
                lapsed_exceptions,
            } => {
                write!(f, "never-ingest rule {pattern:?} ({})", origin_name(*origin))?;
                if !lapsed_exceptions.is_empty() {
                    write!(f, "; exception(s) {} not live", lapsed_exceptions.join(", "))?;
                }
                Ok(())
            }
            DenyReason::NotIncluded => f.write_str("not matched by the source's include rules"),
            DenyReason::Excluded { pattern } => write!(f, "excluded by {pattern:?}"),
        }
    }
}

fn origin_name(o: RuleOrigin) -> &'static str {
    match o {
        RuleOrigin::Builtin => "built-in",
        RuleOrigin::Global => "registry-wide",
        RuleOrigin::Source => "source",
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Allow {
        /// The exception that let a never-ingest path through, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        exception: Option<String>,
    },
    Deny(DenyReason),
}

/// One ingest decision. Its id is derived from the registry version and the
/// question, so the same registry always gives the same id for the same
/// file, and provenance can point back to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub id: String,
    pub source: String,
    pub path: String,
    pub registry_version: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow { .. })
    }

    pub fn deny_reason(&self) -> Option<&DenyReason> {
        match &self.outcome {
            Outcome::Deny(r) => Some(r),
            Outcome::Allow { .. } => None,
        }
    }
}

/// What a principal may read: the approved sources it is granted whose tier
/// is at or below its ceiling. Everything else does not exist for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Scope {
    pub principal: String,
    pub role: Role,
    pub tier_ceiling: Tier,
    pub sources: BTreeSet<SourceId>,
}

impl Scope {
    /// Whether this scope may read content of `source` at `tier`.
    pub fn permits(&self, source: &SourceId, tier: Tier) -> bool {
        tier <= self.tier_ceiling && self.sources.contains(source)
    }

    /// The one rule for oversight: stewards see the whole registry (every
    /// source whatever its status, in source lists, freshness and the CI
    /// check); everyone else sees only what `permits`. Reading content is
    /// always `permits`, stewards included.
    pub fn oversees_registry(&self) -> bool {
        self.role == Role::Steward
    }

    /// Whether `source` at `tier` is visible to this scope as registry
    /// metadata (listing, freshness, check).
    pub fn may_oversee(&self, source: &SourceId, tier: Tier) -> bool {
        self.oversees_registry() || self.permits(source, tier)
    }
}

/// Policy evaluated against one registry at one instant.
#[derive(Debug)]
pub struct Policy<'r> {
    registry: &'r Registry,
    now: Timestamp,
}

impl Registry {
    /// Policy as of the clock's current reading. Take one per pass so every
    /// decision in the pass sees the same instant.
    pub fn policy(&self, clock: &dyn Clock) -> Policy<'_> {
        Policy {
            registry: self,
            now: clock.now(),
        }
    }
}

impl<'r> Policy<'r> {
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// What ingest decisions depend on besides the path: the registry
    /// version and which exceptions are live now. Two policies with the
    /// same epoch decide every path alike, so decisions can be cached by it.
    pub fn epoch(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.registry.version.to_hex().as_bytes());
        for x in &self.registry.exceptions {
            if x.window(self.now) == Window::Live {
                h.update(&(x.id.len() as u64).to_le_bytes());
                h.update(x.id.as_bytes());
            }
        }
        h.finalize().to_hex().to_string()
    }

    pub fn decide_ingest(&self, source: &str, path: &str) -> Decision {
        let outcome = self.outcome(source, path);
        let mut h = blake3::Hasher::new();
        for part in [
            "ingest",
            &self.registry.version.to_hex(),
            source,
            path,
            match &outcome {
                Outcome::Allow { .. } => "allow",
                Outcome::Deny(r) => r.code(),
            },
            match &outcome {
                Outcome::Allow { exception: Some(x) } => x,
                _ => "",
            },
        ] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        let id = format!("dec-{}", &ContentHash::from_blake3(h.finalize()).to_hex()[..20]);
        Decision {
            id,
            source: source.to_string(),
            path: path.to_string(),
            registry_version: self.registry.version.to_hex(),
            outcome,
        }
    }

    fn outcome(&self, source: &str, path: &str) -> Outcome {
        if let Err(detail) = check_relative_path(path) {
            return Outcome::Deny(DenyReason::InvalidPath { detail });
        }
        let Some(src) = SourceId::new(source)
            .ok()
            .and_then(|id| self.registry.sources.get(&id))
        else {
            return Outcome::Deny(DenyReason::UnknownSource);
        };
        if src.status != Status::Approved {
            return Outcome::Deny(DenyReason::SourceNotApproved { status: src.status });
        }
        let mut via_exception = None;
        let rule = self
            .registry
            .never_ingest
            .first_match(path)
            .or_else(|| src.never_ingest.first_match(path));
        if let Some(rule) = rule {
            let covering: Vec<&Exception> = self
                .registry
                .exceptions
                .iter()
                .filter(|x| x.covers(&src.id, path, Permit::NeverIngest))
                .collect();
            match covering.iter().find(|x| x.window(self.now) == Window::Live) {
                Some(x) => via_exception = Some(x.id.clone()),
                None => {
                    return Outcome::Deny(DenyReason::NeverIngest {
                        pattern: rule.pattern.clone(),
                        origin: rule.origin,
                        lapsed_exceptions: covering.iter().map(|x| x.id.clone()).collect(),
                    });
                }
            }
        }
        if !src.include.is_empty() && !src.include.is_match(path) {
            return Outcome::Deny(DenyReason::NotIncluded);
        }
        if let Some(rule) = src.exclude.first_match(path) {
            return Outcome::Deny(DenyReason::Excluded {
                pattern: rule.pattern.clone(),
            });
        }
        Outcome::Allow {
            exception: via_exception,
        }
    }

    /// What `principal` may read right now.
    pub fn scope_for(&self, principal: &Principal) -> Scope {
        let sources = self
            .registry
            .sources
            .values()
            .filter(|s| s.status == Status::Approved && s.tier <= principal.tier_ceiling)
            .filter(|s| match &principal.sources {
                SourceGrant::All => true,
                SourceGrant::Only(ids) => ids.contains(&s.id),
            })
            .map(|s| s.id.clone())
            .collect();
        Scope {
            principal: principal.name.clone(),
            role: principal.role,
            tier_ceiling: principal.tier_ceiling,
            sources,
        }
    }

    /// Exceptions whose window has closed.
    pub fn expired_exceptions(&self) -> impl Iterator<Item = &'r Exception> + '_ {
        self.registry
            .exceptions
            .iter()
            .filter(|x| x.window(self.now) == Window::Expired)
    }
}

impl Registry {
    /// The principal holding `token`, if any. Compares every stored hash in
    /// constant time and never stops early, so timing says nothing about
    /// which principals exist.
    pub fn authenticate(&self, token: &str) -> Option<&Principal> {
        let presented = ContentHash::of(token.as_bytes());
        let mut found = None;
        for p in &self.principals {
            if p.token_hash.ct_eq(&presented) && found.is_none() {
                found = Some(p);
            }
        }
        found
    }
}
