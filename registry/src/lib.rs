//! ctxplane's policy root and shared vocabulary.
//!
//! * [`vocab`]: source ids, tiers, content hashes, spans, roles.
//! * [`model`]: the source registry read from `registry.toml`.
//! * [`policy`]: ingest decisions and principals' scopes, deny by default.
//! * [`edit`] and [`store`]: steward edits, written atomically and audited.
//! * [`audit`]: the append-only, hash-chained audit log.
//!
//! No async runtime, no index, no network: every other crate depends on this
//! one, and it depends on none of them.

pub mod audit;
pub mod checkpoint;
pub mod clock;
pub mod defaults;
pub mod edit;
pub mod error;
pub mod fsutil;
pub mod model;
pub mod policy;
pub mod rules;
pub mod store;
pub mod vocab;

pub use clock::{Clock, FixedClock, SystemClock};
pub use error::{Problem, RegistryError, Result};
pub use model::{
    AnswerRules, DEFAULT_MAX_AGE_DAYS, Exception, Freshness, Limits, Permit, Principal, Registry, Source,
    SourceGrant, SourceKind, Status, Treatment, Window,
};
pub use policy::{Decision, DenyReason, Outcome, Policy, Scope};
pub use store::RegistryStore;
pub use vocab::{ContentHash, Role, SourceId, Span, Tier};
