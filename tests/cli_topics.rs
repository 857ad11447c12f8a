//! Topic packages through the binary: tier 1 answers with provenance for
//! the package and each citation; only callers who may read every cited
//! source see a package; editing a cited file makes the package stale in
//! `check` and in retrieval (flagged within the grace period, search after
//! it); drafts are extractive and cited; rehash refuses what the policy
//! refuses.
#![allow(clippy::unwrap_used)]

mod common;

use common::{command, example_org_today, findings, run, run_json};

fn ask(org: &std::path::Path, q: &str, who: &str) -> serde_json::Value {
    run_json(org, &["query", q, "--as", who, "--json"])
}

#[test]
fn packages_answer_first_and_go_stale_when_a_cited_file_changes() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index"]);

    // Tier 1 answers a paraphrase of a package's question.
    let a = ask(
        org,
        "Is retrying a capture safe, or could it charge twice?",
        "coding-agent",
    );
    assert_eq!(a["served_by"], "topic_package", "{a:#}");
    let pkg = &a["package"];
    assert_eq!(pkg["id"], "topic:capture-idempotency");
    assert!(a["results"].as_array().unwrap().is_empty());
    let p = &pkg["provenance"];
    assert_eq!(p["status"], "fresh");
    assert_eq!(p["served_by"], "topic_package");
    assert_eq!(p["tier"], 2);
    assert_eq!(p["owner"], "team-payments");
    assert!(
        pkg["content"]
            .as_str()
            .unwrap()
            .contains("[1] payments-api:src/lib.rs#L26-L27")
    );
    let cites = p["citations"].as_array().unwrap();
    assert_eq!(cites.len(), 2);
    for c in cites {
        assert_eq!(c["status"], "unchanged", "{c:#}");
        assert_eq!(c["recorded_hash"], c["current_hash"]);
        assert!(!c["commit"].is_null() || c["source"] == "payments-api");
        assert!(!c["file_hash"].is_null());
        // Every citation leads to indexed chunks `provenance` can explain.
        let ids = c["chunk_ids"].as_array().unwrap();
        assert!(!ids.is_empty(), "{c:#}");
        let pv = run_json(org, &["provenance", ids[0].as_str().unwrap(), "--json"]);
        assert_eq!(pv["provenance"]["path"], c["path"], "{pv:#}");
    }
    assert!(a["tokens"].as_u64().unwrap() <= 4_000);

    // A budget too small for the package falls through to search.
    let small = run_json(
        org,
        &[
            "query",
            "Is retrying a capture safe?",
            "--as",
            "coding-agent",
            "--max-tokens",
            "40",
            "--json",
        ],
    );
    assert_ne!(small["served_by"], "topic_package");
    assert_eq!(small["topic"]["outcome"], "over_budget");

    // Scope: support-agent (platform-docs, tier 1) never sees a package that
    // cites payments-api, not even by name.
    let s = ask(
        org,
        "Is retrying a capture safe, or could it charge twice?",
        "support-agent",
    );
    assert_ne!(s["served_by"], "topic_package");
    assert!(!s.to_string().contains("capture-idempotency"), "{s:#}");
    let s = ask(org, "The database primary is down, what now?", "support-agent");
    assert_eq!(s["package"]["id"], "topic:postgres-failover", "{s:#}");
    assert_eq!(s["topic"]["packages_in_scope"], 1);
    // An unknown principal is refused outright (bad usage, exit 2).
    let u = common::command(
        org,
        &[
            "query",
            "The database primary is down, what now?",
            "--as",
            "nobody",
            "--json",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(u.status.code(), Some(2));

    // An off-topic question is not answered by a package.
    let off = ask(
        org,
        "what features does the tokio dependency enable?",
        "coding-agent",
    );
    assert_ne!(off["served_by"], "topic_package", "{off:#}");

    // The planted stale packages: past its max age falls through (past the
    // grace period too); a changed citation is served, flagged.
    let old = ask(org, "Where are full card numbers kept?", "coding-agent");
    assert_ne!(old["served_by"], "topic_package");
    assert_eq!(old["topic"]["candidate"], "card-vault");
    assert_eq!(old["topic"]["outcome"], "stale_past_grace");
    let changed = ask(
        org,
        "Are reconciliation mismatches corrected automatically?",
        "coding-agent",
    );
    assert_eq!(changed["topic"]["outcome"], "served_stale", "{changed:#}");
    assert_eq!(changed["package"]["provenance"]["stale"], true);
    assert_eq!(
        changed["package"]["provenance"]["citations"][0]["status"],
        "changed"
    );

    // Edit a cited line: check reports it, retrieval flags it.
    let lib = org.join("sources/payments-api/src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(
        &lib,
        code.replace(
            "authorisation id: retrying a capture never charges twice.",
            "authorisation id, except for partial captures, which may charge again.",
        ),
    )
    .unwrap();
    let out = command(org, &["check", "--source", "payments-api", "--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        findings(&v).contains(&(
            "capture-idempotency.md".into(),
            14,
            "stale_citation".into(),
            "error".into()
        )),
        "{v:#}"
    );
    run(org, &["index"]);
    let a = ask(
        org,
        "Is retrying a capture safe, or could it charge twice?",
        "coding-agent",
    );
    assert_eq!(a["served_by"], "topic_package");
    assert_eq!(a["topic"]["outcome"], "served_stale");
    let p = &a["package"]["provenance"];
    assert_eq!(p["status"], "stale");
    assert_eq!(p["citations"][0]["status"], "changed");
    assert_eq!(p["citations"][1]["status"], "unchanged");
    assert!(
        p["stale_reasons"][0]
            .as_str()
            .unwrap()
            .contains("src/lib.rs#L26-L27 changed")
    );
    // With no grace, a stale package is not served.
    std::fs::write(org.join("ctxplane.toml"), "topic_grace_days = 0\n").unwrap();
    let a = ask(
        org,
        "Is retrying a capture safe, or could it charge twice?",
        "coding-agent",
    );
    assert_eq!(a["served_by"], "hybrid");
    assert_eq!(a["topic"]["outcome"], "stale_past_grace");
    std::fs::remove_file(org.join("ctxplane.toml")).unwrap();

    // The steward re-reviews: fresh again, in check and retrieval; audited.
    let r = run_json(org, &["packages", "rehash", "capture-idempotency", "--json"]);
    assert_eq!(r["rehashed"][0]["id"], "capture-idempotency");
    let a = ask(
        org,
        "Is retrying a capture safe, or could it charge twice?",
        "coding-agent",
    );
    assert_eq!(a["topic"]["outcome"], "served");
    assert_eq!(a["package"]["provenance"]["reviewed_by"], "test");
    // Lines added above a cited span move it without changing it: still
    // fresh, served with the lines where the text is now.
    let refunds = org.join("sources/payments-api/src/refunds.rs");
    let code = std::fs::read_to_string(&refunds).unwrap();
    std::fs::write(
        &refunds,
        format!("// Owned by team-payments.\n// See docs/architecture.md.\n{code}"),
    )
    .unwrap();
    run(org, &["index"]);
    let a = ask(org, "Can we give a customer a partial refund?", "coding-agent");
    assert_eq!(a["topic"]["outcome"], "served", "{a:#}");
    let c = &a["package"]["provenance"]["citations"][1];
    assert_eq!(c["status"], "moved");
    assert_eq!(
        (c["start_line"].as_u64(), c["end_line"].as_u64()),
        (Some(20), Some(22))
    );
    assert!(
        a["package"]["content"]
            .as_str()
            .unwrap()
            .contains("[2] payments-api:src/refunds.rs#L20-L22")
    );
    let out = command(org, &["check", "--source", "payments-api", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        findings(&v)
            .iter()
            .any(|f| f.0 == "refunds.md" && f.2 == "moved" && f.3 == "warning"),
        "{v:#}"
    );

    let pv = run_json(org, &["provenance", "topic:capture-idempotency", "--json"]);
    assert_eq!(pv["package"]["status"], "fresh", "{pv:#}");
    assert_eq!(pv["checks"]["checkout"]["status"], "fresh");
    assert!(
        pv["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["action"] == "topic.rehash")
    );
    assert_eq!(
        command(org, &["provenance", "topic:no-such"])
            .status()
            .unwrap()
            .code(),
        Some(1)
    );
    let audit = run(org, &["audit", "tail", "-n", "50"]);
    assert!(audit.contains("topic.rehash"), "{audit}");
    let q = run(org, &["audit", "tail", "-n", "5", "--json"]);
    assert!(q.contains("topic:capture-idempotency"), "{q}");
}

#[test]
fn drafts_list_verify_and_refusals() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);

    // list / verify over the example.
    let l = run_json(org, &["packages", "list", "--json"]);
    let status: Vec<(String, String)> = l["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().into(),
                p["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        status,
        [
            ("capture-idempotency", "fresh"),
            ("card-vault", "stale"),
            ("ledger-reconciliation", "stale"),
            ("postgres-failover", "fresh"),
            ("refunds", "fresh"),
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert!(command(org, &["packages", "verify"]).status().unwrap().code() == Some(1));
    assert!(
        command(org, &["packages", "verify", "refunds"])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(
        command(org, &["packages", "verify", "no-such"])
            .status()
            .unwrap()
            .code(),
        Some(2)
    );

    // An extractive draft: every sentence cited, hashes recorded, not served.
    let out = command(org, &["packages", "draft", "refund window for captured payments"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let file = org.join("topics/refund-window-for-captured-payments.md");
    let text = std::fs::read_to_string(&file).unwrap();
    let pkg = packages::topic::parse(&text).unwrap();
    assert!(pkg.draft);
    assert!(!pkg.citations.is_empty());
    assert!(pkg.citations.iter().all(|c| c.hash.is_some()));
    let markers: usize = pkg.body.lines().map(|l| packages::topic::markers(l).len()).sum();
    let sentences = pkg.body.matches(['.', ':', '?']).count();
    assert!(markers >= 1 && markers >= sentences / 2, "{text}");
    // Drafted text is verbatim from the cited lines.
    for line in pkg.body.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.contains(" ["), "uncited: {line}");
    }
    let v = run_json(org, &["packages", "list", "--json"]);
    assert!(v.to_string().contains("\"status\":\"draft\""), "{v}");
    let out = command(org, &["packages", "draft", "refund window for captured payments"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "a draft never overwrites without --force");
    let r = run_json(
        org,
        &[
            "packages",
            "rehash",
            "refund-window-for-captured-payments",
            "--json",
        ],
    );
    assert_eq!(r["rehashed"].as_array().unwrap().len(), 1, "{r:#}");
    assert!(!std::fs::read_to_string(&file).unwrap().contains("draft = true"));

    // Citations the policy refuses, or that climb out of the source.
    std::fs::write(
        org.join("topics/db-creds.md"),
        "+++\nid = \"db-creds\"\ntitle = \"DB credentials\"\nquestions = [\"db password\"]\nowner = \"team-payments\"\n\n[[citations]]\nref = \"payments-api:config/.env#L2\"\n+++\nSee [1].\n",
    )
    .unwrap();
    let r = command(org, &["packages", "rehash", "db-creds", "--json"])
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["refused"][0]["problems"][0]["code"], "citation_denied", "{v:#}");
    std::fs::write(
        org.join("topics/db-creds.md"),
        "+++\nid = \"escape\"\ntitle = \"x\"\nquestions = [\"x\"]\nowner = \"team-payments\"\nreviewed_at = 2026-01-01\n\n[[citations]]\nref = \"payments-api:../../registry.toml#L1\"\n+++\nSee [1].\n",
    )
    .unwrap();
    let out = command(org, &["check", "--format", "json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        findings(&v).contains(&("db-creds.md".into(), 8, "malformed".into(), "error".into())),
        "{v:#}"
    );
}
