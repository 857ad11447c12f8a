//! ctxplane on a three-node Qdrant cluster (started by
//! `scripts/qdrant-cluster.sh` from the binary CTXPLANE_QDRANT_BIN names),
//! the collection with 3 shards and 2 copies of each:
//!
//! - a revocation leaves none of the source's points on any node (the
//!   copies every node holds add up to exactly 2 x what remains);
//! - killing a node mid-load loses no query (every answer 200, the dead
//!   node's shards served by their other copies) and no answer holds a
//!   result outside the caller's scope.
//!
//! Compiled as ignored unless CTXPLANE_QDRANT_BIN was set when the tests
//! were built. Serve replicas without a local index are not covered yet
//! (`serve` owns its lexical index).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{example_org_today, http, run, start_server};

const AGENT: &str = "demo-agent-platform-token";
const STEWARD: &str = "demo-steward-token";

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/qdrant-cluster.sh")
}

struct Cluster {
    dir: tempfile::TempDir,
    base: u16,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

impl Cluster {
    fn start() -> (Cluster, Vec<String>) {
        let bin =
            std::env::var("CTXPLANE_QDRANT_BIN").expect("CTXPLANE_QDRANT_BIN (set when this test was built)");
        let dir = tempfile::tempdir().unwrap();
        // Ports from the process id, so concurrent runs do not collide.
        let base = 20_000 + (std::process::id() % 1_000) as u16 * 40;
        let out = Command::new("bash")
            .arg(script())
            .args(["start", &bin])
            .arg(dir.path())
            .arg(base.to_string())
            .output()
            .unwrap();
        let c = Cluster { dir, base };
        assert!(
            out.status.success(),
            "cluster: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let urls = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        (c, urls)
    }

    fn rest(&self, node: u16) -> String {
        format!("127.0.0.1:{}", self.base + node * 10 + 1)
    }

    /// Points held by `node`'s own shard copies.
    fn local_points(&self, node: u16, collection: &str) -> u64 {
        let (code, body) = http(
            &self.rest(node),
            "GET",
            &format!("/collections/{collection}/cluster"),
            None,
            None,
        );
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["result"]["local_shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["points_count"].as_u64().unwrap())
            .sum()
    }

    fn kill(&self, node: u16) {
        let pid = std::fs::read_to_string(self.dir.path().join(format!("node{node}/pid"))).unwrap();
        let _ = Command::new("kill").args(["-9", pid.trim()]).status();
    }
}

#[test]
#[cfg_attr(
    not(qdrant_bin),
    ignore = "needs a Qdrant server binary: set CTXPLANE_QDRANT_BIN when building the tests"
)]
fn a_three_node_cluster_keeps_answering_and_purges_every_copy() {
    let (cluster, urls) = Cluster::start();
    assert_eq!(urls.len(), 3);
    let tmp = example_org_today();
    let org = tmp.path();
    std::fs::write(
        org.join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"{}\"\nqdrant_shards = 3\nqdrant_replication = 2\n",
            urls[0]
        ),
    )
    .unwrap();
    run(org, &["index"]);
    let (mut serve, addr) = start_server(org, &["--no-watch"]);
    let (code, ready) = http(&addr, "GET", "/readyz", None, None);
    assert_eq!(code, 200, "{ready}");
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let collection = ready["vector_store"]["collection"].as_str().unwrap().to_string();
    let total = ready["index"]["vectors"].as_u64().unwrap();
    assert!(total > 0);
    let copies = |c: &Cluster| (1..=3).map(|n| c.local_points(n, &collection)).sum::<u64>();
    assert_eq!(copies(&cluster), 2 * total, "every point has two copies");

    // Revoke: the proof is clean, and no node keeps a copy.
    let (code, out) = http(
        &addr,
        "POST",
        "/v1/sources/ledger-worker/revoke",
        Some(STEWARD),
        Some(r#"{"reason": "cluster purge test"}"#),
    );
    assert_eq!(code, 200, "{out}");
    let out: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["purge_verified"], true, "{out}");
    let (_, ready) = http(&addr, "GET", "/readyz", None, None);
    let left: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let left = left["index"]["vectors"].as_u64().unwrap();
    assert!(left < total, "{left} of {total}");
    assert_eq!(copies(&cluster), 2 * left, "a node kept copies of revoked points");

    // What the agent may read.
    let (_, sources) = http(&addr, "GET", "/v1/sources", Some(AGENT), None);
    let sources: serde_json::Value = serde_json::from_str(&sources).unwrap();
    let visible: Vec<String> = sources["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();

    // Load, and a node killed in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let (errors, answers, hybrid_after) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let killed = Arc::new(AtomicBool::new(false));
    let outside = Arc::new(std::sync::Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (addr, stop, errors, answers, hybrid_after, killed, outside, visible) = (
                addr.clone(),
                stop.clone(),
                errors.clone(),
                answers.clone(),
                hybrid_after.clone(),
                killed.clone(),
                outside.clone(),
                visible.clone(),
            );
            std::thread::spawn(move || {
                let questions = [
                    r#"{"query": "How are refunds limited?", "packages": false}"#,
                    r#"{"query": "promote the replica and repoint the pooler", "packages": false}"#,
                    r#"{"query": "capture idempotency key retry", "packages": false}"#,
                ];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (code, body) =
                        http(&addr, "POST", "/v1/context", Some(AGENT), Some(questions[i % 3]));
                    i += 1;
                    if code != 200 {
                        errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    answers.fetch_add(1, Ordering::Relaxed);
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    for r in v["results"].as_array().into_iter().flatten() {
                        let s = r["provenance"]["source"].as_str().unwrap_or("").to_string();
                        if !visible.contains(&s) || s == "ledger-worker" {
                            outside.lock().unwrap().push(s);
                        }
                    }
                    if killed.load(Ordering::Relaxed) && v["served_by"] == "hybrid" {
                        hybrid_after.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill(3);
    killed.store(true, Ordering::Relaxed);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && hybrid_after.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(errors.load(Ordering::Relaxed), 0, "queries failed");
    assert!(answers.load(Ordering::Relaxed) > 20);
    assert!(
        outside.lock().unwrap().is_empty(),
        "results outside the caller's scope: {:?}",
        outside.lock().unwrap()
    );
    assert!(
        hybrid_after.load(Ordering::Relaxed) >= 20,
        "hybrid answers did not resume on the surviving copies"
    );
}
