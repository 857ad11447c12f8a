//! Read models for the people who run the plane: one row per source with
//! its freshness, index and last walk; a source's whole page; topic
//! packages by state; the activity log with per-principal totals;
//! principals with what each may read; and the two steward actions the
//! CLI had to itself until now (adding a principal, asking the policy
//! about paths). The console renders these; the CLI lists packages with
//! the same function. Every function here filters by the caller's scope:
//! stewards see the registry, developers only what they may read.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use registry::audit::{Entry, Event};
use registry::edit::{Edit, NewPrincipal};
use registry::{ContentHash, Decision, Registry, Role, Scope, SourceId, Tier};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::stewardship::EditOutcome;
use crate::topics::{DiskReader, load_dir, owner_problem, status_name, verify_on_disk};
use crate::views::{ExceptionView, PrincipalView};
use crate::{Plane, Who};

/// Audit entries read back for pass history and activity totals.
pub const ACTIVITY_WINDOW: usize = 5_000;
/// Most paths one policy question may ask about.
pub const MAX_DECIDE_PATHS: usize = 100;

/// Files refused in a walk, by reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Denied {
    pub count: u64,
    pub examples: Vec<String>,
}

/// One source as a steward's list shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SourceRow {
    pub id: String,
    pub kind: String,
    pub tier: u8,
    pub owner: String,
    pub status: String,
    pub description: Option<String>,
    /// Freshness status (`fresh`, `behind`, `stale`, `drifted`, ...), when known.
    pub freshness: Option<String>,
    pub last_pass: Option<Timestamp>,
    pub chunks: u64,
    pub vectors: u64,
    /// Share of its chunks with a vector (0 to 1).
    pub coverage: f64,
    /// Files refused by the last pass that walked it, by reason.
    pub denied: BTreeMap<String, Denied>,
    /// Secrets redacted in what is indexed (findings logged, never values).
    pub redacted: u64,
    pub drift: usize,
}

/// A pass as it concerned one source (from its `index.*` audit entry).
#[derive(Clone, Debug, Serialize)]
pub struct PassSummary {
    pub seq: u64,
    pub ts: Timestamp,
    pub actor: String,
    pub detail: Value,
}

/// Everything a source's page shows.
#[derive(Debug, Serialize)]
pub struct SourceDetail {
    pub row: SourceRow,
    pub location: String,
    pub root: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub never_ingest: Vec<String>,
    pub last_change: Option<registry::model::StatusChange>,
    pub freshness: Option<indexer::freshness::SourceFreshness>,
    /// Newest first.
    pub passes: Vec<PassSummary>,
    pub packages: Vec<PackageRow>,
    pub findings: Vec<crate::check::Finding>,
    pub exceptions: Vec<Value>,
    /// Audit entries about it, newest first (stewards only).
    pub history: Vec<Entry>,
}

/// A topic package's state.
#[derive(Clone, Debug, Serialize)]
pub struct PackageRow {
    pub id: String,
    pub title: String,
    pub owner: String,
    /// `fresh`, `stale`, `moved` (citations that moved), `draft` or `invalid`.
    pub status: String,
    pub reviewed_at: Option<String>,
    pub reviewed_by: Option<String>,
    pub expires_on: Option<String>,
    pub citations: usize,
    pub questions: usize,
    pub sources: Vec<String>,
    /// What made it stale or moved, as `line: message`.
    pub changes: Vec<String>,
    pub file: String,
}

/// A filter over the audit log.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ActivityFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub source: Option<String>,
    /// Most entries returned (default 200, at most 1000).
    pub limit: Option<usize>,
}

/// Queries served per principal and per way they were served.
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueryTotals {
    pub principal: String,
    /// `served_by` (topic_package, hybrid, lexical, ...) -> queries.
    pub served_by: BTreeMap<String, u64>,
    pub queries: u64,
    pub tokens: u64,
}

#[derive(Debug, Serialize)]
pub struct Activity {
    /// Newest first.
    pub entries: Vec<Entry>,
    /// Entries read (the newest `ACTIVITY_WINDOW`).
    pub scanned: usize,
    pub queries: Vec<QueryTotals>,
    pub tokens_served: u64,
}

