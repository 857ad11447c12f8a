//! Answer provenance through the real binary: the registry as it is now is
//! applied at query time (a new never-ingest rule or a lapsed exception
//! hides a path at once, in both tiers and every interface); every answer
//! is recorded as a snapshot that resolves later with what changed since
//! (moved, changed lines, removed, source revoked); `check --snapshots`
//! fails a text that cites context that no longer holds; snapshots are
//! scoped; results carry the versions their imports and claims pin.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{command, example_org_today, http, run, run_json, start_server};
use serde_json::{Value, json};

const CODING: &str = "demo-agent-platform-token";
const SUPPORT: &str = "demo-agent-support-token";
const STEWARD: &str = "demo-steward-token";
const DEV: &str = "demo-dev-token";

fn context(addr: &str, token: &str, body: Value) -> Value {
    let (code, text) = http(addr, "POST", "/v1/context", Some(token), Some(&body.to_string()));
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn paths(a: &Value) -> Vec<String> {
    a["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provenance"]["path"].as_str().unwrap().to_string())
        .collect()
}

fn deny_refunds(org: &Path) {
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    let edited = text.replace(
        r#"patterns = ["**/customer-exports/**", "*.sql.gz"]"#,
        r#"patterns = ["**/customer-exports/**", "*.sql.gz", "**/refunds.rs"]"#,
    );
    assert_ne!(text, edited);
    std::fs::write(reg, edited).unwrap();
}

#[test]
fn a_new_never_ingest_rule_hides_a_path_at_once_in_both_tiers_and_every_interface() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let (mut server, addr) = start_server(org, &["--no-watch", "--no-embed"]);
    let search = json!({"query": "refund window", "mode": "lexical", "packages": false});
    let cli_search = [
        "query",
        "refund window",
        "--mode",
        "lexical",
        "--no-packages",
        "--json",
    ];

    let before = context(&addr, CODING, search.clone());
    assert!(paths(&before).iter().any(|p| p == "src/refunds.rs"), "{before:#}");
    let refunds_chunk = before["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provenance"]["path"] == "src/refunds.rs")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let tier1 = run_json(org, &["query", "refund", "--mode", "lexical", "--json"]);
    assert_eq!(tier1["served_by"], "topic_package", "{tier1:#}");
    assert_eq!(
        http(
            addr.as_str(),
            "GET",
            &format!("/v1/provenance/{refunds_chunk}"),
            Some(CODING),
            None
        )
        .0,
        200
    );

    // A steward adds a rule; nothing is re-indexed.
    deny_refunds(org);

    let cli = run_json(org, &cli_search);
    assert!(!paths(&cli).iter().any(|p| p.ends_with("refunds.rs")), "{cli:#}");
    assert!(cli["withheld_by_policy"].as_u64().unwrap() >= 1, "{cli:#}");
    let over_http = context(&addr, CODING, search);
    assert!(!paths(&over_http).iter().any(|p| p.ends_with("refunds.rs")));
    assert!(over_http["withheld_by_policy"].as_u64().unwrap() >= 1);

    // Tier 1: the package citing the path is not served, and says why.
    for a in [
        run_json(org, &["query", "refund", "--mode", "lexical", "--json"]),
        context(&addr, CODING, json!({"query": "refund", "mode": "lexical"})),
    ] {
        assert_ne!(a["served_by"], "topic_package", "{a:#}");
        assert_eq!(a["topic"]["outcome"], "citation_denied", "{a:#}");
        assert!(
            a["topic"]["reason"].as_str().unwrap().contains("src/refunds.rs"),
            "{a:#}"
        );
        assert!(!paths(&a).iter().any(|p| p.ends_with("refunds.rs")));
    }
    // Nor by id.
    let (code, body) = http(
        addr.as_str(),
        "GET",
        &format!("/v1/provenance/{refunds_chunk}"),
        Some(CODING),
        None,
    );
    assert_eq!(code, 404, "{body}");
    // The operator sees where it is and why, not the text.
    let op = run_json(org, &["provenance", &refunds_chunk, "--json"]);
    assert!(op["content"].is_null(), "{op:#}");
    assert_eq!(op["checks"]["policy_now"]["reason"], "never_ingest");

    // The next pass purges it, as before.
    let planted = "never exceed the captured amount";
    let lexical = org.join(".ctxplane/index/lexical");
    assert!(!common::files_containing(std::slice::from_ref(&lexical), planted).is_empty());
    run(org, &["index", "--no-embed"]);
    assert!(common::files_containing(&[lexical], planted).is_empty());
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_lapsing_exception_hides_its_path_the_moment_it_lapses() {
    let tmp = example_org_today();
    let org = tmp.path();
    // The example's exception lets `config/.env.example` in; make it lapse
    // a few seconds from now (an edit outside ctxplane, audited as such).
    let lapse = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(8);
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    std::fs::write(
        &reg,
        text.replace(
            "expires_at = 2027-10-31T00:00:00Z",
            &format!("expires_at = {}", lapse.round(jiff::Unit::Second).unwrap()),
        ),
    )
    .unwrap();
    run(org, &["index", "--no-embed"]);
    let q = [
        "query",
        "DATABASE_URL STRIPE_API_KEY placeholders",
        "--mode",
        "lexical",
        "--no-packages",
        "--json",
    ];
    let live = run_json(org, &q);
    assert!(
        paths(&live).iter().any(|p| p == "config/.env.example"),
        "{live:#}"
    );
    while jiff::Timestamp::now() <= lapse + jiff::SignedDuration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let lapsed = run_json(org, &q);
    assert!(
        !paths(&lapsed).iter().any(|p| p == "config/.env.example"),
        "{lapsed:#}"
    );
    assert!(lapsed["withheld_by_policy"].as_u64().unwrap() >= 1);
}

