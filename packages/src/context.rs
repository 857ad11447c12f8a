//! The repo context package: one `context-package.toml` at the root of a
//! repository, telling an agent what the service is for and how to work in
//! it. Every problem is reported with its line, so CI can annotate it.
//!
//! ```toml
//! purpose = "Card payments: authorise, capture, refund."
//! boundaries = ["Never stores card numbers; tokens only."]
//! owners = ["team-payments"]
//! escalation = ["#payments-oncall", "rivera"]
//! last_updated = 2026-11-01
//! updated_by = "rivera"
//!
//! [architecture]
//! constraints = ["Postgres is the only datastore (ADR 0001)."]
//! invariants = ["Ledger entries are append-only."]
//!
//! [dependencies]              # version expectations, checked against lockfiles
//! tokio = "1.41"
//!
//! [tests]
//! critical_paths = ["src/ledger.rs"]
//! coverage = "Ledger and capture paths fully covered."
//! integration = ["tests/"]
//!
//! [release]
//! conventions = "Tag vX.Y.Z from main; canary 10% for an hour."
//! rollback = "Redeploy the previous tag; migrations are backward compatible."
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::drift::satisfies;
use crate::lockfile::DependencyMap;

/// The file name of a repo context package, at the source root.
pub const FILE_NAME: &str = "context-package.toml";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub line: usize,
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextPackage {
    pub purpose: Option<Spanned<String>>,
    #[serde(default)]
    pub boundaries: Vec<String>,
    #[serde(default)]
    pub owners: Vec<Spanned<String>>,
    #[serde(default)]
    pub escalation: Vec<String>,
    pub last_updated: Option<Spanned<toml::value::Datetime>>,
    pub updated_by: Option<Spanned<String>>,
    #[serde(default)]
    pub architecture: Option<Spanned<Architecture>>,
    #[serde(default)]
    pub dependencies: BTreeMap<String, Spanned<String>>,
    pub tests: Option<Spanned<Tests>>,
    pub release: Option<Spanned<Release>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub invariants: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tests {
    #[serde(default)]
    pub critical_paths: Vec<Spanned<String>>,
    pub coverage: Option<String>,
    #[serde(default)]
    pub integration: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    pub conventions: Option<String>,
    pub rollback: Option<String>,
}

/// What validation checks a package against.
pub struct Checks<'a> {
    /// Owners the registry knows (source owners and principal names).
    pub known_owners: &'a BTreeSet<String>,
    /// Whether a path (relative to the source root) exists.
    pub path_exists: &'a dyn Fn(&str) -> bool,
    pub today: jiff::civil::Date,
    pub max_age_days: u32,
    pub deps: &'a DependencyMap,
}