/// A principal and what it may read now.
#[derive(Debug, Serialize)]
pub struct PrincipalRow<'a> {
    #[serde(flatten)]
    pub view: PrincipalView<'a>,
    pub reads: Vec<String>,
}

/// A principal to add; the token is generated and shown once.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrincipalRequest {
    /// Lowercase letters, digits, `-`, `_` and `.`; at most 64 bytes.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub name: String,
    /// agent, developer, ci or steward.
    #[schemars(regex(pattern = r"^(agent|developer|ci|steward)$"))]
    pub role: String,
    /// Highest tier it may read: 1 to 4.
    #[serde(deserialize_with = "crate::query::whole::required")]
    #[schemars(range(min = 1, max = 4))]
    pub tier_ceiling: u8,
    /// Source ids it may read (or `all_sources`).
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$")))]
    pub sources: Vec<String>,
    #[serde(default)]
    pub all_sources: bool,
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub description: Option<String>,
}

/// A policy question: what is decided for these paths of a source now.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9._-]{0,63}$"))]
    pub source: String,
    /// Paths relative to the source root: 1 to 100.
    #[schemars(length(min = 1, max = 100))]
    pub paths: Vec<String>,
}

/// A new principal's name, token (shown once, stored only as a hash) and audit record.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PrincipalAdded {
    pub principal: String,
    pub token: String,
    pub audit_seq: u64,
    pub registry_version: String,
}

fn visible(scope: &Scope, id: &str, tier: u8) -> bool {
    SourceId::new(id.to_string()).is_ok_and(|s| Tier::new(tier).is_ok_and(|t| scope.may_oversee(&s, t)))
}

