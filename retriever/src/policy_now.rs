//! Policy at query time: every path is re-decided against the registry as
//! it is now before anything from it is served, so a never-ingest rule or a
//! lapsed exception takes effect at once, not at the next pass (which then
//! purges the text). Decisions are cached per policy epoch (registry
//! version and the set of live exceptions): the same epoch decides every
//! path alike.

use std::collections::HashMap;
use std::sync::Mutex;

use registry::Policy;

/// Most decisions kept before the cache starts over.
const MAX_CACHED: usize = 200_000;

/// Why a path is denied now: the reason's code and its description.
pub(crate) type Denial = Option<(&'static str, String)>;

/// Decisions by (source, path).
type ByPath = HashMap<(String, String), Denial>;

#[derive(Default)]
pub(crate) struct Decisions {
    /// The epoch the cached decisions hold for, and the decisions.
    state: Mutex<(String, ByPath)>,
}

impl Decisions {
    /// `None` if `policy` lets `source:path` in now, else why not.
    pub(crate) fn denied(&self, policy: &Policy<'_>, epoch: &str, source: &str, path: &str) -> Denial {
        let mut st = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.0 != epoch || st.1.len() >= MAX_CACHED {
            st.0 = epoch.to_string();
            st.1.clear();
        }
        if let Some(d) = st.1.get(&(source.to_string(), path.to_string())) {
            return d.clone();
        }
        let d = policy.decide_ingest(source, path);
        let why = d.deny_reason().map(|r| (r.code(), r.to_string()));
        st.1.insert((source.to_string(), path.to_string()), why.clone());
        why
    }
}
