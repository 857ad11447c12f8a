//! `ctxplane check`, the CI gate, on the example organisation with planted
//! problems: exactly those are reported, in every output format, with the
//! documented exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::{command, example_org};

const PACKAGE: &str = r##"purpose = "Card payments: authorise, capture, refund."
boundaries = ["Never stores card numbers; tokens only."]
owners = ["team-payments"]
escalation = ["#payments-oncall", "rivera"]
last_updated = 2026-11-01
updated_by = "rivera"

[architecture]
invariants = ["Ledger entries are append-only."]

[dependencies]
tokio = "1.41"

[tests]
critical_paths = ["src/lib.rs"]
coverage = "Ledger and capture fully covered."
integration = ["docs/"]

[release]
conventions = "Tag vX.Y.Z from main."
rollback = "Redeploy the previous tag."
"##;

fn check(org: &std::path::Path, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let out = command(org, &all).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

#[test]
fn check_reports_exactly_the_planted_problems() {
    let tmp = example_org();
    let org = tmp.path();
    let api = org.join("sources/payments-api");
    std::fs::write(
        api.join("Cargo.lock"),
        "version = 4\n\n[[package]]\nname = \"tokio\"\nversion = \"1.41.0\"\n",
    )
    .unwrap();
    // Docs aligned with the lockfile (the example's architecture doc names tokio 1.28).
    let arch = std::fs::read_to_string(api.join("docs/architecture.md")).unwrap();
    std::fs::write(
        api.join("docs/architecture.md"),
        arch.replace("tokio 1.28", "tokio 1.41"),
    )
    .unwrap();
    std::fs::write(api.join("context-package.toml"), PACKAGE).unwrap();

    let (code, out) = check(org, &["--source", "payments-api"]);
    assert_eq!(code, 0, "{out}");

    // Plant: an unknown owner, a missing path, a contradicted expectation,
    // a drifting doc, and a missing rollback.
    let bad = PACKAGE
        .replace(
            "owners = [\"team-payments\"]",
            "owners = [\"team-payments\", \"team-ghost\"]",
        )
        .replace(
            "critical_paths = [\"src/lib.rs\"]",
            "critical_paths = [\"src/lib.rs\", \"src/gone.rs\"]",
        )
        .replace("tokio = \"1.41\"", "tokio = \"1.28\"")
        .replace("rollback = \"Redeploy the previous tag.\"\n", "");
    std::fs::write(api.join("context-package.toml"), bad).unwrap();
    std::fs::write(
        api.join("docs/runtime.md"),
        "# Runtime\n\nThe pool needs tokio 1.30.\n",
    )
    .unwrap();
    let (code, out) = check(org, &["--source", "payments-api", "--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                f["line"].as_u64().unwrap(),
                f["code"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("context-package.toml", 3, "unknown_owner"),
        ("context-package.toml", 12, "drift"),
        ("context-package.toml", 15, "missing_path"),
        ("context-package.toml", 19, "missing"),
        ("runtime.md", 3, "drift"),
    ];
    assert_eq!(
        got,
        want.iter()
            .map(|(f, l, c)| (f.to_string(), *l, c.to_string()))
            .collect::<Vec<_>>()
    );

    let (_, gh) = check(org, &["--source", "payments-api", "--format", "github"]);
    assert!(
        gh.lines()
            .any(|l| l.starts_with("::error file=") && l.contains("runtime.md,line=3,title=drift::")),
        "{gh}"
    );
    let (_, junit) = check(org, &["--format", "junit"]);
    assert!(
        junit.contains("<testsuite name=\"ctxplane check\" tests=\"2\" failures=\"5\">"),
        "{junit}"
    );

    // Usage and configuration errors exit 2.
    assert_eq!(check(org, &["--format", "yaml"]).0, 2);
    assert_eq!(check(org, &["--source", "no-such-source"]).0, 2);
}
