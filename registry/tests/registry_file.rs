//! Reading, validating, editing and re-writing `registry.toml`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::Path;
use std::sync::Arc;

use jiff::Timestamp;
use proptest::prelude::*;
use registry::edit::{Edit, NewException, NewPrincipal, NewSource, apply, render};
use registry::{
    ContentHash, FixedClock, Permit, Registry, RegistryError, RegistryStore, Role, SourceId, SourceKind,
    Status, Tier,
};

const GOOD: &str = r#"
# Registry for the payments org. Stewards: @alice
version = 1

[never_ingest]
patterns = ["**/fixtures/live/**"]

[[sources]]
id = "payments-api"   # the main service
kind = "git"
location = "repos/payments-api"
owner = "team-payments"
tier = 2
status = "approved"
include = ["src/**", "docs/**"]
exclude = ["**/*.snap"]

[[sources]]
id = "hr-notes"
kind = "dir"
location = "/srv/hr"
owner = "people-ops"
tier = 4
status = "proposed"

[[exceptions]]
id = "exc-1"
source = "payments-api"
path = "docs/.env.example"
permits = ["never_ingest"]
approver = "alice"
reason = "documented template with placeholder values"
granted_at = 2026-11-01T00:00:00Z
expires_at = 2026-12-01T00:00:00Z

[[principals]]
name = "support-bot"
role = "agent"
token_hash = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
tier_ceiling = 2
sources = ["payments-api"]
"#;

fn parse(text: &str) -> Result<Registry, Vec<registry::Problem>> {
    Registry::parse(text, Path::new("/base"))
}

fn problems(text: &str) -> Vec<(usize, usize, String)> {
    parse(text)
        .expect_err("should be invalid")
        .into_iter()
        .map(|p| (p.line, p.column, p.message))
        .collect()
}

#[test]
fn a_good_registry_parses() {
    let r = parse(GOOD).unwrap();
    assert_eq!(r.sources.len(), 2);
    let api = r.source(&SourceId::new("payments-api").unwrap()).unwrap();
    assert_eq!(api.tier, Tier::new(2).unwrap());
    assert_eq!(api.status, Status::Approved);
    assert_eq!(
        api.root(Path::new("/base")),
        Path::new("/base/repos/payments-api")
    );
    let hr = r.source(&SourceId::new("hr-notes").unwrap()).unwrap();
    assert_eq!(hr.root(Path::new("/base")), Path::new("/srv/hr"));
    assert_eq!(
        r.exceptions[0].permits.iter().copied().collect::<Vec<_>>(),
        vec![Permit::NeverIngest]
    );
    assert_eq!(r.principals[0].role, Role::Agent);
    assert_eq!(r.version, ContentHash::of(GOOD.as_bytes()));
    // By an id as a string, as index records and citations carry it.
    assert_eq!(r.source_named("payments-api").unwrap().owner, api.owner);
    assert!(r.source_named("no-such-source").is_none());
    assert!(r.source_named("Not An Id/..").is_none());
    assert!(r.is_approved("payments-api"));
    assert!(!r.is_approved("hr-notes"));
}

#[test]
fn freshness_ages_come_from_the_tier_unless_the_source_says() {
    let r = parse(GOOD).unwrap();
    let api = r.source(&SourceId::new("payments-api").unwrap()).unwrap();
    assert_eq!(r.freshness.max_age_days(api), registry::DEFAULT_MAX_AGE_DAYS[1]);
    let text = format!("{GOOD}\n[freshness.max_age_days]\n2 = 45\n4 = 7\n")
        .replace("tier = 4\n", "tier = 4\nmax_age_days = 3\n");
    let r = parse(&text).unwrap();
    let api = r.source(&SourceId::new("payments-api").unwrap()).unwrap();
    let hr = r.source(&SourceId::new("hr-notes").unwrap()).unwrap();
    assert_eq!(r.freshness.max_age_days(api), 45);
    assert_eq!(r.freshness.max_age_days(hr), 3);
    assert_eq!(r.freshness.max_age_days[3], 7);
    let bad = format!("{GOOD}\n[freshness.max_age_days]\n5 = 45\n1 = 0\n");
    let found = problems(&bad);
    assert!(
        found.iter().any(|p| p.2.contains("keys are tiers 1 to 4")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.2.contains("between 1 and 3650")),
        "{found:?}"
    );
}

#[test]
fn malformed_toml_reports_line_and_column() {
    let text = "version = 1\n[[sources]]\nid = \"x\"\ntier = = 2\n";
    let found = problems(text);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].0, found[0].1), (4, 8), "{found:?}");
}

