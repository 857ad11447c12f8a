//! `ctxplane index` and `serve` on a real Qdrant server started from the
//! binary CTXPLANE_QDRANT_BIN names (built from Qdrant's source; see the
//! README): readiness and metrics answer (no blocking on async workers),
//! answers are hybrid and identical to the embedded store's, and when the
//! server dies queries are answered lexically with the reason while
//! `/readyz` says 503. Compiled as ignored unless CTXPLANE_QDRANT_BIN was
//! set when the tests were built.
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
