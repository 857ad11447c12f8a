//! Policy invariants: deny by default, never-ingest needs a live exception,
//! scopes never exceed a principal's ceiling.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;

use jiff::Timestamp;
use proptest::prelude::*;
use registry::defaults::BUILTIN_NEVER_INGEST;
use registry::rules::{RuleOrigin, RuleSet};
use registry::{DenyReason, FixedClock, Outcome, Registry, SourceId, Window};

const BASE: &str = r#"
[never_ingest]
patterns = ["internal/**", "*.dump"]

[[sources]]
id = "svc"
kind = "dir"
location = "svc"
owner = "team"
tier = 2
status = "approved"
never_ingest = ["private/"]

[[sources]]
id = "other"
kind = "dir"
location = "other"
owner = "team"
tier = 3
status = "approved"

[[sources]]
id = "pending"
kind = "dir"
location = "pending"
owner = "team"
tier = 1
status = "proposed"
"#;

fn at(s: &str) -> FixedClock {
    FixedClock(s.parse::<Timestamp>().unwrap())
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            ".env",
            ".env.local",
            "prod.env",
            "id_rsa",
            "server.pem",
            "tls.key",
            "secrets",
            ".ssh",
            "credentials",
            "internal",
            "private",
            "db.dump",
            "terraform.tfstate",
            "src",
            "docs",
            "lib",
            "main.rs",
            "README.md",
        ])
        .prop_map(String::from),
        "[a-z]{1,6}(\\.[a-z]{1,3})?",
    ]
}

fn rel_path() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..5).prop_map(|v| v.join("/"))
}

/// Exceptions with random scopes, sources and windows around "now".
fn exceptions() -> impl Strategy<Value = Vec<(String, String, i64, i64)>> {
    let one = (
        prop::sample::select(vec!["svc", "other"]).prop_map(String::from),
        prop_oneof![
            prop::sample::select(vec![".env", "*.pem", "secrets/", "internal/**", "private/", "**"])
                .prop_map(String::from),
            rel_path(),
        ],
        -40i64..40,
        1i64..40,
    );
    prop::collection::vec(one, 0..4)
}

fn registry_with(exceptions: &[(String, String, i64, i64)]) -> Registry {
    let now: Timestamp = "2026-06-15T00:00:00Z".parse().unwrap();
    let mut text = BASE.to_string();
    for (i, (source, path, start_days, len_days)) in exceptions.iter().enumerate() {
        let granted = now
            .checked_add(jiff::SignedDuration::from_hours(24 * start_days))
            .unwrap();
        let expires = granted
            .checked_add(jiff::SignedDuration::from_hours(24 * len_days))
            .unwrap();
        text.push_str(&format!(
            "[[exceptions]]\nid = \"x{i}\"\nsource = {source:?}\npath = {path:?}\npermits = [\"never_ingest\"]\napprover = \"s\"\nreason = \"r\"\ngranted_at = {granted}\nexpires_at = {expires}\n"
        ));
    }
    Registry::parse(&text, Path::new("/")).unwrap()
}

fn never_ingest_sets() -> (RuleSet, RuleSet) {
    let global = RuleSet::new(
        BUILTIN_NEVER_INGEST
            .iter()
            .map(|p| (*p, RuleOrigin::Builtin))
            .chain([
                ("internal/**", RuleOrigin::Global),
                ("*.dump", RuleOrigin::Global),
            ]),
        true,
    )
    .unwrap();
    let svc = RuleSet::new([("private/", RuleOrigin::Source)], true).unwrap();
    (global, svc)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_ingest_paths_need_a_live_covering_exception(
        path in rel_path(),
        source in prop::sample::select(vec!["svc", "other"]),
        xs in exceptions(),
    ) {
        let reg = registry_with(&xs);
        let clock = at("2026-06-15T00:00:00Z");
        let policy = reg.policy(&clock);
        let decision = policy.decide_ingest(source, &path);
        let (global, svc_rules) = never_ingest_sets();
        let sensitive = global.is_match(&path) || (source == "svc" && svc_rules.is_match(&path));
        if sensitive && decision.is_allowed() {
            let Outcome::Allow { exception: Some(id) } = &decision.outcome else {
                return Err(TestCaseError::fail(format!("{path} allowed without an exception")));
            };
            let x = reg.exception(id).unwrap();
            prop_assert_eq!(x.source.as_str(), source);
            prop_assert!(x.path_rule.is_match(&path));
            prop_assert_eq!(x.window(clock.0), Window::Live);
        }
        if !sensitive {
            prop_assert!(decision.is_allowed(), "{} denied: {:?}", path, decision);
        }
    }

    #[test]
    fn unknown_and_unapproved_sources_are_always_denied(path in rel_path(), id in "[a-z][a-z0-9-]{0,12}") {
        let reg = registry_with(&[]);
        let policy = reg.policy(&at("2026-06-15T00:00:00Z"));
        if !["svc", "other", "pending"].contains(&id.as_str()) {
            let d = policy.decide_ingest(&id, &path);
            prop_assert_eq!(d.deny_reason(), Some(&DenyReason::UnknownSource));
        }
        prop_assert!(!policy.decide_ingest("pending", &path).is_allowed());
    }

    #[test]
    fn decision_ids_are_stable(path in rel_path()) {
        let reg = registry_with(&[]);
        let a = reg.policy(&at("2026-06-15T00:00:00Z")).decide_ingest("svc", &path);
        let b = reg.policy(&at("2026-06-16T00:00:00Z")).decide_ingest("svc", &path);
        prop_assert_eq!(a.id, b.id);
    }
}

