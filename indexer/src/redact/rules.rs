//! Loading and running redaction rules in gitleaks' TOML format.

use std::ops::Range;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::bytes::{Regex, RegexBuilder};
use serde::Deserialize;

use super::shannon_entropy;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: rule {rule:?}: {message}")]
    Rule {
        origin: String,
        rule: String,
        message: String,
    },
}

#[derive(Deserialize)]
struct RawFile {
    #[serde(default)]
    rules: Vec<RawRule>,
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
    // Accepted for compatibility; they do not change how text is redacted.
    #[allow(dead_code)]
    title: Option<String>,
    #[serde(rename = "minVersion")]
    #[allow(dead_code)]
    min_version: Option<String>,
    extend: Option<toml::Value>,
}

#[derive(Deserialize)]
struct RawRule {
    id: String,
    #[allow(dead_code)]
    description: Option<String>,
    regex: Option<String>,
    #[serde(rename = "secretGroup")]
    secret_group: Option<usize>,
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    path: Option<String>,
    #[allow(dead_code)]
    #[serde(default)]
    tags: Vec<String>,
    allowlist: Option<RawAllowlist>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
}

#[derive(Deserialize, Default)]
struct RawAllowlist {
    #[allow(dead_code)]
    description: Option<String>,
    condition: Option<String>,
    #[serde(rename = "regexTarget")]
    regex_target: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    commits: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Secret,
    Match,
    Line,
}

#[derive(Clone, Debug)]
struct Allowlist {
    all_must_match: bool,
    target: Target,
    regexes: Vec<Regex>,
    stopwords: Vec<String>,
    paths: Vec<Regex>,
}

impl Allowlist {
    fn compile(raw: RawAllowlist, origin: &str, rule: &str) -> Result<Self, LoadError> {
        let err = |message: String| LoadError::Rule {
            origin: origin.into(),
            rule: rule.into(),
            message,
        };
        let all_must_match = match raw.condition.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("OR") => false,
            Some("AND") => true,
            Some(other) => return Err(err(format!("allowlist condition {other:?} is not OR or AND"))),
        };
        let target = match raw.regex_target.as_deref() {
            None | Some("secret") => Target::Secret,
            Some("match") => Target::Match,
            Some("line") => Target::Line,
            Some(other) => return Err(err(format!("regexTarget {other:?} is not secret, match or line"))),
        };
        let compile = |r: &String| compile_regex(r).map_err(|e| err(format!("allowlist regex: {e}")));
        Ok(Allowlist {
            all_must_match,
            target,
            regexes: raw.regexes.iter().map(compile).collect::<Result<_, _>>()?,
            stopwords: raw.stopwords.iter().map(|s| s.to_lowercase()).collect(),
            paths: raw.paths.iter().map(compile).collect::<Result<_, _>>()?,
        })
    }

    /// Whether this allowlist lets the candidate through as "not a secret".
    fn allows(&self, secret: &str, matched: &str, line: &str, path: Option<&str>) -> bool {
        let target = match self.target {
            Target::Secret => secret,
            Target::Match => matched,
            Target::Line => line,
        };
        let mut checks = Vec::with_capacity(3);
        if !self.regexes.is_empty() {
            checks.push(self.regexes.iter().any(|r| r.is_match(target.as_bytes())));
        }
        if !self.stopwords.is_empty() {
            let lower = secret.to_lowercase();
            checks.push(self.stopwords.iter().any(|w| lower.contains(w.as_str())));
        }
        if !self.paths.is_empty() {
            checks.push(path.is_some_and(|p| self.paths.iter().any(|r| r.is_match(p.as_bytes()))));
        }
        if self.all_must_match {
            !checks.is_empty() && checks.iter().all(|c| *c)
        } else {
            checks.iter().any(|c| *c)
        }
    }
}

#[derive(Clone, Debug)]
struct Rule {
    id: String,
    regex: Regex,
    secret_group: Option<usize>,
    entropy: Option<f64>,
    /// Lowercase; empty means the rule is always tried.
    keywords: Vec<String>,
    /// Only files whose path matches (gitleaks `path` together with `regex`).
    path: Option<Regex>,
    allowlists: Vec<Allowlist>,
    /// Which of the set's global allowlist groups applies: the one from the
    /// file this rule came from, so one file's allowlists never weaken
    /// another file's rules.
    global: usize,
}

