//! The main job: `ctxplane demo` on the example organisation shows each
//! tier with provenance, scope narrowing an agent's answer, staleness,
//! drift, the CI check and the audit chain, and never a never-ingest secret.
#![allow(clippy::unwrap_used)]

mod common;

use common::{example_org_today, run};

/// The demo's output cut at its `== ` headings: (heading, body).
fn sections(out: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(at) = line.find("== ") {
            let title = line[at + 3..].trim_end_matches("\x1b[0m").to_string();
            v.push((title, String::new()));
        } else if let Some(last) = v.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    v
}

fn section<'a>(all: &'a [(String, String)], starts: &str) -> &'a str {
    &all.iter()
        .find(|(t, _)| t.starts_with(starts))
        .unwrap_or_else(|| panic!("no section {starts:?} in {all:#?}"))
        .1
}

#[test]
fn the_demo_shows_each_tier_with_provenance_and_the_reports() {
    let tmp = example_org_today();
    let out = run(tmp.path(), &["demo", "--no-serve"]);
    let all = sections(&out);

    let retry = section(&all, "coding-agent asks: \"Is it safe to retry a capture?\"");
    assert!(retry.contains("served by topic_package"), "{retry}");
    assert!(retry.contains("topic:capture-idempotency"), "{retry}");

    // The tier-1 agent may read only platform-docs: no package citing
    // payments-api, no payments-api chunk.
    let support = section(&all, "support-agent asks");
    assert!(support.contains("served by hybrid"), "{support}");
    assert!(!support.contains("payments-api"), "{support}");
    assert!(support.contains("platform-docs:"), "{support}");

    let stale = section(&all, "coding-agent asks: \"Are reconciliation mismatches");
    assert!(stale.contains("served by topic_package"), "{stale}");
    assert!(
        stale.contains("[stale: ledger-worker:ledger_worker/reconcile.py"),
        "{stale}"
    );

    let lapsed = section(&all, "coding-agent asks: \"Where are full card numbers kept?\"");
    assert!(
        lapsed.contains("card-vault not served: stale_past_grace"),
        "{lapsed}"
    );
    assert!(lapsed.contains("served by hybrid"), "{lapsed}");

    let env = section(&all, "coding-agent asks: \"DATABASE_URL");
    assert!(env.contains("payments-api:config/.env.example"), "{env}");
    assert!(
        !env.contains("config/.env#"),
        "the never-ingest .env was served: {env}"
    );
    // Every chunk result carries its provenance line.
    assert!(env.contains("provenance of c-"), "{env}");
    assert!(env.contains("decision dec-"), "{env}");

    let fresh = section(&all, "Freshness and version drift");
    assert!(
        fresh
            .contains("drift: docs/architecture.md:4 says \"tokio 1.28\" but the lockfiles pin tokio 1.41.1"),
        "{fresh}"
    );
    let check = section(&all, "The CI check");
    assert!(check.contains("8 error(s), 1 warning(s)"), "{check}");
    let audit = section(&all, "The audit chain");
    assert!(audit.contains("audit log intact"), "{audit}");

    // The planted secret in the never-ingest file appears nowhere.
    assert!(!out.contains("Pr0dPassw0rd"), "{out}");
}
