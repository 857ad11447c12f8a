//! Path rules: the globs used for include, exclude, never-ingest and exception
//! scopes, with one set of semantics everywhere.
//!
//! * Paths are relative to the source root and use `/`.
//! * `*` and `?` never cross `/`; `**` does.
//! * A pattern with no `/` matches a file or directory name at any depth
//!   (`*.pem`, `.env`); a leading `/` anchors it at the root; a trailing `/`
//!   matches a directory only.
//! * A rule that matches a directory matches everything beneath it, so
//!   `secrets/` covers `a/secrets/b/c.txt`.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// Where a rule came from, reported in deny reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleOrigin {
    /// ctxplane's built-in never-ingest list.
    Builtin,
    /// The registry's global `[never_ingest]` table.
    Global,
    /// The source's own entry.
    Source,
}

#[derive(Clone, Debug)]
pub struct PathRule {
    /// The pattern as the steward wrote it.
    pub pattern: String,
    pub origin: RuleOrigin,
    dir_only: bool,
}

/// A compiled list of rules that reports which rule matched first.
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<PathRule>,
    set: GlobSet,
}

impl PartialEq for RuleSet {
    fn eq(&self, other: &Self) -> bool {
        self.patterns().eq(other.patterns())
    }
}

/// Compiles one pattern; the error is a sentence for the steward.
fn compile(pattern: &str, case_insensitive: bool) -> Result<(Glob, bool), String> {
    let trimmed = pattern.trim();
    if trimmed.is_empty() {
        return Err("empty glob pattern".into());
    }
    if trimmed != pattern {
        return Err(format!("glob {pattern:?} has leading or trailing spaces"));
    }
    if pattern.contains('\\') {
        return Err(format!(
            "glob {pattern:?} contains '\\'; paths use '/' and escapes are not supported"
        ));
    }
    let dir_only = pattern.ends_with('/') && pattern != "/";
    let body = pattern.trim_end_matches('/');
    let anchored = body.starts_with('/');
    let body = body.trim_start_matches('/');
    if body.is_empty() {
        return Err(format!("glob {pattern:?} matches nothing"));
    }
    if body.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("glob {pattern:?} may not contain '.' or '..' segments"));
    }
    let full = if anchored || body.contains('/') {
        body.to_string()
    } else {
        format!("**/{body}")
    };
    let glob = GlobBuilder::new(&full)
        .literal_separator(true)
        .case_insensitive(case_insensitive)
        .backslash_escape(false)
        .empty_alternates(false)
        .build()
        .map_err(|e| format!("glob {pattern:?} does not parse: {}", e.kind()))?;
    Ok((glob, dir_only))
}

/// Validates a pattern without keeping it.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    compile(pattern, false).map(|_| ())
}

impl RuleSet {
    pub fn empty() -> Self {
        RuleSet {
            rules: Vec::new(),
            set: GlobSet::empty(),
        }
    }

    /// Builds a set; `case_insensitive` is used for deny rules, so `.ENV`
    /// on a case-insensitive file system is caught like `.env`.
    pub fn new<'a>(
        patterns: impl IntoIterator<Item = (&'a str, RuleOrigin)>,
        case_insensitive: bool,
    ) -> Result<Self, String> {
        let mut builder = GlobSetBuilder::new();
        let mut rules = Vec::new();
        for (pattern, origin) in patterns {
            let (glob, dir_only) = compile(pattern, case_insensitive)?;
            builder.add(glob);
            rules.push(PathRule {
                pattern: pattern.to_string(),
                origin,
                dir_only,
            });
        }
        let set = builder.build().map_err(|e| e.to_string())?;
        Ok(RuleSet { rules, set })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.pattern.as_str())
    }

    pub fn rules(&self) -> &[PathRule] {
        &self.rules
    }

    /// The first rule (in declaration order) matching `path` or one of its
    /// ancestor directories. `path` must already be a validated relative path.
    pub fn first_match(&self, path: &str) -> Option<&PathRule> {
        if self.rules.is_empty() {
            return None;
        }
        let mut best: Option<usize> = None;
        let mut hits = Vec::new();
        // Every ancestor directory, then the path itself (which may be a file).
        let mut candidates: Vec<(&str, bool)> =
            path.match_indices('/').map(|(i, _)| (&path[..i], true)).collect();
        candidates.push((path, false));
        for (candidate, is_dir) in candidates {
            self.set.matches_into(candidate, &mut hits);
            for &i in &hits {
                if self.rules[i].dir_only && !is_dir {
                    continue;
                }
                best = Some(best.map_or(i, |b| b.min(i)));
            }
        }
        best.map(|i| &self.rules[i])
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.first_match(path).is_some()
    }
}

/// Checks that `path` is a clean relative path inside a source: no leading
/// `/`, no `.`/`..`/empty segments, no backslashes or NULs.
pub fn check_relative_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    if path.starts_with('/') {
        return Err(format!(
            "path {path:?} is absolute; paths are relative to the source root"
        ));
    }
    if path.contains('\0') {
        return Err("path contains a NUL byte".into());
    }
    if path.contains('\\') {
        return Err(format!("path {path:?} contains '\\'; paths use '/'"));
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(format!("path {path:?} has an empty segment")),
            "." | ".." => return Err(format!("path {path:?} has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> RuleSet {
        RuleSet::new(patterns.iter().map(|p| (*p, RuleOrigin::Global)), false).unwrap()
    }

    #[test]
    fn bare_names_match_at_any_depth() {
        let s = set(&["*.pem", ".env"]);
        assert!(s.is_match("a.pem"));
        assert!(s.is_match("deep/dir/a.pem"));
        assert!(s.is_match(".env"));
        assert!(s.is_match("svc/.env"));
        assert!(!s.is_match("svc/.env.example"));
        assert!(!s.is_match("a.pem.txt"));
    }

    #[test]
    fn directory_rules_cover_their_contents() {
        let s = set(&["secrets/"]);
        assert!(s.is_match("secrets/x"));
        assert!(s.is_match("a/secrets/b/c.txt"));
        assert!(!s.is_match("secrets"), "a file named secrets is not a directory");
        let named = set(&[".ssh"]);
        assert!(named.is_match("home/.ssh/id"));
    }

    #[test]
    fn anchored_and_path_patterns() {
        let s = set(&["/build", "docs/*.md"]);
        assert!(s.is_match("build/out.o"));
        assert!(!s.is_match("x/build/out.o"));
        assert!(s.is_match("docs/a.md"));
        assert!(!s.is_match("docs/sub/a.md"), "* does not cross /");
        assert!(set(&["docs/**"]).is_match("docs/sub/a.md"));
    }

    #[test]
    fn first_match_follows_declaration_order() {
        let s = set(&["*.md", "docs/"]);
        assert_eq!(s.first_match("docs/a.md").unwrap().pattern, "*.md");
    }

    #[test]
    fn bad_patterns_are_rejected_with_reasons() {
        for bad in ["", " x", "a[", "../x", "a\\b", "{a"] {
            assert!(check_pattern(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn relative_paths_are_checked() {
        assert!(check_relative_path("src/main.rs").is_ok());
        for bad in ["", "/etc/passwd", "a/../b", "./a", "a//b", "a\\b", "a\0b"] {
            assert!(check_relative_path(bad).is_err(), "{bad:?} accepted");
        }
    }
}
