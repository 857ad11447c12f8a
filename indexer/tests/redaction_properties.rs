//! Redaction never lets a known secret through, wherever it sits.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use indexer::redact::{Redactor, RuleSet};
use proptest::prelude::*;

fn alnum(n: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789".to_vec()),
        n,
    )
    .prop_map(|v| String::from_utf8(v).unwrap())
}

/// Secrets in the shapes of the families the built-in rules cover.
fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        alnum(36).prop_map(|s| format!("ghp_{s}")),
        alnum(20).prop_map(|s| format!("glpat-{s}")),
        prop::collection::vec(
            prop::sample::select(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".to_vec()),
            16
        )
        .prop_map(|v| format!("AKIA{}", String::from_utf8(v).unwrap())),
        alnum(24).prop_map(|s| format!("sk_live_{s}")),
        (alnum(22), alnum(43)).prop_map(|(a, b)| format!("SG.{a}.{b}")),
        (alnum(20), alnum(30)).prop_map(|(a, b)| format!("eyJ{a}.eyJ{b}.sig")),
        alnum(35).prop_map(|s| format!("AIza{s}")),
        alnum(36).prop_map(|s| format!("npm_{s}")),
        (10u64..99_999_999, alnum(32)).prop_map(|(n, s)| format!("xoxb-{n}-{n}-{s}")),
    ]
}

/// Places a secret can appear in code, config and docs.
fn context() -> impl Strategy<Value = (String, String)> {
    prop::sample::select(vec![
        ("let token = \"", "\";"),
        ("API_KEY=", ""),
        ("  password: '", "'"),
        ("<apiToken>", "</apiToken>"),
        ("export GITHUB_TOKEN=", ""),
        ("curl -H 'Authorization: Bearer ", "' https://api"),
        ("see `", "` in the runbook"),
        ("", ""),
        ("config = {\"secret\": \"", "\"}"),
    ])
    .prop_map(|(a, b)| (a.to_string(), b.to_string()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn known_secrets_never_survive(secret in secret(), (before, after) in context(), noise in "[a-z ]{0,40}") {
        let text = format!("fn f() {{}}\n{noise}\n{before}{secret}{after}\n// end {noise}\n");
        let r = Redactor::new(RuleSet::builtin(), [3; 32]).redact(&text, Some("src/lib.rs"));
        prop_assert!(!r.text.contains(&secret), "{} survived in {:?}", secret, r.text);
        prop_assert_eq!(r.text.lines().count(), text.lines().count());
        for f in &r.findings {
            prop_assert!(!f.keyed_hash.contains(&secret));
        }
    }

    #[test]
    fn redaction_is_idempotent(secret in secret(), (before, after) in context()) {
        let text = format!("{before}{secret}{after}\n");
        let redactor = Redactor::new(RuleSet::builtin(), [3; 32]);
        let once = redactor.redact(&text, None).text;
        prop_assert_eq!(redactor.redact(&once, None).text, once.clone());
    }
}

#[test]
fn bad_rule_files_are_reported_clearly() {
    let err = RuleSet::from_toml("[[rules]]\nid = \"x\"\nregex = '''a(b'''\n", "mine.toml").unwrap_err();
    assert!(
        err.to_string()
            .contains("mine.toml: rule \"x\": regex does not compile"),
        "{err}"
    );
    let err = RuleSet::from_toml("[[rules]]\nid = \nregex = 'a'\n", "mine.toml").unwrap_err();
    assert!(err.to_string().starts_with("mine.toml:2:"), "{err}");
    let err = RuleSet::from_toml("[[rules]]\nid = \"x\"\nregex = 'a()'\nsecretGroup = 3\n", "m").unwrap_err();
    assert!(err.to_string().contains("secretGroup 3"), "{err}");
}

#[test]
fn path_scoped_rules_and_allowlists_follow_the_path() {
    let rules = RuleSet::from_toml(
        "[[rules]]\nid = \"conf-pass\"\nregex = '''pass=(\\S+)'''\npath = '''\\.conf$'''\n\n[[rules]]\nid = \"tok\"\nregex = '''tok_[a-z0-9]{8}'''\n[[rules.allowlists]]\npaths = ['''^fixtures/''']\n",
        "t",
    )
    .unwrap();
    let r = Redactor::new(rules, [0; 32]);
    assert_eq!(
        r.redact("pass=hunter22", Some("app.conf")).text,
        "pass=[REDACTED:conf-pass]"
    );
    assert_eq!(r.redact("pass=hunter22", Some("app.rs")).text, "pass=hunter22");
    assert_eq!(
        r.redact("pass=hunter22", None).text,
        "pass=[REDACTED:conf-pass]",
        "unknown path: hide"
    );
    assert_eq!(r.redact("tok_abcd1234", Some("fixtures/a")).text, "tok_abcd1234");
    assert_eq!(r.redact("tok_abcd1234", Some("src/a")).text, "[REDACTED:tok]");
}
