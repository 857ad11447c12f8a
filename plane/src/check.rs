//! The CI gate: each source's repo context package and every topic
//! package (citations hashed as recorded, within max age, owner known)
//! validated, and version drift (package expectations and docs against
//! lockfiles) reported, reading the checkout on disk through the same walk
//! and policy as the indexer. The CLI's `check`, HTTP's `/v1/check` and
//! stewards' pages all run this.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use indexer::alignment::is_doc;
use indexer::chunk::language_of;
use packages::context::{Checks, FILE_NAME, validate};
use packages::drift::doc_drift;
use packages::lockfile::{DependencyMap, is_lockfile, parse};
use registry::Status;
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::{Plane, Who, topics};

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Finding {
    pub source: String,
    /// Path as given to annotations: relative to the working directory
    /// when possible.
    pub file: String,
    pub line: usize,
    pub code: String,
    pub message: String,
    /// `error` fails the check; `warning` does not.
    pub severity: &'static str,
}

/// The check over every approved source and topic package, or only what
/// `scope` may read (a source in scope; a topic package whose cited
/// sources all are; unparseable packages are for stewards). `None` is the
/// whole registry: the CLI and stewards.
pub fn report(
    plane: &Plane,
    reg: &registry::Registry,
    only: Option<&str>,
    scope: Option<&registry::Scope>,
) -> Result<CheckReport> {
    let s = plane.settings();
    let policy = reg.policy(plane.store().clock());
    if let Some(id) = only
        && !source_visible(reg, scope, id)
    {
        return Err(Error::NotFound("no such source".into()));
    }
    let known_owners: BTreeSet<String> = reg
        .sources
        .values()
        .map(|x| x.owner.clone())
        .chain(reg.principals.iter().map(|p| p.name.clone()))
        .collect();
    let cwd = std::env::current_dir().unwrap_or_default();
    let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let mut findings: Vec<Finding> = Vec::new();
    let mut checked = Vec::new();
    for source in reg
        .sources
        .values()
        .filter(|x| x.status == Status::Approved && scope.is_none_or(|sc| sc.permits(&x.id, x.tier)))
    {
        let id = source.id.as_str();
        if only.is_some_and(|want| want != id) {
            continue;
        }
        checked.push(id.to_string());
        let root = source.root(&reg.base_dir);
        let shown = |rel: &str| {
            let p = root.join(rel);
            p.strip_prefix(&cwd).unwrap_or(&p).display().to_string()
        };
        let files = match indexer::walk::list(&root) {
            Ok(f) => f,
            Err(e) => {
                findings.push(Finding {
                    source: id.into(),
                    file: shown(""),
                    line: 1,
                    code: "unavailable".into(),
                    message: format!("cannot read the source: {e}"),
                    severity: "error",
                });
                continue;
            }
        };
        // Only what the policy lets in is read, and never a file whose
        // path holds a secret.
        let paths = plane.path_redactor()?;
        let allowed: Vec<&indexer::walk::Found> = files
            .iter()
            .filter(|f| policy.decide_ingest(id, &f.rel).is_allowed() && paths.redact_path(&f.rel).is_none())
            .collect();
        let read =
            |f: &indexer::walk::Found| indexer::walk::read_text(f, s.max_file_bytes).ok().map(|(t, _)| t);
        let mut deps = DependencyMap::default();
        for f in allowed.iter().filter(|f| is_lockfile(&f.rel)) {
            if let Some(text) = read(f) {
                deps.add(parse(&f.rel, &text), &f.rel);
            }
        }
        let present: BTreeSet<&str> = allowed.iter().map(|f| f.rel.as_str()).collect();
        match allowed.iter().find(|f| f.rel == FILE_NAME) {
            None => findings.push(Finding {
                source: id.into(),
                file: shown(FILE_NAME),
                line: 1,
                code: "no_context_package".into(),
                message: format!("{id} has no {FILE_NAME}"),
                severity: "warning",
            }),
            Some(f) => 'package: {
                let text = match indexer::walk::read_text(f, s.max_file_bytes) {
                    Ok((t, _)) => t,
                    Err(skip) => {
                        // Binary, oversized or not a regular file: say so,
                        // rather than report every field as missing.
                        findings.push(Finding {
                            source: id.into(),
                            file: shown(FILE_NAME),
                            line: 1,
                            code: "unreadable".into(),
                            message: format!("{FILE_NAME} is not readable as text ({})", skip.code()),
                            severity: "error",
                        });
                        break 'package;
                    }
                };
                let exists = |p: &str| {
                    let rel = Path::new(p);
                    let safe = rel.components().all(|c| matches!(c, Component::Normal(_)));
                    let p = p.trim_end_matches('/');
                    safe && (present.contains(p) || present.iter().any(|f| f.starts_with(&format!("{p}/"))))
                };
                let checks = Checks {
                    known_owners: &known_owners,
                    path_exists: &exists,
                    today,
                    max_age_days: reg.freshness.max_age_days(source),
                    deps: &deps,
                };
                for p in validate(&text, &checks) {
                    findings.push(Finding {
                        source: id.into(),
                        file: shown(FILE_NAME),
                        line: p.line,
                        code: p.code.into(),
                        message: p.message,
                        severity: "error",
                    });
                }
            }
        }
        if !deps.is_empty() {
            for f in allowed.iter().filter(|f| is_doc(language_of(&f.rel))) {
                if let Some(text) = read(f) {
                    for d in doc_drift(&f.rel, &text, &deps) {
                        let pins: Vec<String> = d
                            .pinned
                            .iter()
                            .map(|p| format!("{} ({}:{})", p.version, p.file, p.line))
                            .collect();
                        findings.push(Finding {
                            source: id.into(),
                            file: shown(&f.rel),
                            line: d.claim.line,
                            code: "drift".into(),
                            message: format!(
                                "\"{}\" but the lockfile pins {}",
                                d.claim.text,
                                pins.join(", ")
                            ),
                            severity: "error",
                        });
                    }
                }
            }
        }
    }
    check_topics(only, s, reg, &policy, scope, &mut checked, &mut findings)?;
    Ok(CheckReport::new(checked, findings))
}