fn resolve(org: &Path, id: &str) -> Value {
    run_json(org, &["provenance", id, "--json"])
}

fn status_of<'a>(r: &'a Value, path: &str) -> Vec<&'a Value> {
    r["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["citation"].as_str().unwrap().contains(&format!(":{path}#")))
        .collect()
}

fn check_snapshots(org: &Path, text: &str, format: &str) -> (i32, String) {
    let file = org.join("pr-description.md");
    std::fs::write(&file, text).unwrap();
    let out = command(
        org,
        &["check", "--snapshots", file.to_str().unwrap(), "--format", format],
    )
    .output()
    .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_snapshot_resolves_with_what_changed_since_and_ci_fails_a_stale_citation() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let a = run_json(
        org,
        &[
            "query",
            "refund window",
            "--mode",
            "lexical",
            "--no-packages",
            "--json",
        ],
    );
    let id = a["snapshot"]["id"].as_str().unwrap().to_string();
    let cite = a["snapshot"]["cite"].as_str().unwrap().to_string();
    assert_eq!(cite, format!("ctxplane:{id}"));
    let served = a["results"].as_array().unwrap();
    assert!(
        served.iter().all(|r| r["provenance"]["source"] == "payments-api"),
        "{a:#}"
    );
    let refunds: Vec<&Value> = served
        .iter()
        .filter(|r| r["provenance"]["path"] == "src/refunds.rs")
        .collect();
    assert!(!refunds.is_empty() && refunds.len() < served.len(), "{a:#}");
    for r in served {
        let p = &r["provenance"];
        assert!(
            p["citation"].as_str().unwrap().starts_with(&format!(
                "payments-api:{}#L{}-L{}@",
                p["path"].as_str().unwrap(),
                p["start_line"],
                p["end_line"]
            )),
            "{p:#}"
        );
    }

    // Right after: everything holds, the record is vouched for by the audit log.
    let now = resolve(org, &cite);
    assert_eq!(now["verdict"], "holds", "{now:#}");
    assert_eq!(now["record_intact"], true);
    assert!(now["audit_seq"].as_u64().is_some());
    assert_eq!(now["snapshot"]["results"].as_array().unwrap().len(), served.len());
    assert!(
        now["snapshot"].get("query").is_none(),
        "the query text is not kept by default"
    );
    let (code, out) = check_snapshots(org, &format!("Fixes refunds.\n\nGrounded in {cite}.\n"), "text");
    assert_eq!(code, 0, "{out}");

    // Moved: three lines above the served text.
    let file = org.join("sources/payments-api/src/refunds.rs");
    let original = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("// a\n// b\n// c\n{original}")).unwrap();
    let moved = resolve(org, &id);
    for (r, hit) in status_of(&moved, "src/refunds.rs").iter().zip(&refunds) {
        assert_eq!(r["status"], "moved", "{moved:#}");
        let start = hit["provenance"]["start_line"].as_u64().unwrap();
        assert_eq!(r["lines_now"][0].as_u64().unwrap(), start + 3);
    }
    assert_eq!(moved["verdict"], "holds", "{moved:#}");

    // Changed: one served line edited.
    let first = refunds
        .iter()
        .min_by_key(|r| r["provenance"]["start_line"].as_u64())
        .unwrap();
    let (start, end) = (
        first["provenance"]["start_line"].as_u64().unwrap() as usize,
        first["provenance"]["end_line"].as_u64().unwrap() as usize,
    );
    let target = (start..=end)
        .find(|l| !original.lines().nth(l - 1).unwrap().trim().is_empty())
        .unwrap();
    let edited: Vec<String> = original
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == target {
                format!("{l} // edited")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&file, edited.join("\n") + "\n").unwrap();
    let changed = resolve(org, &id);
    let r = status_of(&changed, "src/refunds.rs")
        .into_iter()
        .find(|r| r["id"] == first["id"])
        .unwrap();
    assert_eq!(r["status"], "changed", "{changed:#}");
    assert_eq!(r["changed_lines"], json!([[target, target]]), "{changed:#}");
    assert_eq!(r["holds"], false);
    assert_eq!(changed["verdict"], "partly_stale", "{changed:#}");
    let (code, out) = check_snapshots(org, &format!("Grounded in {cite}.\n"), "github");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("::error file=") && out.contains("snapshot_stale"),
        "{out}"
    );
    assert!(out.contains("src/refunds.rs"), "{out}");
    let (code, out) = check_snapshots(
        org,
        "cites ctxplane:snap-20260101-000000000000000000000000\n",
        "text",
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("unknown_snapshot"), "{out}");

    // Removed.
    std::fs::remove_file(&file).unwrap();
    let removed = resolve(org, &id);
    assert!(
        status_of(&removed, "src/refunds.rs")
            .iter()
            .all(|r| r["status"] == "removed")
    );

    // Revoked: every result is from the source, so nothing holds.
    run(
        org,
        &[
            "registry",
            "revoke",
            "payments-api",
            "--reason",
            "moved to another org",
        ],
    );
    let revoked = resolve(org, &id);
    assert!(
        revoked["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "source_revoked"),
        "{revoked:#}"
    );
    assert_eq!(revoked["verdict"], "no_longer_valid");
    let actions: Vec<&str> = revoked["changes_since"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"source.revoke"), "{actions:?}");
    let (code, _) = check_snapshots(org, &format!("Grounded in {cite}.\n"), "json");
    assert_eq!(code, 1);
}

