//! `ctxplane index` and `serve` on a real Qdrant server started from the
//! binary CTXPLANE_QDRANT_BIN names (built from Qdrant's source; see the
//! README): readiness and metrics answer (no blocking on async workers),
//! answers are hybrid and identical to the embedded store's, and when the
//! server dies queries are answered lexically with the reason while
//! `/readyz` says 503; a read-only replica with no local index answers
//! from the Qdrant collection alone (both tiers) as the embedded default
//! does. Compiled as ignored unless CTXPLANE_QDRANT_BIN was set when the
//! tests were built.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{command, example_org_today, http, run, start_server};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One Qdrant node on free loopback ports; (child, grpc url).
fn qdrant(dir: &Path) -> (Child, String) {
    let bin =
        std::env::var("CTXPLANE_QDRANT_BIN").expect("CTXPLANE_QDRANT_BIN (set when this test was built)");
    let (http_port, grpc) = (free_port(), free_port());
    let child = Command::new(bin)
        .current_dir(dir)
        .env("QDRANT__SERVICE__HOST", "127.0.0.1")
        .env("QDRANT__SERVICE__HTTP_PORT", http_port.to_string())
        .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
        .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
        .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
        .env("QDRANT__TELEMETRY_DISABLED", "true")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "qdrant did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (child, format!("http://127.0.0.1:{grpc}"))
}

const QUESTION: &str = r#"{"query": "validate_refund partial refund window", "packages": false}"#;
const AGENT: &str = "demo-agent-platform-token";

fn paths(v: &serde_json::Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(
    not(qdrant_bin),
    ignore = "needs a Qdrant server binary: set CTXPLANE_QDRANT_BIN when building the tests"
)]
fn serve_on_qdrant_answers_like_embedded_and_survives_the_server_dying() {
    let q = tempfile::tempdir().unwrap();
    let (mut server, url) = qdrant(q.path());

    // The same organisation on the embedded store, for comparison.
    let embedded = example_org_today();
    run(embedded.path(), &["index"]);
    let (mut e_serve, e_addr) = start_server(embedded.path(), &["--no-watch"]);
    let (_, want) = http(&e_addr, "POST", "/v1/context", Some(AGENT), Some(QUESTION));
    let want: serde_json::Value = serde_json::from_str(&want).unwrap();
    let _ = e_serve.kill();

    let tmp = example_org_today();
    let org = tmp.path();
    std::fs::write(
        org.join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"{url}\"\nqdrant_collection = \"t{}\"\n",
            std::process::id()
        ),
    )
    .unwrap();
    run(org, &["index"]);
    let (mut serve, addr) = start_server(org, &["--no-watch"]);
    let (code, ready) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(code, 200, "{ready}");
    assert!(ready.contains("\"reachable\""), "{ready}");
    let (code, metrics) = http(&addr, "GET", "/metrics", None, None);
    assert_eq!(code, 200, "{metrics}");
    assert!(metrics.contains("ctxplane_vector_coverage_ratio 1"), "{metrics}");
    let (code, got) = http(&addr, "POST", "/v1/context", Some(AGENT), Some(QUESTION));
    assert_eq!(code, 200, "{got}");
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["served_by"], "hybrid", "{got}");
    assert_eq!(
        paths(&got),
        paths(&want),
        "Qdrant and the embedded store answer alike"
    );

    // The server dies: answers go on lexically and say why; not ready.
    let _ = server.kill();
    let _ = server.wait();
    let (code, got) = http(&addr, "POST", "/v1/context", Some(AGENT), Some(QUESTION));
    assert_eq!(code, 200, "{got}");
    let got: serde_json::Value = serde_json::from_str(&got).unwrap();
    assert_eq!(got["served_by"], "lexical", "{got}");
    assert!(
        got["dense"]["reason"]
            .as_str()
            .unwrap()
            .contains("vector store unavailable"),
        "{got}"
    );
    assert!(!got.to_string().contains(&url), "the answer names no address");
    let (code, ready) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(code, 503, "{ready}");
    assert!(
        ready.contains("\"unavailable\"") && !ready.contains(&url),
        "{ready}"
    );
    // And an index run fails rather than indexing without its vectors.
    let out = command(org, &["index"]).output().unwrap();
    assert!(!out.status.success());
    let _ = serve.kill();
    let _ = serve.wait();
}