/// A compiled set of rules with a keyword prefilter.
#[derive(Clone, Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Global allowlists, one group per rule file merged into the set.
    global: Vec<Vec<Allowlist>>,
    /// Keyword automaton; pattern i belongs to rule `keyword_rule[i]`.
    keywords: Option<AhoCorasick>,
    keyword_rule: Vec<usize>,
    /// How many rules have keywords.
    keyword_rules: usize,
    always: Vec<usize>,
    /// Rules in the file that match on paths only, which redaction cannot use.
    pub skipped_path_only: Vec<String>,
    /// blake3 over the rule files' text and how they were combined: when
    /// it changes, indexed content must be redacted again.
    fingerprint: [u8; 32],
}

const BUILTIN: &str = include_str!("../../rules/builtin.toml");

/// What the engine does beyond the rules (structure views, copies, encoded
/// values); part of every fingerprint, so a change to it re-redacts
/// indexed content as a change of rules does. Bump it with such a change.
const ENGINE: &str = "redaction-engine-2: views, copies, encoded, resume-after-secret, per-file allowlists";

impl RuleSet {
    /// ctxplane's own rules.
    pub fn builtin() -> RuleSet {
        RuleSet::from_toml(BUILTIN, "built-in rules")
            .unwrap_or_else(|e| panic!("built-in rules are broken: {e}"))
    }