#[test]
fn traversal_and_absolute_paths_are_denied() {
    let reg = registry_with(&[]);
    let policy = reg.policy(&at("2026-06-15T00:00:00Z"));
    for p in ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", ""] {
        let d = policy.decide_ingest("svc", p);
        assert!(
            matches!(d.deny_reason(), Some(DenyReason::InvalidPath { .. })),
            "{p:?}: {d:?}"
        );
    }
}

#[test]
fn an_exception_works_only_inside_its_window_and_scope() {
    let reg = registry_with(&[("svc".into(), ".env".into(), -1, 2)]);
    let live = reg.policy(&at("2026-06-15T00:00:00Z"));
    let d = live.decide_ingest("svc", "config/.env");
    assert_eq!(
        d.outcome,
        Outcome::Allow {
            exception: Some("x0".into())
        }
    );
    assert!(
        !live.decide_ingest("other", "config/.env").is_allowed(),
        "other source"
    );
    assert!(
        !live.decide_ingest("svc", "config/.env.local").is_allowed(),
        "outside the path scope"
    );
    let later = reg.policy(&at("2026-06-20T00:00:00Z"));
    let d = later.decide_ingest("svc", "config/.env");
    match d.deny_reason() {
        Some(DenyReason::NeverIngest {
            lapsed_exceptions, ..
        }) => assert_eq!(lapsed_exceptions, &["x0"]),
        other => panic!("expected never-ingest deny, got {other:?}"),
    }
    let earlier = reg.policy(&at("2026-06-13T00:00:00Z"));
    assert!(
        !earlier.decide_ingest("svc", "config/.env").is_allowed(),
        "not yet granted"
    );
}

#[test]
fn scopes_respect_tier_ceilings_and_grants() {
    let text = format!(
        "{BASE}\n[[principals]]\nname = \"bot\"\nrole = \"agent\"\ntoken_hash = \"{}\"\ntier_ceiling = 2\nsources = [\"*\"]\n\n[[principals]]\nname = \"narrow\"\nrole = \"developer\"\ntoken_hash = \"{}\"\ntier_ceiling = 4\nsources = [\"other\", \"pending\"]\n",
        registry::ContentHash::of(b"t1"),
        registry::ContentHash::of(b"t2")
    );
    let reg = Registry::parse(&text, Path::new("/")).unwrap();
    let policy = reg.policy(&at("2026-06-15T00:00:00Z"));
    let bot = policy.scope_for(reg.principal("bot").unwrap());
    assert_eq!(
        bot.sources.iter().map(SourceId::as_str).collect::<Vec<_>>(),
        ["svc"]
    );
    let narrow = policy.scope_for(reg.principal("narrow").unwrap());
    assert_eq!(
        narrow.sources.iter().map(SourceId::as_str).collect::<Vec<_>>(),
        ["other"],
        "pending is not approved"
    );
    assert_eq!(reg.authenticate("t1").map(|p| p.name.as_str()), Some("bot"));
    assert!(reg.authenticate("t3").is_none());
    assert!(reg.authenticate("").is_none());
}
