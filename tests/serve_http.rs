//! `ctxplane serve` through HTTP on a loopback port: auth (401/403 bodies
//! that reveal nothing), scope and tier ceiling on every endpoint, both
//! tiers, request limits, watch-driven freshness, check, revocation with
//! a verified purge, the emergency stop, metrics, and a graceful shutdown
//! that leaves the audit chain intact.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{example_org_today, files_containing, http, run, sources_in, start_server};
use serde_json::{Value, json};

const CODING: &str = "demo-agent-platform-token";
const SUPPORT: &str = "demo-agent-support-token";
const STEWARD: &str = "demo-steward-token";
const CI: &str = "demo-ci-token";
const DEV: &str = "demo-dev-token";

fn context(addr: &str, token: &str, body: Value) -> (u16, Value) {
    let (code, text) = http(addr, "POST", "/v1/context", Some(token), Some(&body.to_string()));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, Value) {
    let (code, text) = http(addr, "GET", path, token, None);
    (code, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[test]
fn the_api_end_to_end() {
    let tmp = example_org_today();
    let org = tmp.path();
    let (mut server, addr) = start_server(org, &[]);
    let addr = addr.as_str();

    assert_eq!(http(addr, "GET", "/healthz", None, None).0, 200);
    // Serving from the start; the vectors fill in behind (a few seconds here).
    let (code, ready) = get(addr, "/readyz", None);
    assert_eq!(code, 200);
    assert_eq!(ready["ready"], true, "{ready:#}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let ready = loop {
        let (_, r) = get(addr, "/readyz", None);
        if r["vectors"] == "complete" {
            break r;
        }
        assert_eq!(r["vectors"], "building", "{r:#}");
        assert!(Instant::now() < deadline, "vectors never completed: {r:#}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(ready["model"]["available"], true, "{ready:#}");
    let (code, doc) = get(addr, "/v1/openapi.json", None);
    assert_eq!(code, 200);
    assert!(doc["paths"]["/v1/context"]["post"].is_object());

    // Auth: missing, unknown and malformed tokens look the same; a role
    // that may not use an endpoint gets 403 and nothing more.
    let q = json!({"query": "is it safe to retry a capture?"}).to_string();
    let none = http(addr, "POST", "/v1/context", None, Some(&q));
    let wrong = http(addr, "POST", "/v1/context", Some("not-a-token"), Some(&q));
    assert_eq!(none, (401, "{\"error\":\"unauthorized\"}".to_string()));
    assert_eq!(wrong, none);
    assert_eq!(
        http(addr, "POST", "/v1/context", Some(CI), Some(&q)),
        (403, "{\"error\":\"forbidden\"}".to_string())
    );
    assert_eq!(get(addr, "/v1/audit", Some(CODING)).0, 403);
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/sources/payments-api/revoke",
            Some(CODING),
            Some("{\"reason\":\"x\"}")
        )
        .0,
        403
    );

    // Tier 1 for the coding agent, with provenance.
    let (code, a) = context(
        addr,
        CODING,
        json!({"query": "Is retrying a capture safe, or could it charge twice?"}),
    );
    assert_eq!(code, 200);
    assert_eq!(a["served_by"], "topic_package", "{a:#}");
    assert_eq!(
        a["package"]["provenance"]["citations"][0]["source"],
        "payments-api"
    );
    // Tier 2, and a chunk id from payments-api (tier 2) for later.
    let (_, b) = context(
        addr,
        CODING,
        json!({"query": "ledger capture balance currency", "packages": false}),
    );
    assert_eq!(b["served_by"], "hybrid");
    let payments_id = b["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["provenance"]["source"] == "payments-api")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .unwrap();
    let (code, p) = get(addr, &format!("/v1/provenance/{payments_id}"), Some(CODING));
    assert_eq!(code, 200);
    assert_eq!(p["provenance"]["source"], "payments-api");

    // The support agent (platform-docs, tier 1) never sees anything else,
    // through any endpoint; what it may not read looks like what is not there.
    for qtext in [
        "is it safe to retry a capture?",
        "ledger capture balance currency",
        "refund window",
        "database failover",
        "DATABASE_URL password",
    ] {
        for packages in [true, false] {
            let (code, s) = context(addr, SUPPORT, json!({"query": qtext, "packages": packages}));
            assert_eq!(code, 200);
            for src in sources_in(&s) {
                assert_eq!(src, "platform-docs", "{qtext}: {s:#}");
            }
        }
    }
    let hidden = get(addr, &format!("/v1/provenance/{payments_id}"), Some(SUPPORT));
    let missing = get(addr, "/v1/provenance/c-000000000000000000000000", Some(SUPPORT));
    assert_eq!(hidden.0, 404);
    assert_eq!(hidden, missing);
    assert_eq!(
        get(addr, "/v1/provenance/topic:capture-idempotency", Some(SUPPORT)),
        missing
    );
    let (_, srcs) = get(addr, "/v1/sources", Some(SUPPORT));
    assert_eq!(srcs["sources"].as_array().unwrap().len(), 1);
    assert_eq!(srcs["sources"][0]["id"], "platform-docs");
    let (_, fr) = get(addr, "/v1/freshness", Some(SUPPORT));
    let ids: Vec<&str> = fr["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["platform-docs"]);
    // Narrowing to a source outside the grant gives nothing, not an error.
    let (_, n) = context(
        addr,
        SUPPORT,
        json!({"query": "capture", "sources": ["payments-api"]}),
    );
    assert!(sources_in(&n).is_empty(), "{n:#}");

    // Limits and bad input.
    let big = "x".repeat(200 * 1024);
    assert_eq!(http(addr, "POST", "/v1/context", Some(CODING), Some(&big)).0, 413);
    // A query past its limit inside a small body is malformed input (400);
    // 413 is for bodies over the body limit.
    let long = json!({"query": "q".repeat(33_000)}).to_string();
    assert_eq!(
        http(addr, "POST", "/v1/context", Some(CODING), Some(&long)).0,
        400
    );
    assert!(matches!(
        http(addr, "POST", "/v1/context", Some(CODING), Some("{not json")).0,
        400 | 422
    ));
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/context",
            Some(CODING),
            Some("{\"query\":\"x\",\"extra\":1}")
        )
        .0,
        422
    );
    assert_eq!(get(addr, "/v1/nothing-here", Some(CODING)).0, 404);

    // CI gets the check report: the example's planted problems.
    let (code, c) = get(addr, "/v1/check", Some(CI));
    assert_eq!(code, 200);
    assert_eq!(c["ok"], false);
    assert_eq!(c["errors"], 8, "{c:#}");
    // A developer's check covers only their scope (payments-api and
    // platform-docs): nothing about ledger-worker, nor the topic package
    // citing it, and asking for it is the same 404 as an unknown source.
    let (code, d) = get(addr, "/v1/check", Some(DEV));
    assert_eq!(code, 200);
    let text = d.to_string();
    assert!(!text.contains("ledger"), "{d:#}");
    assert!(
        d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["source"] == "payments-api"),
        "{d:#}"
    );
    assert!(
        d["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == "platform-docs"),
        "{d:#}"
    );
    let unknown = get(addr, "/v1/check?source=no-such-source", Some(DEV));
    assert_eq!(unknown.0, 404);
    assert_eq!(get(addr, "/v1/check?source=ledger-worker", Some(DEV)), unknown);
    assert_eq!(get(addr, "/v1/check?source=ledger-worker", Some(STEWARD)).0, 200);
    let (_, st) = get(addr, "/v1/check", Some(STEWARD));
    assert_eq!(st["errors"], 8, "{st:#}");

    // The watcher: an edit is searchable within seconds.
    std::fs::write(
        org.join("sources/platform-docs/runbooks/cache-warmup.md"),
        "# Runbook: cache warm-up\n\nAfter a deploy, prime the zanzibar cache with `warmctl prime`.\n",
    )
    .unwrap();
    let t = Instant::now();
    loop {
        let (_, a) = context(
            addr,
            SUPPORT,
            json!({"query": "zanzibar cache warmctl", "packages": false, "mode": "lexical"}),
        );
        if a["results"].as_array().is_some_and(|r| {
            r.iter()
                .any(|x| x["provenance"]["path"] == "runbooks/cache-warmup.md")
        }) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "edit never became searchable: {a:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Emergency stop: 503 with the reason everywhere but admin, until resumed.
    let (code, _) = get(addr, "/v1/sources", Some(STEWARD));
    assert_eq!(code, 200);
    let stop = http(
        addr,
        "POST",
        "/v1/admin/stop",
        Some(STEWARD),
        Some("{\"reason\":\"leak drill\"}"),
    );
    assert_eq!(stop.0, 200, "{stop:?}");
    let (code, body) = context(addr, CODING, json!({"query": "capture"}));
    assert_eq!(code, 503);
    assert_eq!(body["reason"], "leak drill");
    assert_eq!(get(addr, "/readyz", None).0, 503);
    assert_eq!(
        http(
            addr,
            "POST",
            "/v1/admin/stop",
            Some(CODING),
            Some("{\"reason\":\"x\"}")
        )
        .0,
        403
    );
    // On disk, the source's chunks and vectors are there before the purge.
    let stores = [
        org.join(".ctxplane/index/lexical"),
        org.join(".ctxplane/vectors/embedded"),
    ];
    let needle = "ledger_worker/reconcile.py";
    let found = files_containing(&stores, needle);
    for store in &stores {
        let store = store.to_string_lossy();
        assert!(
            found.iter().any(|f| f.to_string_lossy().starts_with(&*store)),
            "{needle} not in {store}: {found:?}"
        );
    }
    // Other steward work waits for the resume too.
    assert_eq!(get(addr, "/v1/sources", Some(STEWARD)).0, 503);
    // Revocation does not: a leak is purged during the stop, with nothing
    // of the source left in any store.
    let (code, r) = {
        let (c, t) = http(
            addr,
            "POST",
            "/v1/sources/ledger-worker/revoke",
            Some(STEWARD),
            Some("{\"reason\":\"contract ended\"}"),
        );
        (c, serde_json::from_str::<Value>(&t).unwrap())
    };
    assert_eq!(code, 200, "{r:#}");
    assert_eq!(r["purge_verified"], true);
    assert_eq!(
        r["remaining"],
        json!({"chunks": 0, "vectors": 0, "manifest": false, "deleted_in_index": 0, "dead_vectors": 0, "vectors_checked": true, "cached_vectors": 0})
    );
    // Not only out of results: gone from every file of both stores.
    assert_eq!(files_containing(&stores, needle), Vec::<PathBuf>::new());
    assert_eq!(
        http(addr, "POST", "/v1/admin/resume", Some(STEWARD), Some("")).0,
        200
    );
    assert_eq!(context(addr, CODING, json!({"query": "capture"})).0, 200);
    for qtext in ["reconcile ledger processor mismatch", "psycopg"] {
        let (_, a) = context(addr, CODING, json!({"query": qtext}));
        assert!(!sources_in(&a).contains(&"ledger-worker".to_string()), "{a:#}");
    }
    let (_, audit) = get(addr, "/v1/audit?n=200", Some(STEWARD));
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "service.stop",
        "service.resume",
        "source.revoke",
        "source.purge_verified",
        "query",
    ] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }

    let (_, m) = http(addr, "GET", "/metrics", None, None);
    assert!(
        m.contains("ctxplane_queries_total{served_by=\"topic_package\"}"),
        "{m}"
    );
    assert!(m.contains("ctxplane_auth_unauthorized_total 2"), "{m}");
    assert!(m.contains("ctxplane_vector_coverage_ratio"));

    // Graceful shutdown on SIGTERM; the audit chain verifies after.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let t = Instant::now();
    let code = loop {
        if let Some(s) = server.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "server did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success());
    let v: Value = serde_json::from_str(&run(org, &["audit", "verify", "--json"])).unwrap();
    assert_eq!(v["intact"], true, "{v:#}");
}

#[test]
fn a_stop_survives_a_restart() {
    let tmp = example_org_today();
    let org = tmp.path();
    let (mut server, addr) = start_server(org, &["--no-watch"]);
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/admin/stop",
            Some(STEWARD),
            Some("{\"reason\":\"incident 42\"}")
        )
        .0,
        200
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let (mut server, addr) = start_server(org, &["--no-watch"]);
    let (code, body) = context(&addr, CODING, json!({"query": "capture"}));
    assert_eq!(code, 503);
    assert_eq!(body["reason"], "incident 42");
    assert_eq!(
        http(&addr, "POST", "/v1/admin/resume", Some(STEWARD), Some("")).0,
        200
    );
    assert_eq!(context(&addr, CODING, json!({"query": "capture"})).0, 200);
    server.kill().unwrap();
    server.wait().unwrap();
}
