//! Version drift: what documents claim about dependency versions against
//! what the lockfiles pin. A doc saying "requires tokio 1.28" while
//! Cargo.lock pins tokio 1.41.0 has drifted; so has an ADR pinning
//! `react@17` in a repo on react 18.3.1. Only names the lockfiles know are
//! considered, so "Python 3.11" or "section 2.1" are never claims.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

use crate::lockfile::{DependencyMap, Pin};

/// A version a document states for a dependency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub name: String,
    /// `=` (this version), `>=`, `^` (same major) or `~` (same minor).
    pub op: String,
    pub version: String,
    pub file: String,
    pub line: usize,
    /// The words that made the claim.
    pub text: String,
}

/// A claim the lockfiles contradict.
#[derive(Clone, Debug, Serialize)]
pub struct Drift {
    pub claim: Claim,
    /// What the lockfiles pin instead.
    pub pinned: Vec<Pin>,
}

fn claim_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r#"(?i)(?:^|[^\w@/.-])(@?[a-z][\w.-]*(?:/[\w.-]+)*)(?:\s+version)?(?:\s*(==|>=|\^|~|@|=|:)\s*|\s+)["']?(?:v(?:ersion\s*)?)?(\d+(?:\.\d+){1,2})(?:\.(?:\s|$)|[^\w.]|$)"#,
        )
        .unwrap_or_else(|e| panic!("claim pattern: {e}"))
    })
}

/// Numeric components of a version (`v1.28.3-beta` -> [1, 28, 3]).
fn parts(v: &str) -> Vec<u64> {
    v.trim_start_matches(['v', 'V'])
        .split(['-', '+'])
        .next()
        .unwrap_or("")
        .split('.')
        .map_while(|p| p.parse().ok())
        .collect()
}

/// Whether `pinned` satisfies a claim of `version` with `op`.
pub fn satisfies(op: &str, version: &str, pinned: &str) -> bool {
    let (c, p) = (parts(version), parts(pinned));
    if c.is_empty() || p.is_empty() {
        return true;
    }
    let at_least = p >= c;
    match op {
        ">=" => at_least,
        "^" => at_least && p.first() == c.first(),
        "~" => at_least && p.get(..2) == c.get(..2),
        // A plain version names a release line: 1.28 covers 1.28.x.
        _ => p.len() >= c.len() && p[..c.len()] == c[..],
    }
}

/// The version claims in a document about dependencies `deps` knows.
pub fn claims(file: &str, text: &str, deps: &DependencyMap) -> Vec<Claim> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        for cap in claim_regex().captures_iter(line) {
            let (Some(name), Some(version)) = (cap.get(1), cap.get(3)) else {
                continue;
            };
            let name = name.as_str().trim_end_matches(['.', '-']);
            let known = !deps.lookup(name).is_empty() || !deps.lookup(&name.to_ascii_lowercase()).is_empty();
            if !known {
                continue;
            }
            let op = match cap.get(2).map(|m| m.as_str()) {
                Some(">=") => ">=",
                Some("^") => "^",
                Some("~") => "~",
                _ => "=",
            };
            out.push(Claim {
                name: name.to_string(),
                op: op.to_string(),
                version: version.as_str().to_string(),
                file: file.to_string(),
                line: i + 1,
                text: cap
                    .get(0)
                    .map_or("", |m| m.as_str())
                    .trim()
                    .trim_end_matches(['.', ',', ';', ')'])
                    .trim_start_matches(['(', ','])
                    .to_string(),
            });
        }
    }
    out
}

/// Claims in a document that no pinned version satisfies.
pub fn doc_drift(file: &str, text: &str, deps: &DependencyMap) -> Vec<Drift> {
    claims(file, text, deps)
        .into_iter()
        .filter_map(|claim| {
            let mut pinned: Vec<Pin> = deps.lookup(&claim.name).into_iter().cloned().collect();
            if pinned.is_empty() {
                pinned = deps
                    .lookup(&claim.name.to_ascii_lowercase())
                    .into_iter()
                    .cloned()
                    .collect();
            }
            let ok = pinned
                .iter()
                .any(|p| satisfies(&claim.op, &claim.version, &p.version));
            (!ok).then_some(Drift { claim, pinned })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lockfile::parse;

    fn deps() -> DependencyMap {
        let mut m = DependencyMap::default();
        m.add(
            parse(
                "Cargo.lock",
                "[[package]]\nname = \"tokio\"\nversion = \"1.41.0\"\n[[package]]\nname = \"serde\"\nversion = \"1.0.210\"\n",
            ),
            "Cargo.lock",
        );
        m.add(
            parse(
                "package-lock.json",
                r#"{"packages": {"node_modules/react": {"version": "18.3.1"}}}"#,
            ),
            "package-lock.json",
        );
        m
    }

    #[test]
    fn contradicted_claims_are_drift_and_satisfied_ones_are_not() {
        let doc = "# Runtime\n\nThe service requires tokio 1.28 and serde 1.0.\nFrontend: React 18.3.\nUpgrade to react@17.0.2 was reverted.\nPython 3.11, section 2.1.\ntokio = \"1.28\"\nserde >= 1.0.100\n";
        let drift = doc_drift("docs/runtime.md", doc, &deps());
        let found: Vec<(&str, &str, usize)> = drift
            .iter()
            .map(|d| (d.claim.name.as_str(), d.claim.version.as_str(), d.claim.line))
            .collect();
        assert_eq!(
            found,
            vec![("tokio", "1.28", 3), ("react", "17.0.2", 5), ("tokio", "1.28", 7)]
        );
        assert_eq!(drift[0].pinned[0].version, "1.41.0");
        assert_eq!(drift[0].pinned[0].file, "Cargo.lock");
        let all = claims("docs/runtime.md", doc, &deps());
        assert!(
            all.iter().any(|c| c.name == "React" && c.version == "18.3"),
            "{all:?}"
        );
        assert!(
            all.iter()
                .any(|c| c.name == "serde" && c.version == "1.0" && c.line == 3),
            "{all:?}"
        );
    }

    #[test]
    fn version_operators() {
        assert!(satisfies("=", "1.28", "1.28.3"));
        assert!(!satisfies("=", "1.28", "1.41.0"));
        assert!(satisfies(">=", "1.28", "1.41.0"));
        assert!(satisfies("^", "1.28", "1.41.0") && !satisfies("^", "1.28", "2.0.0"));
        assert!(satisfies("~", "1.28.1", "1.28.9") && !satisfies("~", "1.28.1", "1.29.0"));
        assert!(satisfies("=", "v1.9", "v1.9.0"));
    }
}
