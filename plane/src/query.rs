//! Queries: the request every interface takes, validated in one place
//! (out-of-range values are refused, never clamped silently), answered by
//! the retriever within the caller's scope, trimmed so that the budget
//! bounds what the caller receives, and audited with one record.

use registry::audit::Event;
use registry::{ContentHash, Registry};
pub use retriever::GroupBy;
use retriever::{Answer, Caller, Mode, Options};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshots::SnapshotRef;
use crate::{Plane, Who};

/// Longest query accepted, in bytes of UTF-8.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;
/// Most results one answer may ask for.
pub const MAX_LIMIT: usize = 100;
/// Largest token budget one answer may ask for.
pub const MAX_TOKENS: usize = 200_000;
/// Smallest token budget (the first result is kept even when it alone is larger).
pub const MIN_TOKENS: usize = 1;
pub const DEFAULT_LIMIT: usize = 10;
pub const DEFAULT_MAX_TOKENS: usize = 4_000;
/// Most sources a request may narrow to.
pub const MAX_SOURCES: usize = 100;

/// Which engines answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    #[default]
    Hybrid,
    Lexical,
    Dense,
}

impl SearchMode {
    fn engine(self) -> Mode {
        match self {
            SearchMode::Hybrid => Mode::Hybrid,
            SearchMode::Lexical => Mode::Lexical,
            SearchMode::Dense => Mode::Dense,
        }
    }
}

impl std::str::FromStr for SearchMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "lexical" => Ok(SearchMode::Lexical),
            "dense" => Ok(SearchMode::Dense),
            other => Err(Error::bad(format!(
                "mode must be hybrid, lexical or dense, not {other:?}"
            ))),
        }
    }
}

/// A request for context, the same over HTTP, MCP and the CLI.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextRequest {
    /// The question or search text: 1 to 32768 bytes of UTF-8 (the server
    /// counts bytes), not only whitespace. A long one (a bug report, a
    /// stack trace) is reduced, not refused: its identifiers, paths,
    /// frames and error lines are weighted and its beginning searched.
    #[schemars(length(min = 1, max = 32768), regex(pattern = r"\S"))]
    pub query: String,
    /// Token budget for everything returned: content, provenance and framing
    /// (about four characters a token). 1 to 200000; default 4000.
    #[serde(default, deserialize_with = "whole::optional")]
    #[schemars(range(min = 1, max = 200000))]
    pub max_tokens: Option<u32>,
    /// Most results: 1 to 100; default 10.
    #[serde(default, deserialize_with = "whole::optional")]
    #[schemars(range(min = 1, max = 100))]
    pub limit: Option<u32>,
    /// Only these sources (narrowing the caller's scope; an id outside it
    /// matches nothing). At most 100.
    #[serde(default)]
    #[schemars(length(max = 100))]
    pub sources: Option<Vec<String>>,
    /// hybrid (default), lexical or dense.
    #[serde(default)]
    pub mode: Option<SearchMode>,
    /// Try topic packages (tier 1) before search; default true.
    #[serde(default)]
    pub packages: Option<bool>,
    /// `chunk` (default) or `file`: rank files by their chunks' evidence,
    /// `limit` counting files; each file names its best chunks among the
    /// results.
    #[serde(default)]
    pub group_by: Option<GroupBy>,
}

/// Which interface a request came through (recorded in the audit entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Cli,
    Http,
    Mcp,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Http => "http",
            Via::Mcp => "mcp",
        }
    }
}

/// Who asks: a principal, or the operator at the CLI (every approved
/// source, every tier; recorded under the operator's actor name).
#[derive(Clone, Debug)]
pub enum Asker {
    Principal(Who),
    Operator,
}

/// A request checked against the limits.
#[derive(Clone, Debug)]
pub struct Validated {
    pub query: String,
    pub options: Options,
    pub sources: Option<Vec<String>>,
}

