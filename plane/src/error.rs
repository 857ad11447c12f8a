//! The service's one error type. Library errors are converted here, once;
//! each interface turns a variant into its own form (an HTTP status, an
//! MCP tool error, an exit code) in exactly one place.

use registry::RegistryError;

use crate::settings::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No credentials, or credentials that match no principal.
    #[error("unauthorized")]
    Unauthorized,
    /// The principal's role may not use the operation.
    #[error("forbidden")]
    Forbidden,
    /// An emergency stop is in force.
    #[error("ctxplane is stopped: {reason}")]
    Stopped { reason: String },
    /// Nothing by that id, or nothing the caller may see (the two look the same).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a duplicate id, a
    /// transition the source's status does not allow).
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed or out of range; the message says what.
    #[error("{0}")]
    BadRequest(String),
    /// The request is larger than a stated limit.
    #[error("{0}")]
    TooLarge(String),
    /// The configuration or a file the operator keeps (registry, config) is
    /// unusable; the operator must fix it.
    #[error("{0}")]
    Config(String),
    /// The principal's request rate or daily token quota is used up.
    #[error("limit reached: {reason}; retry after {retry_after_secs} s")]
    Limited { reason: String, retry_after_secs: u64 },
    /// A revocation whose purge could not be verified: `detail` says what
    /// remains in each store.
    #[error("purge incomplete: {detail}")]
    PurgeIncomplete { detail: serde_json::Value },
    /// A store on another server (Qdrant) cannot be reached, did not
    /// answer in time or has nothing to read yet: the request may succeed
    /// later. `reason` may be shown to any caller; `detail` (addresses,
    /// the server's message) goes to the log and the operator's terminal.
    #[error("{reason} ({detail})")]
    Unavailable { reason: String, detail: String },
    /// A fault of the service itself (I/O, an index error).
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Seconds a caller is told to wait after [`Error::Unavailable`].
pub const UNAVAILABLE_RETRY_SECS: u64 = 5;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Seconds between two warnings about the same outage: while a server is
/// down every request fails the same way, and one warning a minute (with
/// how many were held back) says as much as one per request.
pub const OUTAGE_WARN_SECS: u64 = 60;

/// Logs that `what` is unavailable (`detail`: addresses, the server's
/// message): a warning the first time and then at most once every
/// [`OUTAGE_WARN_SECS`] per `what`, naming how many reports were held
/// back since the previous warning and how long ago that was; the rest at
/// debug level.
pub fn warn_unavailable(what: &str, detail: &dyn std::fmt::Display) {
    static LOG: std::sync::Mutex<OutageLog> = std::sync::Mutex::new(OutageLog::new());
    let admitted = LOG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .admit(what, std::time::Instant::now());
    match admitted {
        Some(Warn::First) => tracing::warn!(detail = %detail, "{what}"),
        Some(Warn::Again {
            held_back,
            since_secs,
        }) => tracing::warn!(
            detail = %detail,
            held_back,
            previous_warning_secs_ago = since_secs,
            "{what}"
        ),
        None => tracing::debug!(detail = %detail, "{what}"),
    }
}

/// A report that is to be a warning.
#[derive(Debug, PartialEq)]
enum Warn {
    /// The first of its kind.
    First,
    /// `held_back` reports since the previous warning, `since_secs` ago.
    Again { held_back: u64, since_secs: u64 },
}

/// When each kind of outage was last warned about, and how many reports
/// of it were held back since.
struct OutageLog {
    seen: Vec<(String, std::time::Instant, u64)>,
}

impl OutageLog {
    const fn new() -> Self {
        OutageLog { seen: Vec::new() }
    }