    /// Rules from gitleaks-format TOML. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<RuleSet, LoadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| {
                    let before = &text[..s.start.min(text.len())];
                    (
                        before.matches('\n').count() + 1,
                        before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                    )
                })
                .unwrap_or((1, 1));
            LoadError::Parse {
                origin: format!("{origin}:{line}:{col}"),
                message: e.message().trim().to_string(),
            }
        })?;
        if raw.extend.is_some() {
            return Err(LoadError::Parse {
                origin: origin.into(),
                message: "[extend] is not supported; merge the rules into one file".into(),
            });
        }
        let mut global = Vec::new();
        for a in raw.allowlist.into_iter().chain(raw.allowlists) {
            global.push(Allowlist::compile(a, origin, "(global allowlist)")?);
        }
        let mut rules = Vec::new();
        let mut skipped_path_only = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for r in raw.rules {
            let err = |message: String| LoadError::Rule {
                origin: origin.into(),
                rule: r.id.clone(),
                message,
            };
            if !seen.insert(r.id.clone()) {
                return Err(err("duplicate rule id".into()));
            }
            let Some(pattern) = &r.regex else {
                if r.path.is_some() {
                    skipped_path_only.push(r.id.clone());
                    continue;
                }
                return Err(err("a rule needs a regex".into()));
            };
            let regex = compile_regex(pattern).map_err(|e| err(format!("regex does not compile: {e}")))?;
            if let Some(g) = r.secret_group
                && g >= regex.captures_len()
            {
                return Err(err(format!(
                    "secretGroup {g} but the regex has {} groups",
                    regex.captures_len() - 1
                )));
            }
            let path = r
                .path
                .as_deref()
                .map(compile_regex)
                .transpose()
                .map_err(|e| err(format!("path regex: {e}")))?;
            let mut allowlists = Vec::new();
            for a in r.allowlist.into_iter().chain(r.allowlists) {
                allowlists.push(Allowlist::compile(a, origin, &r.id)?);
            }
            rules.push(Rule {
                id: r.id,
                regex,
                secret_group: r.secret_group,
                entropy: r.entropy,
                keywords: r
                    .keywords
                    .iter()
                    .map(|k| k.to_lowercase())
                    .filter(|k| !k.is_empty())
                    .collect(),
                path,
                allowlists,
                global: 0,
            });
        }
        Ok(RuleSet::assemble(
            rules,
            vec![global],
            skipped_path_only,
            *blake3::Hasher::new()
                .update(ENGINE.as_bytes())
                .update(text.as_bytes())
                .finalize()
                .as_bytes(),
        ))
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rule_id(&self, i: usize) -> &str {
        &self.rules[i].id
    }

    /// Adds another set's rules to this one (e.g. a user's gitleaks file to
    /// the built-ins). Both sets' rules run, even two with one id, and each
    /// set's global allowlists apply to its own rules only: the union finds
    /// at least what either set finds alone.
    pub fn merged(self, other: RuleSet) -> RuleSet {
        let mut rules = self.rules;
        let shift = self.global.len();
        rules.extend(other.rules.into_iter().map(|mut r| {
            r.global += shift;
            r
        }));
        let mut global = self.global;
        global.extend(other.global);
        let mut skipped = self.skipped_path_only;
        skipped.extend(other.skipped_path_only);
        let mut h = blake3::Hasher::new();
        h.update(b"merged")
            .update(&self.fingerprint)
            .update(&other.fingerprint);
        RuleSet::assemble(rules, global, skipped, *h.finalize().as_bytes())
    }

    /// The rules whose id satisfies `keep`, with the same global allowlists.
    pub fn subset(&self, keep: impl Fn(&str) -> bool) -> RuleSet {
        let rules: Vec<Rule> = self.rules.iter().filter(|r| keep(&r.id)).cloned().collect();
        let mut h = blake3::Hasher::new();
        h.update(b"subset").update(&self.fingerprint);
        for r in &rules {
            h.update(r.id.as_bytes()).update(b"\0");
        }
        RuleSet::assemble(rules, self.global.clone(), Vec::new(), *h.finalize().as_bytes())
    }

    /// Identifies the rules' content (hex blake3); equal sets from equal files.
    pub fn fingerprint(&self) -> String {
        blake3::Hash::from_bytes(self.fingerprint).to_hex()[..16].to_string()
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// Builds the keyword prefilter over `rules`.
    fn assemble(
        rules: Vec<Rule>,
        global: Vec<Vec<Allowlist>>,
        skipped_path_only: Vec<String>,
        fingerprint: [u8; 32],
    ) -> RuleSet {
        let mut patterns = Vec::new();
        let mut keyword_rule = Vec::new();
        let mut always = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            if r.keywords.is_empty() {
                always.push(i);
            }
            for k in &r.keywords {
                patterns.push(k.clone());
                keyword_rule.push(i);
            }
        }
        // Keywords are plain strings, so building the automaton cannot fail;
        // if it ever did, every rule is tried, which is slower but safe.
        let keywords = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .ok()
            .filter(|_| !patterns.is_empty());
        if keywords.is_none() {
            always = (0..rules.len()).collect();
        }
        RuleSet {
            keyword_rules: rules.len() - always.len(),
            rules,
            global,
            keywords,
            keyword_rule,
            always,
            skipped_path_only,
            fingerprint,
        }
    }

    /// Every (rule index, secret byte range) found in `text`.
    pub(crate) fn find(&self, text: &str, path: Option<&str>) -> Vec<(usize, Range<usize>)> {
        let mut candidates = vec![false; self.rules.len()];
        for &i in &self.always {
            candidates[i] = true;
        }
        if let Some(ac) = &self.keywords {
            // Stop reading once every rule with keywords is a candidate.
            let mut left = self.keyword_rules;
            for m in ac.find_overlapping_iter(text) {
                let rule = &mut candidates[self.keyword_rule[m.pattern().as_usize()]];
                if !*rule {
                    *rule = true;
                    left -= 1;
                    if left == 0 {
                        break;
                    }
                }
            }
        }
        let mut found = Vec::new();
        let bytes = text.as_bytes();
        for (i, rule) in self.rules.iter().enumerate() {
            if !candidates[i] {
                continue;
            }
            // A path-scoped rule applies to files on its paths, and to text
            // whose path is unknown (redaction errs towards hiding).
            if let (Some(p), Some(path)) = (&rule.path, path)
                && !p.is_match(path.as_bytes())
            {
                continue;
            }
            // Each search resumes where the last secret ended, not where its
            // match ended: a rule's closing delimiter (a newline, a quote) is
            // also the opening boundary the next secret's match needs, and an
            // allowlisted match must not hide what follows it either.
            let mut at = 0;
            while at <= bytes.len() {
                let Some(caps) = rule.regex.captures_at(bytes, at) else {
                    break;
                };
                let Some(whole) = caps.get(0) else { break };
                let secret = match rule.secret_group {
                    Some(g) => caps.get(g),
                    // As gitleaks: the first group that took part, else the whole match.
                    None => (1..caps.len()).find_map(|g| caps.get(g).filter(|m| !m.is_empty())),
                }
                .unwrap_or(whole);
                let resume = if secret.end() > at {
                    secret.end()
                } else {
                    whole.end()
                };
                at = if resume > at { resume } else { at + 1 };
                // Byte regexes can stop inside a UTF-8 sequence; widen to
                // whole characters so the replacement keeps the text valid.
                let range = widen_to_chars(text, secret.range());
                let whole_range = widen_to_chars(text, whole.range());
                if range.is_empty() {
                    continue;
                }
                let s = &text[range.clone()];
                if let Some(min) = rule.entropy {
                    if shannon_entropy(s) <= min {
                        continue;
                    }
                    // Generic rules also need a digit, which filters words and identifiers.
                    if rule.id.starts_with("generic") && !s.bytes().any(|b| b.is_ascii_digit()) {
                        continue;
                    }
                }
                let line = line_around(text, whole_range.clone());
                let matched = &text[whole_range];
                let allowed = self.global[rule.global]
                    .iter()
                    .chain(&rule.allowlists)
                    .any(|a| a.allows(s, matched, line, path));
                if !allowed {
                    found.push((i, range));
                }
            }
        }
        found
    }
}