impl ContextRequest {
    /// The limits, in one place: every interface refuses what is out of range.
    pub fn validate(self) -> Result<Validated> {
        if self.query.len() > MAX_QUERY_BYTES {
            return Err(Error::TooLarge(format!(
                "query is {} bytes; the limit is {MAX_QUERY_BYTES}",
                self.query.len()
            )));
        }
        if self.query.trim().is_empty() {
            return Err(Error::bad("query is empty"));
        }
        let max_tokens = self.max_tokens.map_or(DEFAULT_MAX_TOKENS, |n| n as usize);
        if !(MIN_TOKENS..=MAX_TOKENS).contains(&max_tokens) {
            return Err(Error::bad(format!(
                "max_tokens must be between {MIN_TOKENS} and {MAX_TOKENS}, not {max_tokens}"
            )));
        }
        let limit = self.limit.map_or(DEFAULT_LIMIT, |n| n as usize);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::bad(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {limit}"
            )));
        }
        if let Some(s) = &self.sources
            && s.len() > MAX_SOURCES
        {
            return Err(Error::bad(format!(
                "at most {MAX_SOURCES} sources, not {}",
                s.len()
            )));
        }
        Ok(Validated {
            query: self.query,
            options: Options {
                mode: self.mode.unwrap_or_default().engine(),
                limit,
                max_tokens,
                packages: self.packages.unwrap_or(true),
                group_by: self.group_by.unwrap_or_default(),
            },
            sources: self.sources,
        })
    }
}

/// An answer as delivered: the retriever's answer, trimmed to the budget.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Delivered {
    #[serde(flatten)]
    pub answer: Answer,
    /// The snapshot this answer is recorded under: resolve it later with
    /// `ctxplane provenance`, `GET /v1/snapshots/{id}` or MCP
    /// `explain_provenance`; paste `cite` beside what the answer grounded.
    pub snapshot: SnapshotRef,
    /// Tokens of everything delivered (content, provenance and JSON
    /// framing, as compact JSON; see [`delivered_tokens`]), at most
    /// `max_tokens` unless a single result or package is larger on its own.
    pub delivered_tokens: usize,
}

/// Tokens a text costs, conservatively: 0.55 a byte. Measured on 20
/// answers to the Django benchmark queries as compact JSON, the embedding
/// model's WordPiece tokenizer gave 0.46 to 0.54 tokens a byte (it splits
/// hashes and ids finely, and so itself errs high against the BPE
/// tokenizers agents' models use); this stays above it, and costs one
/// pass over the bytes instead of a tokenizer run per answer.
pub fn delivered_tokens(text: &str) -> usize {
    (text.len() * 11).div_ceil(20)
}

/// [`delivered_tokens`] of a value as compact JSON.
pub fn json_tokens(v: &impl Serialize) -> usize {
    serde_json::to_string(v).map_or(usize::MAX, |s| delivered_tokens(&s))
}

/// Drops results from the end until the whole answer fits the budget; a
/// dropped result counts as over budget. The first result is kept even
/// when it alone is larger (the answer says so by its numbers). Each part
/// is measured once; the total is measured again exactly at the end.
fn fit(mut answer: Answer) -> Delivered {
    let snapshot = SnapshotRef::placeholder();
    // The snapshot reference and its framing are delivered too.
    let fixed = json_tokens(&snapshot) + delivered_tokens(",\"snapshot\":");
    let budget = answer.max_tokens.saturating_sub(fixed);
    loop {
        let total = json_tokens(&answer);
        if total <= budget || answer.results.len() <= 1 {
            return Delivered {
                delivered_tokens: total + fixed,
                snapshot,
                answer,
            };
        }
        let sizes: Vec<usize> = answer.results.iter().map(json_tokens).collect();
        let mut estimate = total;
        while estimate > budget && answer.results.len() > 1 {
            if let Some(h) = answer.results.pop() {
                answer.over_budget += 1;
                answer.tokens = answer.tokens.saturating_sub(h.tokens);
                estimate = estimate.saturating_sub(sizes[answer.results.len()]);
            }
        }
        // A file keeps the chunks still delivered; one with none goes.
        let kept: std::collections::HashSet<&str> = answer.results.iter().map(|h| h.id.as_str()).collect();
        for f in &mut answer.files {
            f.chunks.retain(|id| kept.contains(id.as_str()));
        }
        answer.files.retain(|f| !f.chunks.is_empty());
    }
}

impl Plane {
    /// Answers a context request for `asker`, audited before it is returned.
    pub fn context(&self, asker: &Asker, req: ContextRequest, via: Via) -> Result<Delivered> {
        let mut out = self.context_batch(asker, vec![req], via)?;
        out.pop()
            .unwrap_or_else(|| Err(Error::internal(anyhow::anyhow!("no answer"))))
    }