#[test]
fn snapshots_resolve_only_within_the_callers_scope() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let (mut server, addr) = start_server(org, &["--no-watch", "--no-embed"]);
    let addr = addr.as_str();
    let steward = context(
        addr,
        STEWARD,
        json!({"query": "refund window", "mode": "lexical", "packages": false, "sources": ["payments-api"]}),
    );
    let id = steward["snapshot"]["id"].as_str().unwrap();
    let unknown = http(
        addr,
        "GET",
        "/v1/snapshots/snap-20260101-000000000000000000000000",
        Some(SUPPORT),
        None,
    );
    assert_eq!(unknown.0, 404);
    // The support agent (platform-docs, tier 1) may read none of it: the
    // same 404 as an unknown id, over HTTP and through explain.
    let path = format!("/v1/snapshots/{id}");
    assert_eq!(http(addr, "GET", &path, Some(SUPPORT), None), unknown);
    assert_eq!(
        http(
            addr,
            "GET",
            &format!("/v1/provenance/ctxplane:{id}"),
            Some(SUPPORT),
            None
        )
        .1,
        http(
            addr,
            "GET",
            "/v1/provenance/snap-20260101-000000000000000000000000",
            Some(SUPPORT),
            None
        )
        .1
    );
    // A developer granted payments-api may read every result; so may the
    // steward who asked and a coding agent over every source.
    for token in [DEV, STEWARD, CODING] {
        let (code, body) = http(addr, "GET", &path, Some(token), None);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["verdict"], "holds");
        assert_eq!(v["snapshot"]["principal"], "rivera");
    }
    // The support agent's own answer is its own to resolve.
    let own = context(
        addr,
        SUPPORT,
        json!({"query": "postgres failover", "mode": "lexical"}),
    );
    let (code, body) = http(
        addr,
        "GET",
        &format!("/v1/snapshots/{}", own["snapshot"]["id"].as_str().unwrap()),
        Some(SUPPORT),
        None,
    );
    assert_eq!(code, 200, "{body}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn results_name_the_versions_their_imports_and_claims_pin() {
    let tmp = example_org_today();
    let org = tmp.path();
    std::fs::write(
        org.join("sources/payments-api/src/settlement.rs"),
        "use std::collections::HashMap;\nuse tokio::sync::Mutex;\nuse serde::Serialize;\nuse crate::Money;\n\n\
         /// Settlement batches, one lock per merchant.\npub struct SettlementLedger {\n    batches: Mutex<HashMap<String, u64>>,\n}\n",
    )
    .unwrap();
    std::fs::write(
        org.join("sources/ledger-worker/ledger_worker/settle.py"),
        "import os\nimport psycopg\nfrom tenacity import retry, stop_after_attempt\nimport leftpadx\n\n\n\
         @retry(stop=stop_after_attempt(3))\ndef settle_batches(dsn=os.environ.get('LEDGER_DSN')):\n    with psycopg.connect(dsn) as conn:\n        return leftpadx.pad(conn)\n",
    )
    .unwrap();
    run(org, &["index", "--no-embed"]);
    let versions = |q: &str, path: &str| -> Vec<Value> {
        let a = run_json(org, &["query", q, "--mode", "lexical", "--no-packages", "--json"]);
        let hit = a["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["provenance"]["path"] == path)
            .unwrap_or_else(|| panic!("{path} not in {a:#}"));
        hit["provenance"]["versions"].as_array().unwrap().clone()
    };
    let by_package = |v: &[Value], p: &str| -> Value {
        v.iter()
            .find(|x| x["package"] == p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} not in {v:#?}"))
    };

    let rust = versions("SettlementLedger batches merchant", "src/settlement.rs");
    let tokio = by_package(&rust, "tokio");
    assert_eq!(tokio["status"], "pinned");
    assert_eq!(tokio["pinned"], json!(["1.41.1 (Cargo.lock:275)"]));
    assert_eq!(by_package(&rust, "std")["status"], "standard_library");
    // The chunk holds the import lines themselves, so serde is listed too.
    assert_eq!(
        by_package(&rust, "serde")["pinned"],
        json!(["1.0.229 (Cargo.lock:197)"])
    );

    let py = versions("settle_batches LEDGER_DSN", "ledger_worker/settle.py");
    assert_eq!(
        by_package(&py, "psycopg")["pinned"],
        json!(["3.2.3 (requirements.txt:2)"])
    );
    assert_eq!(
        by_package(&py, "tenacity")["pinned"],
        json!(["9.0.0 (requirements.txt:5)"])
    );
    assert_eq!(by_package(&py, "os")["status"], "standard_library");
    let unknown = by_package(&py, "leftpadx");
    assert_eq!(unknown["status"], "unresolved");
    assert!(unknown["note"].as_str().unwrap().contains("leftpadx"));

    // Docs: every claim with whether the pins match it.
    let doc = versions("architecture tokio", "docs/architecture.md");
    let claim = by_package(&doc, "tokio");
    assert_eq!(
        (claim["kind"].as_str(), claim["status"].as_str()),
        (Some("claim"), Some("drifts"))
    );
    assert_eq!(claim["pinned"], json!(["1.41.1 (Cargo.lock:275)"]));
}