    /// Whether this report of `what` is to be a warning (`None`: held back).
    fn admit(&mut self, what: &str, now: std::time::Instant) -> Option<Warn> {
        let window = std::time::Duration::from_secs(OUTAGE_WARN_SECS);
        match self.seen.iter_mut().find(|(w, ..)| w == what) {
            Some((_, last, held)) if now.saturating_duration_since(*last) < window => {
                *held += 1;
                None
            }
            Some((_, last, held)) => {
                let since_secs = now.saturating_duration_since(*last).as_secs();
                *last = now;
                Some(Warn::Again {
                    held_back: std::mem::take(held),
                    since_secs,
                })
            }
            None => {
                // A handful of kinds at most (the messages are fixed
                // strings), so a list is enough.
                self.seen.push((what.to_string(), now, 0));
                Some(Warn::First)
            }
        }
    }
}

impl Error {
    pub fn bad(msg: impl std::fmt::Display) -> Self {
        Error::BadRequest(msg.to_string())
    }

    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Error::Internal(e.into())
    }

    pub fn internal_msg(m: impl std::fmt::Display) -> Self {
        Error::Internal(anyhow::anyhow!(m.to_string()))
    }

    /// A short, stable name for the kind of error (used in JSON bodies and logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Unauthorized => "unauthorized",
            Error::Forbidden => "forbidden",
            Error::Stopped { .. } => "stopped",
            Error::NotFound(_) => "not_found",
            Error::Conflict(_) => "conflict",
            Error::BadRequest(_) => "bad_request",
            Error::TooLarge(_) => "too_large",
            Error::Config(_) => "config",
            Error::PurgeIncomplete { .. } => "purge_incomplete",
            Error::Limited { .. } => "rate_limited",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

impl From<RegistryError> for Error {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownSource { .. } => Error::NotFound(e.to_string()),
            RegistryError::DuplicateSource { .. }
            | RegistryError::DuplicateException { .. }
            | RegistryError::DuplicatePrincipal { .. }
            | RegistryError::BadTransition { .. } => Error::Conflict(e.to_string()),
            RegistryError::BadRequest(m) => Error::BadRequest(m),
            RegistryError::NotFound { .. } | RegistryError::Invalid { .. } => Error::Config(e.to_string()),
            RegistryError::Io { .. } | RegistryError::Audit { .. } => Error::Internal(e.into()),
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e.0)
    }
}

impl From<indexer::IndexError> for Error {
    fn from(e: indexer::IndexError) -> Self {
        match e {
            indexer::IndexError::Unavailable { .. } => Error::Unavailable {
                reason: "the index server (Qdrant) cannot be reached or has nothing to read yet".into(),
                detail: e.to_string(),
            },
            other => Error::Internal(other.into()),
        }
    }
}

impl From<retriever::RetrieveError> for Error {
    fn from(e: retriever::RetrieveError) -> Self {
        match e {
            retriever::RetrieveError::NoIndex(_) => Error::Config(e.to_string()),
            retriever::RetrieveError::Index(i) => i.into(),
            other => Error::Internal(other.into()),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e.into())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(e.into())
    }
}

#[cfg(test)]
mod outage_tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn an_outage_is_warned_about_once_a_window_with_the_count_held_back() {
        let again = |held_back, since_secs| {
            Some(Warn::Again {
                held_back,
                since_secs,
            })
        };
        let mut log = OutageLog::new();
        let t0 = Instant::now();
        assert_eq!(log.admit("qdrant down", t0), Some(Warn::First));
        for i in 1..=5 {
            assert_eq!(log.admit("qdrant down", t0 + Duration::from_secs(i)), None);
        }
        // Another kind of outage has its own window.
        assert_eq!(
            log.admit("index unreadable", t0 + Duration::from_secs(2)),
            Some(Warn::First)
        );
        let later = t0 + Duration::from_secs(OUTAGE_WARN_SECS);
        assert_eq!(log.admit("qdrant down", later), again(5, OUTAGE_WARN_SECS));
        assert_eq!(log.admit("qdrant down", later + Duration::from_secs(1)), None);
        // An outage hours later says how long ago the previous warning was.
        let hours = later + Duration::from_secs(3 * 3600);
        assert_eq!(log.admit("qdrant down", hours), again(1, 3 * 3600));
    }
}