    /// Several requests by one asker, audited with one append (each answer
    /// has its own record). An invalid request fails alone.
    pub fn context_batch(
        &self,
        asker: &Asker,
        reqs: Vec<ContextRequest>,
        via: Via,
    ) -> Result<Vec<Result<Delivered>>> {
        let registry = match asker {
            Asker::Principal(who) => who.registry.clone(),
            Asker::Operator => self.registry()?,
        };
        let retriever = self.retriever()?;
        let mut out = Vec::with_capacity(reqs.len());
        let mut events = Vec::new();
        let now = self.store().clock().now();
        for req in reqs {
            let answered = req.validate().and_then(|mut v| {
                // A daily token quota caps the budget by what is left of it,
                // set aside while the answer is made.
                let reservation = match asker {
                    Asker::Principal(who) => match who.registry.limits_for(&who.principal).tokens_per_day {
                        Some(per_day) => {
                            let r = self
                                .meter
                                .reserve(who.name(), per_day, v.options.max_tokens as u64, now)
                                .map_err(|r| self.refused(who, crate::access::Operation::Context, r))?;
                            v.options.max_tokens = usize::try_from(r.granted()).unwrap_or(usize::MAX);
                            Some((who, r))
                        }
                        None => None,
                    },
                    Asker::Operator => None,
                };
                let caller = self.caller(&registry, asker, v.sources.as_deref());
                let d = fit(retriever.query(&caller, &v.query, &v.options)?);
                if let Some((who, r)) = reservation {
                    let delivered = d.delivered_tokens as u64;
                    if delivered > r.room() {
                        // Even its first result does not fit what is left.
                        let refused = self.meter.refusal(
                            who.name(),
                            Error::Limited {
                                reason: format!(
                                    "this answer needs {delivered} context tokens, {} are left of today's quota",
                                    r.room()
                                ),
                                retry_after_secs: crate::limits::secs_to_midnight(now),
                            },
                        );
                        return Err(self.refused(who, crate::access::Operation::Context, refused));
                    }
                    r.settle(delivered);
                }
                Ok(d)
            });
            out.push(answered);
        }
        // Each answer's snapshot is durable before its audit record, and
        // the audit record vouches for the snapshot (id and line hash).
        let answered_at = std::time::Instant::now();
        let mut delivered: Vec<&mut Delivered> = out.iter_mut().filter_map(|a| a.as_mut().ok()).collect();
        let (recorded, sidecars) =
            self.snapshot_answers(asker, via, &registry.version.to_hex(), &mut delivered)?;
        let snapshot_ms = answered_at.elapsed().as_secs_f64() * 1000.0;
        for (d, (id, hash)) in delivered.iter().zip(recorded) {
            self.metrics
                .record_query(&d.answer.served_by, d.answer.took_ms, d.delivered_tokens);
            events.push(
                self.query_event(asker, d, via)
                    .detail("snapshot", id)
                    .detail("snapshot_hash", hash),
            );
        }
        self.store().record_with(events, sidecars)?;
        tracing::debug!(
            answers = out.len(),
            snapshot_ms,
            durable_ms = answered_at.elapsed().as_secs_f64() * 1000.0 - snapshot_ms,
            "answers recorded"
        );
        self.prune_snapshots()?;
        Ok(out)
    }

    /// Chunks to draft a topic package from: search only (no topic
    /// packages, no budget) within the asker's scope. Not an answer, so not
    /// audited as a query; the draft itself is audited when reviewed.
    pub fn search_for_draft(&self, asker: &Asker, text: &str, limit: usize) -> Result<Vec<retriever::Hit>> {
        let registry = match asker {
            Asker::Principal(who) => who.registry.clone(),
            Asker::Operator => self.registry()?,
        };
        let caller = self.caller(&registry, asker, None);
        let answer = self.retriever()?.query(
            &caller,
            text,
            &Options {
                limit: limit.clamp(1, MAX_LIMIT),
                max_tokens: usize::MAX / 2,
                packages: false,
                ..Default::default()
            },
        )?;
        Ok(answer.results)
    }