/// What `check` found: the sources and packages checked, and the findings.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckReport {
    pub ok: bool,
    pub errors: usize,
    pub sources: Vec<String>,
    pub findings: Vec<Finding>,
}

impl CheckReport {
    fn new(sources: Vec<String>, findings: Vec<Finding>) -> CheckReport {
        let errors = findings.iter().filter(|f| f.severity == "error").count();
        CheckReport {
            ok: errors == 0,
            errors,
            sources,
            findings,
        }
    }
}

/// Topic packages: parse, owner, every citation against the checkout,
/// max age. With `--source`, only packages citing that source.
/// Whether `id` names a registered source that `scope` may read (`None`:
/// any registered source).
pub fn source_visible(reg: &registry::Registry, scope: Option<&registry::Scope>, id: &str) -> bool {
    reg.sources
        .values()
        .any(|x| x.id.as_str() == id && scope.is_none_or(|sc| sc.permits(&x.id, x.tier)))
}

fn check_topics(
    only: Option<&str>,
    s: &crate::Settings,
    reg: &registry::Registry,
    policy: &registry::Policy<'_>,
    scope: Option<&registry::Scope>,
    checked: &mut Vec<String>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    let loaded = topics::load_dir(&s.topics_dir)?;
    if loaded.is_empty() {
        return Ok(());
    }
    let mut reader = topics::DiskReader::new(reg, policy, s)?;
    for l in &loaded {
        let file = topics::shown(&l.file);
        let mut push = |source: &str, line: usize, code: &str, message: String, severity: &'static str| {
            findings.push(Finding {
                source: source.into(),
                file: file.clone(),
                line,
                code: code.into(),
                message,
                severity,
            })
        };
        match &l.parsed {
            Err(problems) => {
                // Unparsed packages cite nothing known: stewards only.
                if only.is_some() || scope.is_some() {
                    continue;
                }
                if !checked.iter().any(|c| c == "topics") {
                    checked.push("topics".into());
                }
                for p in problems {
                    push("topics", p.line, p.code, p.message.clone(), "error");
                }
            }
            Ok(p) => {
                if let Some(want) = only
                    && !p.citations.iter().any(|c| c.source == want)
                {
                    continue;
                }
                if scope.is_some_and(|sc| retriever::readable_by(reg, sc, p).is_none()) {
                    continue;
                }
                let label = format!("topic:{}", p.id);
                checked.push(label.clone());
                if let Some(x) = topics::owner_problem(reg, p) {
                    push(&label, x.line, x.code, x.message, "error");
                }
                let v = topics::verify_on_disk(reg, &mut reader, p, today);
                if p.draft {
                    push(
                        &label,
                        1,
                        "draft",
                        format!(
                            "draft: not served until a steward reviews it (`ctxplane packages rehash {}`)",
                            p.id
                        ),
                        "warning",
                    );
                    for r in v
                        .reasons
                        .iter()
                        .filter(|r| r.code == "citation_denied" || r.code == "stale_citation")
                    {
                        push(&label, r.line, r.code, r.message.clone(), "error");
                    }
                } else {
                    for r in &v.reasons {
                        push(&label, r.line, r.code, r.message.clone(), "error");
                    }
                }
                for n in &v.notes {
                    push(&label, n.line, n.code, n.message.clone(), "warning");
                }
            }
        }
    }
    Ok(())
}