#[test]
fn unknown_fields_are_rejected_where_they_stand() {
    let text = GOOD.replace(
        "owner = \"people-ops\"",
        "owner = \"people-ops\"\nownr = \"typo\"",
    );
    let found = problems(&text);
    assert!(found[0].2.contains("ownr"), "{found:?}");
    assert_eq!(
        found[0].0,
        text.lines().position(|l| l.starts_with("ownr")).unwrap() + 1
    );
}

#[test]
fn semantic_problems_are_all_reported_with_positions() {
    let text = GOOD
        .replace("id = \"hr-notes\"", "id = \"payments-api\"")
        .replace("tier = 4", "tier = 7")
        .replace("exclude = [\"**/*.snap\"]", "exclude = [\"a[\"]")
        .replace(
            "expires_at = 2026-12-01T00:00:00Z",
            "expires_at = 2026-10-01T00:00:00Z",
        );
    let found = problems(&text);
    let messages: Vec<&str> = found.iter().map(|p| p.2.as_str()).collect();
    assert!(
        messages.iter().any(|m| m.contains("duplicate source id")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("tier must be 1, 2, 3 or 4, not 7")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("does not parse")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("is not after granted_at")),
        "{messages:?}"
    );
    let tier_line = text.lines().position(|l| l.starts_with("tier = 7")).unwrap() + 1;
    assert!(found.iter().any(|p| p.0 == tier_line && p.1 == 8), "{found:?}");
}

#[test]
fn other_bad_values_are_named() {
    for (from, to, expect) in [
        (
            "status = \"proposed\"",
            "status = \"maybe\"",
            "unknown variant `maybe`",
        ),
        ("tier = 4", "tier = \"high\"", "invalid type"),
        ("token_hash = \"0f1e", "token_hash = \"zz1e", "token_hash"),
        (
            "sources = [\"payments-api\"]",
            "sources = [\"nope\"]",
            "unknown source \"nope\"",
        ),
        (
            "source = \"payments-api\"",
            "source = \"ghost\"",
            "unknown source \"ghost\"",
        ),
        ("version = 1", "version = 9", "format version 9"),
        (
            "granted_at = 2026-11-01T00:00:00Z",
            "granted_at = 2026-11-01",
            "offset",
        ),
        (
            "expires_at = 2026-12-01T00:00:00Z",
            "expires_at = 2028-12-01T00:00:00Z",
            "at most 366 days",
        ),
        (
            "owner = \"people-ops\"",
            "owner = \"  \"",
            "owner must not be empty",
        ),
        (
            "id = \"hr-notes\"",
            "id = \"HR notes\"",
            "must start with a lowercase",
        ),
    ] {
        let text = GOOD.replacen(from, to, 1);
        assert_ne!(text, GOOD, "replacement {from:?} did not apply");
        let found = problems(&text);
        assert!(found.iter().any(|p| p.2.contains(expect)), "{to:?}: {found:?}");
    }
}

fn store(dir: &Path, now: &str) -> RegistryStore {
    RegistryStore::new(
        dir.join("registry.toml"),
        dir.join("data"),
        Arc::new(FixedClock(now.parse::<Timestamp>().unwrap())),
    )
}

#[test]
fn edits_keep_comments_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), GOOD).unwrap();
    let s = store(dir.path(), "2026-11-15T12:00:00Z");
    let applied = s
        .apply(
            "alice",
            Edit::SetStatus {
                id: SourceId::new("hr-notes").unwrap(),
                status: Status::Approved,
                reason: Some("reviewed".into()),
            },
        )
        .unwrap();
    assert_eq!(applied.entry.action, "source.approve");
    let text = std::fs::read_to_string(dir.path().join("registry.toml")).unwrap();
    assert!(text.contains("# Registry for the payments org. Stewards: @alice"));
    assert!(text.contains("# the main service"));
    assert!(text.contains("status_changed_by = \"alice\""));
    let reloaded = Registry::load(&dir.path().join("registry.toml")).unwrap();
    assert_eq!(
        reloaded
            .source(&SourceId::new("hr-notes").unwrap())
            .unwrap()
            .status,
        Status::Approved
    );
    let report = s.audit().verify().unwrap();
    assert!(report.intact, "{report:?}");
    let actions: Vec<String> = s
        .audit()
        .tail_entries(10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["registry.adopted", "source.approve"]);
}