    fn caller<'r>(&self, reg: &'r Registry, asker: &Asker, only: Option<&[String]>) -> Caller<'r> {
        let mut caller = match asker {
            Asker::Operator => Caller::operator(reg),
            Asker::Principal(who) => Caller {
                registry: reg,
                scope: reg.policy(self.store().clock()).scope_for(&who.principal),
            },
        };
        if let Some(only) = only {
            // Narrowing only: an unknown or ungranted id matches nothing.
            caller
                .scope
                .sources
                .retain(|s| only.iter().any(|o| o == s.as_str()));
        }
        caller
    }

    /// The one audit record of a query: who, through which interface, a
    /// hash of the text (never the text), what served it and what was returned.
    fn query_event(&self, asker: &Asker, d: &Delivered, via: Via) -> Event {
        let a = &d.answer;
        let (actor, subject) = match asker {
            Asker::Principal(who) => (who.name().to_string(), who.name().to_string()),
            Asker::Operator => (self.settings().actor.clone(), "(operator)".to_string()),
        };
        Event::new(&actor, "query", &subject)
            .detail("via", via.as_str())
            .detail("query_hash", ContentHash::of(a.query.as_bytes()).short())
            .detail("served_by", a.served_by.clone())
            .detail("results", a.results.len() + usize::from(a.package.is_some()))
            .detail(
                "result_ids",
                a.package
                    .iter()
                    .map(|x| x.id.as_str())
                    .chain(a.results.iter().map(|h| h.id.as_str()))
                    .collect::<Vec<_>>(),
            )
            .detail("tokens", a.tokens)
            .detail("delivered_tokens", d.delivered_tokens)
            .detail("withheld_by_policy", a.withheld_by_policy)
    }
}

/// Whole numbers as JSON Schema counts them: `2` and `2.0` alike (a
/// schema-valid `integer` must not be refused for its spelling).
pub mod whole {
    use serde::{Deserialize, Deserializer};

    fn from_number<T: TryFrom<u64>, E: serde::de::Error>(n: serde_json::Number) -> Result<T, E> {
        let v = match n.as_u64() {
            Some(v) => v,
            None => match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => f as u64,
                _ => return Err(E::custom(format!("expected a whole number, not {n}"))),
            },
        };
        T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
    }

    pub fn required<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        from_number(serde_json::Number::deserialize(d)?)
    }

    pub fn optional<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<Option<T>, D::Error> {
        match Option::<serde_json::Number>::deserialize(d)? {
            Some(n) => from_number(n).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<Validated> {
        serde_json::from_str::<ContextRequest>(json)
            .map_err(|e| Error::bad(e.to_string()))
            .and_then(ContextRequest::validate)
    }

    #[test]
    fn limits_are_refused_not_clamped() {
        assert!(req(r#"{"query":"x"}"#).is_ok());
        let v = req(r#"{"query":"x","limit":2.0,"max_tokens":300}"#).unwrap();
        assert_eq!((v.options.limit, v.options.max_tokens), (2, 300));
        for bad in [
            r#"{"query":"x","limit":0}"#,
            r#"{"query":"x","limit":101}"#,
            r#"{"query":"x","max_tokens":0}"#,
            r#"{"query":"x","max_tokens":200001}"#,
            r#"{"query":"   "}"#,
            r#"{"query":"x","limit":1.5}"#,
        ] {
            assert!(req(bad).is_err(), "{bad}");
        }
        let long = format!(r#"{{"query":"{}"}}"#, "é".repeat(MAX_QUERY_BYTES / 2 + 1));
        assert!(
            matches!(req(&long), Err(Error::TooLarge(_))),
            "bytes are counted, not characters"
        );
        assert!(req(r#"{"query":"x","bogus":true}"#).is_err());
        assert!(req(r#"{"query":"x","mode":"fuzzy"}"#).is_err());
        assert!(req(r#"{"query":"x","group_by":"folder"}"#).is_err());
        // Up to the limit a long query is accepted (and reduced later).
        let longest = format!(
            r#"{{"query":"{}","group_by":"file"}}"#,
            "a ".repeat(MAX_QUERY_BYTES / 2)
        );
        let v = req(&longest).unwrap();
        assert_eq!(v.options.group_by, retriever::GroupBy::File);
    }
}