/// A fresh principal token: 32 random bytes, hex, `ctx_` prefixed.
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::internal_msg(format!("no randomness for a token: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("ctx_{hex}"))
}

pub fn parse_role(s: &str) -> Result<Role> {
    Ok(match s {
        "agent" => Role::Agent,
        "steward" => Role::Steward,
        "ci" => Role::Ci,
        "developer" => Role::Developer,
        other => {
            return Err(Error::bad(format!(
                "role {other:?} is not one of agent, steward, ci, developer"
            )));
        }
    })
}

/// Redaction findings logged per source (`index/redactions.jsonl`).
fn redactions_by_source(data_dir: &std::path::Path) -> BTreeMap<String, u64> {
    use std::io::BufRead;
    let mut out = BTreeMap::new();
    let Ok(f) = std::fs::File::open(data_dir.join("index/redactions.jsonl")) else {
        return out;
    };
    for line in std::io::BufReader::new(f)
        .lines()
        .map_while(std::result::Result::ok)
    {
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && let Some(s) = v["source"].as_str()
        {
            *out.entry(s.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// The newest pass entry per source, and each source's passes newest first.
fn passes_of(entries: &[Entry]) -> BTreeMap<String, Vec<PassSummary>> {
    let mut out: BTreeMap<String, Vec<PassSummary>> = BTreeMap::new();
    for e in entries.iter().rev().filter(|e| e.action.starts_with("index.")) {
        let Some(map) = e.details.as_object() else {
            continue;
        };
        for (k, v) in map {
            if let Some(id) = k.strip_prefix("source:") {
                out.entry(id.to_string()).or_default().push(PassSummary {
                    seq: e.seq,
                    ts: e.ts,
                    actor: e.actor.clone(),
                    detail: v.clone(),
                });
            }
        }
    }
    out
}

fn denied_of(detail: &Value) -> BTreeMap<String, Denied> {
    let mut out = BTreeMap::new();
    if let Some(map) = detail["denied"].as_object() {
        for (reason, t) in map {
            out.insert(
                reason.clone(),
                Denied {
                    count: t["count"].as_u64().unwrap_or(0),
                    examples: t["examples"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                },
            );
        }
    }
    out
}

impl Plane {
    fn recent_audit(&self) -> Result<Vec<Entry>> {
        Ok(self.store().audit().tail_entries(ACTIVITY_WINDOW)?)
    }

    /// Every source the caller may oversee, with freshness, index and last walk.
    pub fn source_rows(&self, who: &Who) -> Result<Vec<SourceRow>> {
        let entries = self.recent_audit()?;
        self.rows_with(who, &passes_of(&entries))
    }

    fn rows_with(&self, who: &Who, passes: &BTreeMap<String, Vec<PassSummary>>) -> Result<Vec<SourceRow>> {
        let reg = &who.registry;
        let scope = who.scope(self);
        let fresh = self.freshness(Some(who), None)?;
        let fresh: BTreeMap<&str, &indexer::freshness::SourceFreshness> =
            fresh.sources.iter().map(|f| (f.source.as_str(), f)).collect();
        let retriever = self.retriever().ok();
        let redacted = redactions_by_source(self.store().data_dir());
        let mut rows = Vec::new();
        for s in reg.sources.values() {
            let id = s.id.as_str();
            if !visible(&scope, id, s.tier.get()) {
                continue;
            }
            let f = fresh.get(id);
            let (chunks, vectors, coverage) = match &retriever {
                Some(r) => {
                    let d = r.dense_status_within(&BTreeSet::from([id.to_string()]), 4);
                    (d.chunks, d.vectors, d.coverage)
                }
                None => (0, 0, 0.0),
            };
            let last = passes.get(id).and_then(|p| p.first());
            rows.push(SourceRow {
                id: id.to_string(),
                kind: s.kind.as_str().to_string(),
                tier: s.tier.get(),
                owner: s.owner.clone(),
                status: s.status.as_str().to_string(),
                description: s.description.clone(),
                freshness: f.map(|f| f.status.as_str().to_string()),
                last_pass: f.and_then(|f| f.last_pass),
                chunks,
                vectors: vectors as u64,
                coverage,
                denied: last.map(|p| denied_of(&p.detail)).unwrap_or_default(),
                redacted: redacted.get(id).copied().unwrap_or(0),
                drift: f.map_or(0, |f| f.drift.len()),
            });
        }
        Ok(rows)
    }

    /// One source's page: policy, passes, denials, drift, packages, check
    /// findings, exceptions and (for stewards) its audit history. A source
    /// the caller may not see is the same 404 as an unknown one.
    pub fn source_detail(&self, who: &Who, id: &str) -> Result<SourceDetail> {
        let reg = who.registry.clone();
        let scope = who.scope(self);
        let src = reg
            .sources
            .values()
            .find(|s| s.id.as_str() == id && visible(&scope, id, s.tier.get()))
            .ok_or_else(|| Error::NotFound("no such source".into()))?;
        let entries = self.recent_audit()?;
        let mut passes = passes_of(&entries);
        let row = self
            .rows_with(who, &passes)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::NotFound("no such source".into()))?;
        let freshness = self.freshness(Some(who), Some(id))?.sources.into_iter().next();
        let packages = self
            .packages(who)?
            .into_iter()
            .filter(|p| p.sources.iter().any(|s| s == id))
            .collect();
        let findings = self
            .check(Some(who), Some(id))
            .map(|r| r.findings)
            .unwrap_or_default();
        let now = self.store().clock().now();
        let exceptions = reg
            .exceptions
            .iter()
            .filter(|x| x.source.as_str() == id)
            .filter_map(|x| serde_json::to_value(ExceptionView::new(x, now)).ok())
            .collect();
        let history = if scope.oversees_registry() {
            entries
                .iter()
                .rev()
                .filter(|e| e.subject == id || e.details.get(format!("source:{id}")).is_some())
                .take(100)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Ok(SourceDetail {
            location: src.location.clone(),
            root: src.root(&reg.base_dir).display().to_string(),
            include: src.include.patterns().map(str::to_string).collect(),
            exclude: src.exclude.patterns().map(str::to_string).collect(),
            never_ingest: src.never_ingest.patterns().map(str::to_string).collect(),
            last_change: src.last_change.clone(),
            freshness,
            passes: passes
                .remove(id)
                .unwrap_or_default()
                .into_iter()
                .take(20)
                .collect(),
            packages,
            findings,
            exceptions,
            history,
            row,
        })
    }

    /// Topic packages the caller may see (every cited source in scope;
    /// unparseable ones for stewards), stale and moved first.
    pub fn packages(&self, who: &Who) -> Result<Vec<PackageRow>> {
        let s = self.settings();
        let reg: &Registry = &who.registry;
        let scope = who.scope(self);
        let policy = reg.policy(self.store().clock());
        let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
        let loaded = load_dir(&s.topics_dir)?;
        let mut reader = DiskReader::new(reg, &policy, s)?;
        let mut rows = Vec::new();
        for l in &loaded {
            let file = crate::topics::shown(&l.file);
            match &l.parsed {
                Ok(p) => {
                    let sources: BTreeSet<String> = p.citations.iter().map(|c| c.source.clone()).collect();
                    let all_visible = sources.iter().all(|id| {
                        reg.sources
                            .values()
                            .any(|x| x.id.as_str() == id && visible(&scope, id, x.tier.get()))
                    });
                    if !all_visible {
                        continue;
                    }
                    let v = verify_on_disk(reg, &mut reader, p, today);
                    let owner = owner_problem(reg, p);
                    let status = if owner.is_some() {
                        "invalid"
                    } else if v.status == packages::topic::PackageStatus::Fresh && !v.notes.is_empty() {
                        "moved"
                    } else {
                        status_name(v.status)
                    };
                    let changes = v
                        .reasons
                        .iter()
                        .chain(&v.notes)
                        .chain(owner.as_ref())
                        .map(|x| format!("line {}: {}", x.line, x.message))
                        .collect();
                    rows.push(PackageRow {
                        id: p.id.clone(),
                        title: p.title.clone(),
                        owner: p.owner.clone(),
                        status: status.to_string(),
                        reviewed_at: p.reviewed_at.map(|d| d.to_string()),
                        reviewed_by: p.reviewed_by.clone(),
                        expires_on: v.expires_on.map(|d| d.to_string()),
                        citations: p.citations.len(),
                        questions: p.questions.len(),
                        sources: sources.into_iter().collect(),
                        changes,
                        file,
                    });
                }
                Err(problems) if scope.oversees_registry() => rows.push(PackageRow {
                    id: l
                        .file
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default(),
                    title: String::new(),
                    owner: String::new(),
                    status: "invalid".into(),
                    reviewed_at: None,
                    reviewed_by: None,
                    expires_on: None,
                    citations: 0,
                    questions: 0,
                    sources: Vec::new(),
                    changes: problems
                        .iter()
                        .map(|x| format!("line {}: {}", x.line, x.message))
                        .collect(),
                    file,
                }),
                Err(_) => {}
            }
        }
        let rank = |s: &str| match s {
            "invalid" => 0,
            "stale" => 1,
            "moved" => 2,
            "draft" => 3,
            _ => 4,
        };
        rows.sort_by(|a, b| rank(&a.status).cmp(&rank(&b.status)).then(a.id.cmp(&b.id)));
        Ok(rows)
    }

    /// The audit log, newest first, filtered; with per-principal query
    /// totals over the entries read.
    pub fn activity(&self, f: &ActivityFilter) -> Result<Activity> {
        let entries = self.recent_audit()?;
        let limit = f.limit.unwrap_or(200).clamp(1, 1000);
        fn nonempty(o: &Option<String>) -> Option<&str> {
            o.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        let (actor, action, source) = (nonempty(&f.actor), nonempty(&f.action), nonempty(&f.source));
        let mut totals: BTreeMap<String, QueryTotals> = BTreeMap::new();
        for e in entries.iter().filter(|e| e.action == "query") {
            let t = totals.entry(e.actor.clone()).or_insert_with(|| QueryTotals {
                principal: e.actor.clone(),
                ..Default::default()
            });
            t.queries += 1;
            t.tokens += e.details["tokens"].as_u64().unwrap_or(0);
            let by = e.details["served_by"].as_str().unwrap_or("unknown").to_string();
            *t.served_by.entry(by).or_insert(0) += 1;
        }
        let tokens_served = totals.values().map(|t| t.tokens).sum();
        let matched = entries
            .iter()
            .rev()
            .filter(|e| actor.is_none_or(|a| e.actor == a))
            .filter(|e| action.is_none_or(|a| e.action == a || e.action.starts_with(&format!("{a}."))))
            .filter(|e| {
                source.is_none_or(|s| e.subject == s || e.details.get(format!("source:{s}")).is_some())
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(Activity {
            entries: matched,
            scanned: entries.len(),
            queries: totals.into_values().collect(),
            tokens_served,
        })
    }

    /// Principals with what each may read now (never a token).
    pub fn principals<'a>(&self, who: &'a Who) -> Vec<PrincipalRow<'a>> {
        let policy = who.registry.policy(self.store().clock());
        who.registry
            .principals
            .iter()
            .map(|p| PrincipalRow {
                view: PrincipalView::new(p),
                reads: policy
                    .scope_for(p)
                    .sources
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            })
            .collect()
    }

    /// Adds a principal with a fresh token, returned once; the registry
    /// keeps only its hash.
    pub fn add_principal(&self, who: &Who, r: PrincipalRequest) -> Result<PrincipalAdded> {
        let token = new_token()?;
        let mut sources = Vec::new();
        for id in &r.sources {
            sources.push(SourceId::new(id.clone()).map_err(Error::BadRequest)?);
        }
        if r.description.as_ref().is_some_and(|d| d.chars().count() > 500) {
            return Err(Error::bad("description is at most 500 characters"));
        }
        if r.all_sources && !sources.is_empty() {
            return Err(Error::bad("give sources or all_sources, not both"));
        }
        let edited: EditOutcome = self.edit(
            who.name(),
            Edit::AddPrincipal(NewPrincipal {
                name: r.name.trim().to_string(),
                role: parse_role(r.role.trim())?,
                token_hash: ContentHash::of(token.as_bytes()),
                tier_ceiling: Tier::new(r.tier_ceiling).map_err(Error::BadRequest)?,
                sources,
                all_sources: r.all_sources,
                description: r
                    .description
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty()),
                limits: registry::Limits::default(),
            }),
        )?;
        Ok(PrincipalAdded {
            principal: edited.subject,
            token,
            audit_seq: edited.audit_seq,
            registry_version: edited.registry_version,
        })
    }

    /// The policy's decision for each path of `source` now, audited as
    /// `policy.decide` (ids only, never file content).
    pub fn decide(&self, actor: &str, source: &str, paths: &[String]) -> Result<Vec<Decision>> {
        if paths.is_empty() || paths.len() > MAX_DECIDE_PATHS {
            return Err(Error::bad(format!("ask about 1 to {MAX_DECIDE_PATHS} paths")));
        }
        let id = SourceId::new(source.to_string()).map_err(Error::BadRequest)?;
        let reg = self.registry()?;
        if !reg.sources.values().any(|s| s.id == id) {
            return Err(Error::NotFound("no such source".into()));
        }
        decide(self.store(), &reg, actor, source, paths)
    }
}

/// The policy's decisions for `paths` of `source` under `reg` now, audited
/// as `policy.decide` before they are returned (the CLI and the plane).
pub fn decide(
    store: &registry::RegistryStore,
    reg: &Registry,
    actor: &str,
    source: &str,
    paths: &[String],
) -> Result<Vec<Decision>> {
    let policy = reg.policy(store.clock());
    let decisions: Vec<_> = paths.iter().map(|p| policy.decide_ingest(source, p)).collect();
    let allowed = decisions.iter().filter(|d| d.is_allowed()).count();
    store.record(vec![
        Event::new(actor, "policy.decide", source)
            .detail("paths", paths.len())
            .detail("allowed", allowed)
            .detail("denied", paths.len() - allowed)
            .detail(
                "decision_ids",
                decisions.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            )
            .detail("registry_version", reg.version.to_hex()),
    ])?;
    Ok(decisions)
}