#[test]
fn an_edit_that_would_break_the_registry_leaves_the_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("registry.toml"), GOOD).unwrap();
    let s = store(dir.path(), "2026-11-15T12:00:00Z");
    let before = std::fs::read(dir.path().join("registry.toml")).unwrap();
    let bad_glob = s.apply(
        "alice",
        Edit::AddSource(NewSource {
            id: SourceId::new("new-one").unwrap(),
            kind: SourceKind::Dir,
            location: "x".into(),
            owner: "o".into(),
            tier: Tier::new(1).unwrap(),
            description: None,
            include: vec!["src/[".into()],
            exclude: vec![],
            never_ingest: vec![],
        }),
    );
    let message = bad_glob.unwrap_err().to_string();
    assert!(
        message.contains("would make the registry invalid") && message.contains("does not parse"),
        "{message}"
    );
    let dup = s.apply(
        "alice",
        Edit::GrantException(NewException {
            id: "exc-1".into(),
            source: SourceId::new("payments-api").unwrap(),
            path: "x".into(),
            permits: vec![Permit::NeverIngest],
            approver: "alice".into(),
            reason: "r".into(),
            granted_at: "2026-11-15T12:00:00Z".parse().unwrap(),
            expires_at: "2026-11-16T12:00:00Z".parse().unwrap(),
        }),
    );
    assert!(
        matches!(dup, Err(RegistryError::DuplicateException { .. })),
        "{dup:?}"
    );
    let deny_approved = s.apply(
        "alice",
        Edit::SetStatus {
            id: SourceId::new("payments-api").unwrap(),
            status: Status::Denied,
            reason: None,
        },
    );
    assert!(
        deny_approved
            .unwrap_err()
            .to_string()
            .contains("revoke it instead")
    );
    assert_eq!(std::fs::read(dir.path().join("registry.toml")).unwrap(), before);
}

#[test]
fn a_malformed_file_on_disk_is_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let broken = GOOD.replace("tier = 2", "tier = ");
    std::fs::write(dir.path().join("registry.toml"), &broken).unwrap();
    let s = store(dir.path(), "2026-11-15T12:00:00Z");
    let err = s
        .apply(
            "alice",
            Edit::SetStatus {
                id: SourceId::new("hr-notes").unwrap(),
                status: Status::Denied,
                reason: None,
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("registry.toml:"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("registry.toml")).unwrap(),
        broken
    );
}

#[test]
fn external_changes_and_expiries_are_audited_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.toml");
    std::fs::write(&path, GOOD).unwrap();
    let s = store(dir.path(), "2026-12-05T00:00:00Z");
    s.load("bob").unwrap();
    s.load("bob").unwrap();
    std::fs::write(&path, GOOD.replace("tier = 4", "tier = 3")).unwrap();
    s.load("bob").unwrap();
    let actions: Vec<String> = s
        .audit()
        .tail_entries(10)
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions,
        [
            "registry.adopted",
            "exception.expired",
            "registry.changed_externally"
        ]
    );
}

// ---- round trips --------------------------------------------------------

fn arb_glob() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "*.md",
        "src/**",
        "/build/",
        "docs/*.rst",
        "**/gen/**",
        "secret*",
        "a?b",
    ])
    .prop_map(String::from)
}

