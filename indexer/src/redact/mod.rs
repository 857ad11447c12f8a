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
//! Rules run over the file as written and over views of it in which a
//! value sits next to its name although the file puts it elsewhere (YAML
//! blocks, name/value lists, HTML attributes, table cells, concatenated
//! literals, shell continuations; see `structure`). Base64 runs that decode
//! to text in which a rule finds a secret are secrets too.
//!
//! A detected secret is replaced by `[REDACTED:<rule-id>]`; if it spans
//! lines, the line breaks are kept so line numbers stay true. Once a value
//! is found, every other copy of it in the file is replaced as well, and a
//! caller can carry `KnownSecrets` (keyed hashes, never values) from file to
//! file so a copy in a file where no rule fires is replaced too. Findings
//! carry the rule, place and a keyed hash of the value, never the value.

mod rules;
mod structure;

pub use rules::{LoadError, RuleSet};

use std::collections::{BTreeSet, HashSet};
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};

/// Shortest value whose other copies are redacted wherever they appear:
/// shorter ones are too likely to be ordinary words elsewhere.
const MIN_COPY_LEN: usize = 8;

/// Rule id of a copy found only because its value was found in an earlier file.
pub const REPEATED_SECRET: &str = "repeated-secret";

/// Keyed hashes (and lengths) of values found so far, so that later files'
/// copies of them are redacted. Never holds a value.
#[derive(Debug, Default, Clone)]
pub struct KnownSecrets {
    hashes: HashSet<[u8; 32]>,
    lengths: BTreeSet<usize>,
}

impl KnownSecrets {
    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    /// Adds what `other` knows (both made with the same redactor's key).
    pub fn extend(&mut self, other: &KnownSecrets) {
        self.hashes.extend(other.hashes.iter().copied());
        self.lengths.extend(other.lengths.iter().copied());
    }

    fn insert(&mut self, key: &[u8; 32], value: &str) {
        self.hashes
            .insert(*blake3::keyed_hash(key, value.as_bytes()).as_bytes());
        self.lengths.insert(value.len());
    }

    /// Ranges of `text` whose keyed hash is known. Candidates are the words
    /// between blanks, quotes and brackets, and their parts between the
    /// separators values sit between (`=`, `:`, `@`, `/`, `,`, `;`, `&`).
    fn copies_in(&self, key: &[u8; 32], text: &str) -> Vec<Range<usize>> {
        let (Some(&min), Some(&max)) = (self.lengths.first(), self.lengths.last()) else {
            return Vec::new();
        };
        let hard = |b: u8| b.is_ascii_whitespace() || b"'\"`<>()[]{}".contains(&b);
        let soft = |b: u8| b"=:@/,;&?#".contains(&b);
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if hard(bytes[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < bytes.len() && !hard(bytes[i]) {
                i += 1;
            }
            let word = start..i;
            if word.len() < min {
                continue;
            }
            let starts =
                std::iter::once(word.start).chain((word.clone()).filter(|&k| soft(bytes[k])).map(|k| k + 1));
            let ends: Vec<usize> = (word.clone())
                .filter(|&k| soft(bytes[k]))
                .chain(std::iter::once(word.end))
                .collect();
            for a in starts {
                for &b in ends.iter().filter(|&&b| b > a) {
                    let n = b - a;
                    if n < min || n > max || !self.lengths.contains(&n) || !text.is_char_boundary(a) {
                        continue;
                    }
                    let candidate = &text[a..b];
                    if self
                        .hashes
                        .contains(blake3::keyed_hash(key, candidate.as_bytes()).as_bytes())
                    {
                        out.push(a..b);
                    }
                }
            }
        }
        out
    }
}

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

    /// Whether `text` holds a copy of a value in `known`. When it holds
    /// none, redacting it knowing `known` gives exactly what redacting it
    /// knowing nothing gives (`known` is only used to find such copies), so
    /// a result computed without `known` can be kept.
    pub fn mentions_known(&self, text: &str, known: &KnownSecrets) -> bool {
        !known.is_empty() && !known.copies_in(&self.key, text).is_empty()
    }