/// Compiles a rule pattern with RE2's meaning: `\\w`, `\\d`, `\\s` and `\\b` are
/// ASCII, `.` is any character, and matching runs over bytes.
fn compile_regex(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(&from_go_syntax(pattern))
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
}

pub(super) fn widen_to_chars(text: &str, mut r: Range<usize>) -> Range<usize> {
    while r.start > 0 && !text.is_char_boundary(r.start) {
        r.start -= 1;
    }
    while r.end < text.len() && !text.is_char_boundary(r.end) {
        r.end += 1;
    }
    r
}

/// The full line(s) containing `range`.
fn line_around(text: &str, range: Range<usize>) -> &str {
    let start = text[..range.start].rfind('\n').map_or(0, |i| i + 1);
    let end = text[range.end..].find('\n').map_or(text.len(), |i| range.end + i);
    &text[start..end]
}

/// Rewrites the one place where Go's RE2 syntax (gitleaks' dialect) and
/// Rust's differ in practice: a `{` that does not open a counted repetition
/// is a literal in Go and an error in Rust, so it is escaped.
fn from_go_syntax(pattern: &str) -> String {
    let bytes = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\\' => {
                let end = (i + 2).min(bytes.len());
                out.push_str(&pattern[i..end]);
                i = end;
                continue;
            }
            b'[' if !in_class => in_class = true,
            b']' if in_class => in_class = false,
            b'{' if !in_class && !opens_repetition(&bytes[i..]) => {
                out.push_str("\\{");
                i += 1;
                continue;
            }
            _ => {}
        }
        let ch_len = pattern[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&pattern[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// `{n}`, `{n,}` or `{n,m}` at the start of `rest`.
fn opens_repetition(rest: &[u8]) -> bool {
    let Some(close) = rest.iter().position(|&b| b == b'}') else {
        return false;
    };
    let inner = &rest[1..close];
    let mut parts = inner.splitn(2, |&b| b == b',');
    let first = parts.next().unwrap_or_default();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    !first.is_empty() && digits(first) && parts.next().is_none_or(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_literal_braces_are_escaped() {
        assert_eq!(from_go_syntax(r"^\$(?:\d+|{\d+})$"), r"^\$(?:\d+|\{\d+})$");
        assert_eq!(from_go_syntax(r"a{2,5}b{3}c{1,}"), r"a{2,5}b{3}c{1,}");
        assert_eq!(from_go_syntax(r"[{}]\{x"), r"[{}]\{x");
        assert_eq!(from_go_syntax(r"^\{\{[ \t]*x}}$"), r"^\{\{[ \t]*x}}$");
        assert_eq!(from_go_syntax("{{ x }}"), r"\{\{ x }}");
    }
}
