//! `ctxplane check`, the CI gate, on the example organisation: exactly its
//! planted problems are reported, in every output format, with the
//! documented exit codes; then more planted in a context package.
#![allow(clippy::unwrap_used)]

mod common;

use common::{command, example_org_today, findings};

fn check(org: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = command(org, &all).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

fn want(items: &[(&str, u64, &str, &str)]) -> Vec<(String, u64, String, String)> {
    items
        .iter()
        .map(|(f, l, c, s)| (f.to_string(), *l, c.to_string(), s.to_string()))
        .collect()
}

#[test]
fn the_example_reports_exactly_its_planted_problems() {
    let tmp = example_org_today();
    let org = tmp.path();
    let (code, out) = check(org, &["--format", "json"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        findings(&v),
        want(&[
            // ledger-worker's incomplete context package
            ("context-package.toml", 6, "unknown_owner", "error"),
            ("context-package.toml", 12, "drift", "error"),
            ("context-package.toml", 17, "missing", "error"),
            ("context-package.toml", 17, "missing_path", "error"),
            ("context-package.toml", 17, "missing", "error"),
            // payments-api's doc names tokio 1.28; Cargo.lock pins 1.41.1
            ("architecture.md", 4, "drift", "error"),
            ("context-package.toml", 1, "no_context_package", "warning"),
            // topic packages: one past its max age, one whose cited lines changed
            ("card-vault.md", 10, "stale", "error"),
            ("ledger-reconciliation.md", 13, "stale_citation", "error"),
        ])
    );
    assert_eq!(v["errors"], 8);

    let (_, gh) = check(org, &["--format", "github"]);
    assert!(
        gh.lines()
            .any(|l| l.starts_with("::error file=") && l.contains("architecture.md,line=4,title=drift::")),
        "{gh}"
    );
    assert!(
        gh.lines()
            .any(|l| l.starts_with("::error file=topics/ledger-reconciliation.md,line=13,")),
        "{gh}"
    );
    let (_, junit) = check(org, &["--format", "junit"]);
    // 3 approved sources and 5 topic packages.
    assert!(
        junit.contains("<testsuite name=\"ctxplane check\" tests=\"8\" failures=\"8\">"),
        "{junit}"
    );
    let (_, text) = check(org, &[]);
    assert!(
        text.contains("3 source(s) and 5 topic package(s) checked: 8 error(s), 1 warning(s)"),
        "{text}"
    );

    // --source narrows to the source and the packages citing it.
    let (code, out) = check(org, &["--source", "platform-docs", "--format", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["sources"],
        serde_json::json!(["platform-docs", "topic:postgres-failover"])
    );

    // Usage and configuration errors exit 2.
    assert_eq!(check(org, &["--format", "yaml"]).0, 2);
    assert_eq!(check(org, &["--source", "no-such-source"]).0, 2);
}

#[test]
fn context_package_problems_are_located() {
    let tmp = example_org_today();
    let org = tmp.path();
    let api = org.join("sources/payments-api");
    // A clean payments-api: docs aligned with the lockfile, no stale package.
    let arch = std::fs::read_to_string(api.join("docs/architecture.md")).unwrap();
    std::fs::write(
        api.join("docs/architecture.md"),
        arch.replace("tokio 1.28", "tokio 1.41"),
    )
    .unwrap();
    std::fs::remove_file(org.join("topics/card-vault.md")).unwrap();
    let (code, out) = check(org, &["--source", "payments-api"]);
    assert_eq!(code, 0, "{out}");

    // Plant: an unknown owner, a contradicted expectation, a missing path,
    // a missing rollback, and a drifting doc.
    let pkg = std::fs::read_to_string(api.join("context-package.toml")).unwrap();
    let bad = pkg
        .replace(
            "owners = [\"team-payments\"]",
            "owners = [\"team-payments\", \"team-ghost\"]",
        )
        .replace(
            "critical_paths = [\"src/lib.rs\", \"src/refunds.rs\"]",
            "critical_paths = [\"src/lib.rs\", \"src/gone.rs\"]",
        )
        .replace("tokio = \"1.41\"", "tokio = \"1.28\"")
        .replace(
            "rollback = \"Redeploy the previous tag; migrations are backward compatible.\"\n",
            "",
        );
    assert_ne!(bad, pkg);
    std::fs::write(api.join("context-package.toml"), bad).unwrap();
    std::fs::write(
        api.join("docs/runtime.md"),
        "# Runtime\n\nThe pool needs tokio 1.30.\n",
    )
    .unwrap();
    let (code, out) = check(org, &["--source", "payments-api", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        findings(&v),
        want(&[
            ("context-package.toml", 7, "unknown_owner", "error"),
            ("context-package.toml", 20, "drift", "error"),
            ("context-package.toml", 24, "missing_path", "error"),
            ("context-package.toml", 28, "missing", "error"),
            ("runtime.md", 3, "drift", "error"),
        ])
    );
}
