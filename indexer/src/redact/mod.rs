//! Secret redaction: every file is redacted before any of it is chunked,
//! indexed or embedded.
//!
//! Rules use one format, compatible with gitleaks' TOML: a regex, an
//! optional capture group holding the secret, keywords that must appear for
//! the rule to be tried, a minimum Shannon entropy, and allowlists
//! (regexes over the secret, the match or the line; stopwords; paths).
//! ctxplane's own rules ship in that format (`rules/builtin.toml`), and a
//! user's existing gitleaks config loads the same way.
//!
//! A detected secret is replaced by `[REDACTED:<rule-id>]`; if it spans
//! lines, the line breaks are kept so line numbers stay true. Findings carry
//! the rule, place and a keyed hash of the value, never the value.

mod rules;

pub use rules::{LoadError, RuleSet};

use std::ops::Range;

/// One detected secret.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub rule_id: String,
    /// 1-based line where the secret starts.
    pub line: u32,
    /// 1-based column (in bytes) where the secret starts.
    pub column: u32,
    /// Keyed blake3 of the secret, so the same secret can be recognised
    /// across files without being stored.
    pub keyed_hash: String,
    #[serde(skip)]
    pub span: Range<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redacted {
    pub text: String,
    pub findings: Vec<Finding>,
}

/// Redacts with a rule set and a key for the findings' hashes.
#[derive(Debug, Clone)]
pub struct Redactor {
    rules: RuleSet,
    key: [u8; 32],
}

impl Redactor {
    pub fn new(rules: RuleSet, key: [u8; 32]) -> Self {
        Redactor { rules, key }
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Redacts `text`; `path` (relative, `/`-separated) lets path allowlists apply.
    /// The path with its secrets redacted, if a rule finds one in it (a
    /// file named after a credential must not reach any store by its name).
    pub fn redact_path(&self, rel: &str) -> Option<String> {
        let r = self.redact(rel, None);
        (!r.findings.is_empty()).then_some(r.text)
    }

    pub fn redact(&self, text: &str, path: Option<&str>) -> Redacted {
        let mut spans = self.rules.find(text, path);
        // Earliest first; on overlap keep the one that starts first (and is
        // longest among those), then extend it over what overlaps it.
        spans.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(b.1.end.cmp(&a.1.end)));
        let mut merged: Vec<(usize, Range<usize>)> = Vec::new();
        for (rule, span) in spans {
            match merged.last_mut() {
                Some((_, last)) if span.start < last.end => last.end = last.end.max(span.end),
                _ => merged.push((rule, span)),
            }
        }
        let mut out = String::with_capacity(text.len());
        let mut findings = Vec::with_capacity(merged.len());
        let mut cursor = 0;
        let mut line = 1u32;
        let mut line_start = 0usize;
        for (rule, span) in merged {
            let before = &text[cursor..span.start];
            for (i, _) in before.match_indices('\n') {
                line += 1;
                line_start = cursor + i + 1;
            }
            out.push_str(before);
            let id = self.rules.rule_id(rule);
            let secret = &text[span.clone()];
            out.push_str("[REDACTED:");
            out.push_str(id);
            out.push(']');
            let breaks = secret.matches('\n').count();
            for _ in 0..breaks {
                out.push('\n');
            }
            findings.push(Finding {
                rule_id: id.to_string(),
                line,
                column: (span.start - line_start + 1) as u32,
                keyed_hash: blake3::keyed_hash(&self.key, secret.as_bytes()).to_hex()[..32].to_string(),
                span: span.clone(),
            });
            if let Some(i) = secret.rfind('\n') {
                line += breaks as u32;
                line_start = span.start + i + 1;
            }
            cursor = span.end;
        }
        out.push_str(&text[cursor..]);
        Redacted { text: out, findings }
    }
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = std::collections::HashMap::<char, usize>::new();
    let mut n = 0usize;
    for c in s.chars() {
        *counts.entry(c).or_default() += 1;
        n += 1;
    }
    let n = n as f64;
    counts.values().fold(0.0, |acc, &c| {
        let p = c as f64 / n;
        acc - p * p.log2()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(RuleSet::builtin(), [7u8; 32])
    }

    #[test]
    fn entropy_is_bits_per_char() {
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("ab") - 1.0).abs() < 1e-9);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }

    #[test]
    fn line_structure_is_kept() {
        let text = "x = 1\nkey: |\n-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naGIOcl3r9aXz1Q6+OcDK1pJHLN2d0YTp1wnfyV1UVCr3+3lSEzDQ7IHBQGX5Gw7T\n-----END RSA PRIVATE KEY-----\ny = 2\n";
        let r = redactor().redact(text, None);
        assert_eq!(r.text.lines().count(), text.lines().count(), "{}", r.text);
        assert!(r.text.contains("[REDACTED:private-key]"), "{}", r.text);
        assert!(r.text.ends_with("y = 2\n"));
        assert!(!r.text.contains("MIIEow"));
        assert_eq!(r.findings[0].line, 3);
        assert_eq!(r.findings[0].column, 1);
    }

    #[test]
    fn findings_hash_the_value_with_the_key() {
        let text = "aws_access_key_id = AKIAZ7VRSQ5TLOWQG2UX\n";
        let a = Redactor::new(RuleSet::builtin(), [1u8; 32]).redact(text, None);
        let b = Redactor::new(RuleSet::builtin(), [2u8; 32]).redact(text, None);
        assert_eq!(a.findings.len(), 1);
        assert_ne!(a.findings[0].keyed_hash, b.findings[0].keyed_hash);
        assert!(!a.findings[0].keyed_hash.contains("AKIA"));
        assert_eq!(a.text, "aws_access_key_id = [REDACTED:aws-access-key-id]\n");
    }

    #[test]
    fn plain_code_is_left_alone() {
        let text = "fn main() {\n    let token = lexer.next_token();\n    let password_len = 12;\n}\n";
        let r = redactor().redact(text, None);
        assert_eq!(r.text, text, "{:?}", r.findings);
    }
}