impl std::fmt::Debug for Checks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checks")
            .field("today", &self.today)
            .field("max_age_days", &self.max_age_days)
            .finish_non_exhaustive()
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and validates a context package; an empty list means it passes.
pub fn validate(text: &str, checks: &Checks<'_>) -> Vec<Problem> {
    let pkg: ContextPackage = match toml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            return vec![Problem {
                line: e.span().map_or(1, |s| line_of(text, s.start)),
                code: "malformed",
                message: e.message().trim().to_string(),
            }];
        }
    };
    let mut out = Vec::new();
    let mut problem =
        |line: usize, code: &'static str, message: String| out.push(Problem { line, code, message });
    let end = text.lines().count().max(1);
    let blank = |s: &str| s.trim().is_empty();

    match &pkg.purpose {
        Some(p) if !blank(p.get_ref()) => {}
        Some(p) => problem(
            line_of(text, p.span().start),
            "missing",
            "purpose is empty".into(),
        ),
        None => problem(
            1,
            "missing",
            "purpose is required: what the service is for".into(),
        ),
    }
    let list_missing = |v: &Vec<String>| v.iter().all(|s| blank(s));
    if list_missing(&pkg.boundaries) {
        problem(
            1,
            "missing",
            "boundaries are required: what the service must never do or own".into(),
        );
    }
    if list_missing(&pkg.escalation) {
        problem(
            1,
            "missing",
            "escalation is required: who to page, in order".into(),
        );
    }
    if pkg.owners.is_empty() {
        problem(1, "missing", "owners are required".into());
    }
    for o in &pkg.owners {
        if !checks.known_owners.contains(o.get_ref().trim()) {
            problem(
                line_of(text, o.span().start),
                "unknown_owner",
                format!(
                    "owner {:?} is not an owner or principal in the registry",
                    o.get_ref()
                ),
            );
        }
    }
    match &pkg.updated_by {
        Some(u) if !blank(u.get_ref()) => {}
        _ => problem(1, "missing", "updated_by is required".into()),
    }
    match &pkg.last_updated {
        None => problem(
            1,
            "missing",
            "last_updated is required (a date, e.g. 2026-11-01)".into(),
        ),
        Some(d) => match d.get_ref().date {
            None => problem(
                line_of(text, d.span().start),
                "malformed",
                "last_updated must be a date".into(),
            ),
            Some(date) => {
                let parsed = jiff::civil::Date::new(date.year as i16, date.month as i8, date.day as i8);
                match parsed {
                    Ok(date) => {
                        let age = (checks.today - date).get_days();
                        if age > i32::try_from(checks.max_age_days).unwrap_or(i32::MAX) {
                            problem(
                                line_of(text, d.span().start),
                                "stale",
                                format!(
                                    "last updated {date}, {age} days ago; the source's tier allows {} days",
                                    checks.max_age_days
                                ),
                            );
                        } else if age < 0 {
                            problem(
                                line_of(text, d.span().start),
                                "malformed",
                                format!("last_updated {date} is in the future"),
                            );
                        }
                    }
                    Err(e) => problem(line_of(text, d.span().start), "malformed", e.to_string()),
                }
            }
        },
    }
    match &pkg.architecture {
        Some(a)
            if !a.get_ref().constraints.iter().all(|s| blank(s))
                || !a.get_ref().invariants.iter().all(|s| blank(s)) => {}
        Some(a) => problem(
            line_of(text, a.span().start),
            "missing",
            "[architecture] needs constraints or invariants".into(),
        ),
        None => problem(
            end,
            "missing",
            "[architecture] is required (constraints, invariants)".into(),
        ),
    }
    if pkg.dependencies.is_empty() {
        problem(
            end,
            "missing",
            "[dependencies] is required: the versions the code expects".into(),
        );
    }
    for (name, want) in &pkg.dependencies {
        let pins = checks.deps.lookup(name);
        let line = line_of(text, want.span().start);
        let (op, version) = match want.get_ref().trim() {
            v if v.starts_with(">=") => (">=", v[2..].trim()),
            v if v.starts_with('^') => ("^", v[1..].trim()),
            v if v.starts_with('~') => ("~", v[1..].trim()),
            v => ("=", v.trim_start_matches('=').trim()),
        };
        if pins.is_empty() {
            if !checks.deps.is_empty() {
                problem(
                    line,
                    "drift",
                    format!("expects {name} {} but no lockfile pins it", want.get_ref()),
                );
            }
        } else if !pins.iter().any(|p| satisfies(op, version, &p.version)) {
            let pinned: Vec<String> = pins
                .iter()
                .map(|p| format!("{} ({}:{})", p.version, p.file, p.line))
                .collect();
            problem(
                line,
                "drift",
                format!(
                    "expects {name} {} but the lockfile pins {}",
                    want.get_ref(),
                    pinned.join(", ")
                ),
            );
        }
    }
    match &pkg.tests {
        None => problem(
            end,
            "missing",
            "[tests] is required (critical_paths, coverage, integration)".into(),
        ),
        Some(t) => {
            let t_line = line_of(text, t.span().start);
            let t = t.get_ref();
            if t.critical_paths.is_empty() {
                problem(t_line, "missing", "tests.critical_paths is required".into());
            }
            if t.coverage.as_deref().is_none_or(blank) {
                problem(t_line, "missing", "tests.coverage is required".into());
            }
            if t.integration.is_empty() {
                problem(
                    t_line,
                    "missing",
                    "tests.integration is required: where integration/contract tests live".into(),
                );
            }
            for p in t.critical_paths.iter().chain(&t.integration) {
                if !(checks.path_exists)(p.get_ref()) {
                    problem(
                        line_of(text, p.span().start),
                        "missing_path",
                        format!("{:?} does not exist in the source", p.get_ref()),
                    );
                }
            }
        }
    }
    match &pkg.release {
        None => problem(
            end,
            "missing",
            "[release] is required (conventions, rollback)".into(),
        ),
        Some(r) => {
            let line = line_of(text, r.span().start);
            if r.get_ref().conventions.as_deref().is_none_or(blank) {
                problem(line, "missing", "release.conventions is required".into());
            }
            if r.get_ref().rollback.as_deref().is_none_or(blank) {
                problem(line, "missing", "release.rollback is required".into());
            }
        }
    }
    out.sort_by_key(|p| p.line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::parse;

    const GOOD: &str = r##"purpose = "Ledger service: double-entry postings for every capture."
boundaries = ["Reads card tokens, never card numbers."]
owners = ["team-payments"]
escalation = ["#ledger-oncall", "okafor"]
last_updated = 2026-11-01
updated_by = "okafor"

[architecture]
invariants = ["Postings balance to zero per transaction."]

[dependencies]
tokio = "1.41"
serde = ">=1.0.100"

[tests]
critical_paths = ["src/ledger.rs"]
coverage = "Posting and reversal paths fully covered."
integration = ["tests/"]

[release]
conventions = "Weekly release train."
rollback = "Roll back the train; postings are idempotent."
"##;

    fn run(text: &str, today: &str, max_age: u32) -> Vec<(usize, &'static str)> {
        let owners: BTreeSet<String> = ["team-payments".to_string()].into();
        let mut deps = DependencyMap::default();
        deps.add(
            parse(
                "Cargo.lock",
                "[[package]]\nname = \"tokio\"\nversion = \"1.41.0\"\n[[package]]\nname = \"serde\"\nversion = \"1.0.200\"\n",
            ),
            "Cargo.lock",
        );
        let exists = |p: &str| matches!(p, "src/ledger.rs" | "tests/");
        let checks = Checks {
            known_owners: &owners,
            path_exists: &exists,
            today: today.parse().unwrap(),
            max_age_days: max_age,
            deps: &deps,
        };
        validate(text, &checks)
            .into_iter()
            .map(|p| (p.line, p.code))
            .collect()
    }

    #[test]
    fn a_complete_package_passes() {
        assert_eq!(run(GOOD, "2026-11-23", 90), vec![]);
    }

    #[test]
    fn every_planted_problem_is_found_where_it_is() {
        let bad = GOOD
            .replace("team-payments", "team-nobody")
            .replace("tokio = \"1.41\"", "tokio = \"1.28\"")
            .replace("src/ledger.rs", "src/gone.rs")
            .replace(
                "rollback = \"Roll back the train; postings are idempotent.\"\n",
                "",
            )
            .replace("escalation = [\"#ledger-oncall\", \"okafor\"]\n", "");
        assert_eq!(
            run(&bad, "2026-11-23", 90),
            vec![
                (1, "missing"),
                (3, "unknown_owner"),
                (11, "drift"),
                (15, "missing_path"),
                (19, "missing")
            ]
        );
        assert_eq!(run(GOOD, "2027-06-01", 90), vec![(5, "stale")]);
        assert_eq!(run("purpose = [\n", "2026-11-23", 90)[0].1, "malformed");
        assert_eq!(run("purpos = \"x\"\n", "2026-11-23", 90)[0], (1, "malformed"));
    }
}