fn arb_registry() -> impl Strategy<Value = Registry> {
    let source = (
        "[a-z][a-z0-9-]{0,10}",
        prop::bool::ANY,
        "[a-z/._-]{1,20}",
        "[a-z]{1,8}",
        1u8..=4,
        0usize..4,
        prop::option::of(1u32..4000),
        prop::collection::vec(arb_glob(), 0..3),
        prop::collection::vec(arb_glob(), 0..3),
    );
    (
        prop::collection::vec(source, 1..5),
        prop::bool::ANY,
        prop::collection::vec(arb_glob(), 0..3),
        prop::option::of(prop::collection::vec(1u32..3650, 4)),
    )
        .prop_map(|(sources, builtin, global, ages)| {
            let mut text = format!("[never_ingest]\nuse_builtin = {builtin}\npatterns = {global:?}\n");
            if let Some(a) = ages {
                text.push_str(&format!(
                    "[freshness.max_age_days]\n1 = {}\n2 = {}\n3 = {}\n4 = {}\n",
                    a[0], a[1], a[2], a[3]
                ));
            }
            let mut seen = std::collections::BTreeSet::new();
            for (id, git, loc, owner, tier, status, age, inc, exc) in sources {
                if !seen.insert(id.clone()) {
                    continue;
                }
                let status = ["proposed", "approved", "denied", "revoked"][status];
                let kind = if git { "git" } else { "dir" };
                text.push_str(&format!(
                    "[[sources]]\nid = {id:?}\nkind = {kind:?}\nlocation = {loc:?}\nowner = {owner:?}\ntier = {tier}\nstatus = {status:?}\ninclude = {inc:?}\nexclude = {exc:?}\n"
                ));
                if let Some(a) = age.filter(|a| *a <= 3650) {
                    text.push_str(&format!("max_age_days = {a}\n"));
                }
                // Answer rules: none, one key, or keys set to their defaults and not.
                match age.map(|a| a % 3) {
                    Some(0) => text.push_str("answers = { tests = \"keep\" }\n"),
                    Some(1) => text.push_str("answers = { lockfiles = \"demote\", vendored = \"keep\", tests = \"demote\", changelogs = \"exclude\" }\n"),
                    _ => {}
                }
            }
            let first = seen.iter().next().unwrap().clone();
            text.push_str(&format!(
                "[[exceptions]]\nid = \"x1\"\nsource = {first:?}\npath = \"*.pem\"\npermits = [\"never_ingest\"]\napprover = \"a\"\nreason = \"r\"\ngranted_at = 2026-01-01T00:00:00Z\nexpires_at = 2026-02-01T00:00:00Z\n"
            ));
            text.push_str(&format!(
                "[[principals]]\nname = \"p\"\nrole = \"ci\"\ntoken_hash = \"{}\"\ntier_ceiling = 3\nsources = [{first:?}]\n",
                ContentHash::of(b"tok")
            ));
            Registry::parse(&text, Path::new("/")).expect("generated registry is valid")
        },
    )
}

#[test]
fn answer_rules_default_per_key_and_bad_values_are_located() {
    let base = "version = 1\n[[sources]]\nid = \"s\"\nkind = \"dir\"\nlocation = \"s\"\nowner = \"o\"\ntier = 1\nstatus = \"approved\"\n";
    let reg = Registry::parse(base, Path::new("/")).unwrap();
    let rules = reg.sources.values().next().unwrap().answers;
    assert_eq!(rules, registry::AnswerRules::default());
    assert_eq!(rules.tests, registry::Treatment::Demote);
    assert_eq!(rules.lockfiles, registry::Treatment::Exclude);
    assert_eq!(rules.changelogs, registry::Treatment::Demote);
    let reg = Registry::parse(
        &format!("{base}answers = {{ tests = \"keep\" }}\n"),
        Path::new("/"),
    )
    .unwrap();
    let rules = reg.sources.values().next().unwrap().answers;
    assert_eq!(rules.tests, registry::Treatment::Keep);
    assert_eq!(rules.generated, registry::Treatment::Exclude);
    assert_eq!(rules.changelogs, registry::Treatment::Demote);
    for bad in ["answers = { tests = \"hide\" }", "answers = { docs = \"keep\" }"] {
        let problems = Registry::parse(&format!("{base}{bad}\n"), Path::new("/registry.toml")).unwrap_err();
        assert_eq!(problems[0].line, 9, "{bad}: {problems:?}");
    }
}

proptest! {
    #[test]
    fn rendered_registries_read_back_the_same(reg in arb_registry()) {
        let text = render(&reg, "generated");
        let back = Registry::parse(&text, Path::new("/")).unwrap();
        prop_assert_eq!(&back, &reg);
        // and rendering is stable
        prop_assert_eq!(render(&back, "generated"), text);
    }
}

#[test]
fn adding_then_reading_gives_back_what_was_added() {
    let reg = parse(GOOD).unwrap();
    let token_hash = ContentHash::of(b"secret-token");
    let new_text = apply(
        GOOD,
        &reg,
        &Edit::AddPrincipal(NewPrincipal {
            name: "ci-bot".into(),
            role: Role::Ci,
            token_hash,
            tier_ceiling: Tier::new(3).unwrap(),
            sources: vec![],
            all_sources: true,
            description: Some("pipelines".into()),
            limits: registry::Limits {
                requests_per_minute: Some(60),
                tokens_per_day: None,
            },
        }),
        "alice",
        "2026-11-15T12:00:00Z".parse().unwrap(),
    )
    .unwrap();
    let after = parse(&new_text).unwrap();
    let p = after.principal("ci-bot").unwrap();
    assert_eq!(p.token_hash, token_hash);
    assert_eq!(p.sources, registry::SourceGrant::All);
    assert!(!new_text.contains("secret-token"));
    assert!(new_text.starts_with(GOOD.trim_end_matches('\n')) || new_text.contains("# the main service"));
}
