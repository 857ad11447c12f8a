//! Matching that does not eat boundaries, copies, and rule sets that compose:
//! properties over generated secrets, orders and neighbours.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use indexer::redact::{KnownSecrets, Redactor, RuleSet, shannon_entropy};
use proptest::prelude::*;

fn chars(alphabet: &'static [u8], n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(alphabet.to_vec()), n)
        .prop_map(|v| String::from_utf8(v).unwrap())
}

/// A random password-like value: letters, digits, a symbol; always a digit.
fn password() -> impl Strategy<Value = String> {
    (
        chars(b"ABCDEFGHJKLMNPQRSTUVWXYZ", 2),
        // No '%': two "%s" in a value make it a format string to the rules.
        chars_range(b"abcdefghijkmnopqrstuvwxyz23456789^*_-", 12..=20),
        chars(b"23456789", 2),
    )
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
        // Shrinking makes values repetitive; a real secret is not. Runs of
        // asterisks are how documentation masks a value (a placeholder).
        .prop_filter("random enough to be a secret", |s| {
            shannon_entropy(s) > 3.3 && !s.contains("**")
        })
}

fn chars_range(alphabet: &'static [u8], n: std::ops::RangeInclusive<usize>) -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(alphabet.to_vec()), n)
        .prop_map(|v| String::from_utf8(v).unwrap())
        .boxed()
}

/// A secret-bearing assignment line in `.env`, `.properties` or INI style.
fn secret_line() -> impl Strategy<Value = (String, String)> {
    let names = prop::sample::select(vec![
        "DB_PASSWORD",
        "api_secret",
        "AUTH_TOKEN",
        "db.password",
        "client_secret",
        "aws_secret_access_key",
        "SMTP_PASS",
    ]);
    let seps = prop::sample::select(vec!["=", " = ", ": ", "="]);
    (names, seps, password()).prop_map(|(n, s, v)| (format!("{n}{s}{v}"), v))
}

/// Lines a rule or an allowlist looks at and lets through.
fn allowlisted_line() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "API_URL=http://localhost:8080/v1".to_string(),
        "aws_region=us-east-1".to_string(),
        "SECRET_KEY_PREFIX=abc123".to_string(),
        "DB_PASSWORD=${DB_PASSWORD}".to_string(),
        "api_key=your_api_key_here".to_string(),
        "token_url=https://auth.example.com/token".to_string(),
        "".to_string(),
        "# comment".to_string(),
    ])
}

fn redactor() -> Redactor {
    Redactor::new(RuleSet::builtin(), [9; 32])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any list of secret lines, in any order, with allowlisted lines
    /// anywhere between them: every secret is redacted.
    #[test]
    fn adjacent_assignments_are_each_redacted(
        lines in prop::collection::vec((secret_line(), prop::collection::vec(allowlisted_line(), 0..3)), 1..8),
        crlf in any::<bool>(),
    ) {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut text = String::new();
        let mut secrets = Vec::new();
        for ((line, secret), between) in &lines {
            text.push_str(line);
            text.push_str(nl);
            for b in between {
                text.push_str(b);
                text.push_str(nl);
            }
            secrets.push(secret.clone());
        }
        let out = redactor().redact(&text, None).text;
        for s in &secrets {
            prop_assert!(!out.contains(s.as_str()), "{s} left in:\n{out}");
        }
        prop_assert_eq!(out.lines().count(), text.lines().count());
    }

    /// Once found, a value is gone everywhere in the file, and from a later
    /// file where no rule would find it.
    #[test]
    fn every_copy_is_redacted(
        (line, secret) in secret_line(),
        filler in prop::collection::vec(prop::sample::select(vec!["fn main() {}", "x = 1", "see the docs", "# note"]), 0..6),
        copies in 1usize..4,
    ) {
        let mut text = format!("{line}\n");
        for (i, f) in filler.iter().enumerate() {
            text.push_str(f);
            text.push('\n');
            if i < copies {
                text.push_str(&format!("old value: {secret} (rotated)\n"));
            }
        }
        text.push_str(&format!("twice {secret} {secret}\n"));
        let r = redactor();
        let mut known = KnownSecrets::default();
        let out = r.redact_remembering(&text, None, &mut known).text;
        prop_assert!(!out.contains(secret.as_str()), "{out}");
        prop_assert!(!known.is_empty());
        let later = format!("nothing to see: {secret}, really\n");
        let out = r.redact_remembering(&later, None, &mut known).text;
        prop_assert!(!out.contains(secret.as_str()), "{out}");
        // Without what the first file taught, no rule fires on the second.
        prop_assert_eq!(r.redact(&later, None).text, later);
    }

    /// A user's rules next to the built-ins find at least what each set finds
    /// alone: the built-in allowlists (placeholders like abc123) never
    /// suppress a user's rule, nor the user's allowlists a built-in, and a
    /// user's rule with a built-in's id (a narrower github-token) does not
    /// take the built-in's place.
    #[test]
    fn merged_rule_sets_find_what_each_finds(
        acme in prop::collection::vec(chars_range(b"abc123xyz789", 16..=16), 1..4),
        gh in prop::collection::vec(chars(b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", 36), 0..3),
        (line, secret) in secret_line(),
    ) {
        let user = RuleSet::from_toml(
            "[allowlist]\nregexes = ['''^ghp_''', '''(?i)password''']\n[[rules]]\nid = \"acme\"\nregex = '''ACME-[a-z0-9]{16}'''\nkeywords = [\"acme-\"]\n[[rules]]\nid = \"github-token\"\nregex = '''ghp_[0-9]{36}'''\nkeywords = [\"ghp_\"]\n",
            "user.toml",
        ).unwrap();
        let mut text = format!("{line}\n");
        let mut values = vec![secret];
        for a in &acme {
            text.push_str(&format!("acme key ACME-{a}\n"));
            values.push(format!("ACME-{a}"));
        }
        for g in &gh {
            text.push_str(&format!("gh ghp_{g}\n"));
            values.push(format!("ghp_{g}"));
        }
        let key = [3; 32];
        let alone_user = Redactor::new(user.clone(), key).redact(&text, None).text;
        let alone_builtin = Redactor::new(RuleSet::builtin(), key).redact(&text, None).text;
        let both = Redactor::new(RuleSet::builtin().merged(user), key).redact(&text, None).text;
        for v in &values {
            if !alone_user.contains(v.as_str()) || !alone_builtin.contains(v.as_str()) {
                prop_assert!(!both.contains(v.as_str()), "{v} found alone but not merged:\n{both}");
            }
        }
        for a in &acme {
            prop_assert!(!both.contains(&format!("ACME-{a}")), "{both}");
        }
    }
}

#[test]
fn code_is_left_alone() {
    let r = redactor();
    for text in [
        "pub struct ItemFn { brace_token: syn::token::Brace }\n",
        "fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {}\n",
        "let takes_ownership = move |token: CancellationToken| token.cancel();\n",
        "let srv = assert_ok!(TcpListener::bind(\"127.0.0.1:0\").await);\n",
        "billiard==3.6.4.0\n",
        "according to RFC 7234 section-5.2.2.2 and sections 2.3.3.1.\n",
        "salt = base64.b64decode(b64salt)\n",
        "SECRET_KEY_INSECURE_PREFIX = \"django-insecure-\"\n",
        "token = 'variable|default:\"Default value\"|date:\"Y-m-d\"'\n",
        "License: BSD-3-Clause\n",
        "u.set_password(\"new password\")\n",
    ] {
        let out = r.redact(text, Some("src/lib.rs"));
        assert_eq!(out.text, text, "{:?}", out.findings);
    }
}