impl Plane {
    /// The check as `who` may see it: stewards the whole registry; CI and
    /// developers what their scope covers (a source outside it is the same
    /// 404 as none). `None`: the operator at the CLI, the whole registry.
    pub fn check(&self, who: Option<&Who>, only: Option<&str>) -> Result<CheckReport> {
        let reg = match who {
            Some(w) => w.registry.clone(),
            None => self.registry()?,
        };
        let scope = who.map(|w| w.scope(self)).filter(|sc| !sc.oversees_registry());
        report(self, &reg, only, scope.as_ref())
    }
}

impl Plane {
    /// The CI side of snapshots: every `ctxplane:snap-…` cited in `text`
    /// (a pull request description, commit messages) resolved for `asker`.
    /// A citation that no longer holds, is unknown or malformed is an
    /// error; one that holds with warnings (past max age, drift) a warning.
    /// `file` names the text in the findings. `sources` in the report lists
    /// the snapshots checked.
    pub fn check_snapshots(
        &self,
        asker: &crate::query::Asker,
        text: &str,
        file: &str,
    ) -> Result<CheckReport> {
        let mut findings = Vec::new();
        let mut checked = Vec::new();
        for id in crate::snapshots::cited_in(text) {
            let line = text
                .lines()
                .position(|l| l.contains(&format!("{}{id}", crate::snapshots::CITE_PREFIX)))
                .map_or(1, |i| i + 1);
            let finding = |code: &str, message: String, severity| Finding {
                source: id.clone(),
                file: file.to_string(),
                line,
                code: code.to_string(),
                message,
                severity,
            };
            checked.push(id.clone());
            match self.snapshot(asker, &id) {
                Err(Error::NotFound(_)) => findings.push(finding(
                    "unknown_snapshot",
                    format!(
                        "{id}: no such snapshot (unknown, pruned after {} days, or not visible to this caller)",
                        self.settings().snapshot_retention_days
                    ),
                    "error",
                )),
                Err(e) => return Err(e),
                Ok(r) => {
                    let failing = r.results.iter().any(|x| !x.holds) || !r.record_intact;
                    if r.verdict != "holds" {
                        findings.push(finding(
                            if failing { "snapshot_stale" } else { "snapshot_warning" },
                            format!("{id} {}: {}", r.verdict, r.reasons.join("; ")),
                            if failing { "error" } else { "warning" },
                        ));
                    }
                }
            }
        }
        Ok(CheckReport::new(checked, findings))
    }
}