#[test]
#[cfg_attr(
    not(qdrant_bin),
    ignore = "needs a Qdrant server binary: set CTXPLANE_QDRANT_BIN when building the tests"
)]
fn a_read_only_replica_answers_from_qdrant_alone_like_the_embedded_default() {
    let q = tempfile::tempdir().unwrap();
    let (mut server, url) = qdrant(q.path());
    let questions = [
        r#"{"query": "How are refunds limited?", "packages": false}"#,
        r#"{"query": "How are refunds limited?", "packages": false, "mode": "lexical"}"#,
        r#"{"query": "validate_refund partial refund window", "packages": false}"#,
        r#"{"query": "ledger reconciliation nightly job", "packages": false, "mode": "lexical"}"#,
        r#"{"query": "capture idempotency key retry", "packages": false, "group_by": "file"}"#,
        // Tier 1: the topic package, its citations verified against the
        // published manifests and the shared chunks.
        r#"{"query": "How are refunds limited?"}"#,
    ];
    let ask = |addr: &str| -> Vec<serde_json::Value> {
        questions
            .iter()
            .map(|body| {
                let (code, got) = http(addr, "POST", "/v1/context", Some(AGENT), Some(body));
                assert_eq!(code, 200, "{body}: {got}");
                serde_json::from_str(&got).unwrap()
            })
            .collect()
    };

    // The embedded default.
    let embedded = example_org_today();
    run(embedded.path(), &["index"]);
    let (mut e_serve, e_addr) = start_server(embedded.path(), &["--no-watch"]);
    let want = ask(&e_addr);
    let _ = e_serve.kill();

    // The one indexer, writing the shared collection.
    let writer = example_org_today();
    let collection = format!("r{}", std::process::id());
    std::fs::write(
        writer.path().join("ctxplane.toml"),
        format!("vector_store = \"qdrant\"\nqdrant_url = \"{url}\"\nqdrant_collection = \"{collection}\"\n"),
    )
    .unwrap();
    run(writer.path(), &["index"]);
    let deployment = std::fs::read_to_string(writer.path().join(".ctxplane/deployment-id")).unwrap();

    // A replica: the registry and topics, no data of the writer's.
    let replica = example_org_today();
    std::fs::write(
        replica.path().join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"{url}\"\nqdrant_collection = \"{collection}\"\ndeployment_id = \"{}\"\n",
            deployment.trim()
        ),
    )
    .unwrap();
    let (mut r_serve, r_addr) = start_server(replica.path(), &["--read-only"]);
    let (code, ready) = http(&r_addr, "GET", "/readyz", None, None);
    assert_eq!(code, 200, "{ready}");
    let got = ask(&r_addr);
    for ((body, w), g) in questions.iter().zip(&want).zip(&got) {
        assert_eq!(g["served_by"], w["served_by"], "{body}: {g}");
        assert_eq!(
            paths(g),
            paths(w),
            "{body}: the replica answers as the embedded default"
        );
        assert_eq!(
            g["files"].as_array().map(Vec::len),
            w["files"].as_array().map(Vec::len),
            "{body}"
        );
        assert_eq!(g["package"]["id"], w["package"]["id"], "{body}: {g}");
        let statuses = |a: &serde_json::Value| -> Vec<serde_json::Value> {
            a["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["provenance"]["status"].clone())
                .collect()
        };
        assert_eq!(
            statuses(g),
            statuses(w),
            "{body}: provenance from the published manifests"
        );
        for r in g["results"].as_array().unwrap() {
            assert!(
                r["provenance"]["citation"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty()),
                "{r}"
            );
            assert!(!r["content"].as_str().unwrap().is_empty(), "{r}");
        }
    }
    // "How are refunds limited?" starts with validate_refund in both.
    assert!(
        got[0]["results"][0]["content"]
            .as_str()
            .unwrap()
            .contains("validate_refund"),
        "{}",
        got[0]
    );
    // The replica has no index of its own and writes none.
    assert!(!replica.path().join(".ctxplane/index/lexical").exists());
    // What would write is refused, with where to do it.
    let (code, body) = http(
        &r_addr,
        "POST",
        "/v1/sources/payments-api/revoke",
        Some("demo-steward-token"),
        Some(r#"{"reason": "test"}"#),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("read-only replica"), "{body}");
    let _ = r_serve.kill();
    let _ = r_serve.wait();
    let _ = server.kill();
    let _ = server.wait();
}