    pub fn redact(&self, text: &str, path: Option<&str>) -> Redacted {
        self.redact_remembering(text, path, &mut KnownSecrets::default())
    }

    /// Redacts `text`, also every copy of a value in `known`, and adds the
    /// values found here to `known` (as keyed hashes).
    pub fn redact_remembering(&self, text: &str, path: Option<&str>, known: &mut KnownSecrets) -> Redacted {
        let mut spans = self.find(text, path, known);
        // Earliest first; on overlap keep the one that starts first (and is
        // longest among those), then extend it over what overlaps it.
        spans.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(b.1.end.cmp(&a.1.end)));
        let mut merged: Vec<(&str, Range<usize>)> = Vec::new();
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
            let id = rule;
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

impl Redactor {
    /// Every (rule id, byte range) to redact: rule matches on the text and
    /// on its structure views, encoded secrets, known values' copies, and
    /// then every copy of each value found.
    fn find<'a>(
        &'a self,
        text: &str,
        path: Option<&str>,
        known: &mut KnownSecrets,
    ) -> Vec<(&'a str, Range<usize>)> {
        let id = |i: usize| self.rules.rule_id(i);
        let mut spans: Vec<(&str, Range<usize>)> = self
            .rules
            .find(text, path)
            .into_iter()
            .map(|(i, r)| (id(i), r))
            .collect();
        for view in structure::views(text, path) {
            for (i, r) in self.rules.find(&view.text, path) {
                if let Some(r) = view.to_file(r) {
                    spans.push((id(i), rules::widen_to_chars(text, r)));
                }
            }
        }
        for (range, decoded) in structure::encoded_texts(text) {
            if let Some((i, _)) = self.rules.find(&decoded, path).first() {
                spans.push((id(*i), range));
            }
        }
        spans.extend(
            known
                .copies_in(&self.key, text)
                .into_iter()
                .map(|r| (REPEATED_SECRET, r)),
        );
        // Every copy of every value found, wherever it is in the file: in a
        // comment, twice on a line, in a form no rule recognises.
        let mut values: Vec<(&str, &str)> = Vec::new();
        let mut seen = HashSet::new();
        for (rule, r) in &spans {
            let v = &text[r.clone()];
            if copyable(v) && seen.insert(v) {
                values.push((v, rule));
            }
        }
        if !values.is_empty() {
            // Plain strings, so building cannot fail; without it only the
            // copies the rules found themselves are redacted.
            if let Ok(ac) = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(values.iter().map(|(v, _)| v))
            {
                for m in ac.find_iter(text) {
                    spans.push((values[m.pattern().as_usize()].1, m.range()));
                }
            }
            for (v, _) in &values {
                known.insert(&self.key, v);
            }
        }
        spans
    }
}

/// Whether other copies of a found value are redacted too: one word, long
/// enough, and not only letters (a found value that is a plain word is more
/// likely a false positive, which copies would multiply).
fn copyable(v: &str) -> bool {
    v.len() >= MIN_COPY_LEN
        && !v.contains(char::is_whitespace)
        && (v.len() >= 20 || v.bytes().any(|b| !b.is_ascii_alphabetic()))
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
    fn a_file_without_a_known_value_redacts_the_same_knowing_it_or_not() {
        let r = redactor();
        let mut known = KnownSecrets::default();
        let first = r.redact_remembering("password = \"vR7qT2mLx9Zp4Wk8Qe3N\"\n", None, &mut known);
        assert_eq!(first.findings.len(), 1);
        assert!(!known.is_empty());
        let plain = "fn main() {\n    let user = \"vR7qT2mLx9Zp4Wk8\";\n}\n";
        assert!(!r.mentions_known(plain, &known));
        assert_eq!(
            r.redact_remembering(plain, None, &mut KnownSecrets::default()),
            r.redact_remembering(plain, None, &mut known)
        );
        let copy = "the old one was vR7qT2mLx9Zp4Wk8Qe3N, rotated\n";
        assert!(r.mentions_known(copy, &known));
        assert!(!r.mentions_known(copy, &KnownSecrets::default()));
        assert!(
            !r.redact_remembering(copy, None, &mut known)
                .text
                .contains("vR7qT2mLx9Zp4Wk8Qe3N")
        );
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
