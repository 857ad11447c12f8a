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
//! - the scale-out layout: one indexer, two `serve --read-only` replicas
//!   with no local index sharing one data directory (an audit chain each),
//!   behind a client-side balancer; a source revoked at the indexer
//!   disappears from both replicas' answers at once, and with one Qdrant
//!   node and one replica killed mid-load every query is still answered.
//!
//! Compiled as ignored unless CTXPLANE_QDRANT_BIN was set when the tests
//! were built.
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
        // Ports from the process id and a count of clusters started, so
        // concurrent runs and tests do not collide.
        static STARTED: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let nth = STARTED.fetch_add(1, Ordering::Relaxed) % 4;
        let base = 20_000 + (std::process::id() % 250) as u16 * 160 + nth * 40;
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

/// The writer's `ctxplane.toml`: the cluster at `url`, 3 shards, 2 copies.
fn write_writer_config(org: &Path, url: &str) {
    std::fs::write(
        org.join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"{url}\"\nqdrant_shards = 3\nqdrant_replication = 2\n"
        ),
    )
    .unwrap();
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
    write_writer_config(org, &urls[0]);
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

/// A request through whichever replica is alive (what a load balancer
/// does): `(status, body)`, status 0 when the replica died mid-request.
fn balanced(replicas: &[String], turn: usize, body: &str) -> (u16, String) {
    for k in 0..replicas.len() {
        let addr = &replicas[(turn + k) % replicas.len()];
        if std::net::TcpStream::connect(addr).is_ok() {
            return std::panic::catch_unwind(|| http(addr, "POST", "/v1/context", Some(AGENT), Some(body)))
                .unwrap_or((0, String::new()));
        }
    }
    (0, String::new())
}

#[test]
#[cfg_attr(
    not(qdrant_bin),
    ignore = "needs a Qdrant server binary: set CTXPLANE_QDRANT_BIN when building the tests"
)]
fn replicas_without_an_index_keep_answering_through_node_and_replica_failures() {
    let (cluster, urls) = Cluster::start();
    let tmp = example_org_today();
    let org = tmp.path();
    write_writer_config(org, &urls[0]);
    // The one writer.
    run(org, &["index"]);
    let (mut indexer, iaddr) = start_server(org, &["--no-watch"]);
    let deployment = std::fs::read_to_string(org.join(".ctxplane/deployment-id")).unwrap();
    let (_, ready) = http(&iaddr, "GET", "/readyz", None, None);
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let collection = ready["vector_store"]["collection"].as_str().unwrap().to_string();

    // Two replicas: the indexer's registry (reloaded when it changes), one
    // data directory between them, each on another Qdrant node.
    let shared = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    let mut children = Vec::new();
    for (i, url) in urls[..2].iter().enumerate() {
        let dir = shared.path().join(format!("replica{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("ctxplane.toml"),
            format!(
                "registry = \"{}\"\ndata_dir = \"{}\"\nvector_store = \"qdrant\"\nqdrant_url = \"{url}\"\ndeployment_id = \"{}\"\n",
                org.join("registry.toml").display(),
                shared.path().join("data").display(),
                deployment.trim()
            ),
        )
        .unwrap();
        let (child, addr) = start_server(&dir, &["--read-only"]);
        let (code, ready) = http(&addr, "GET", "/readyz", None, None);
        assert_eq!(code, 200, "{ready}");
        children.push(child);
        replicas.push(addr);
    }
    assert!(!shared.path().join("data/index/lexical").exists());

    let stop = Arc::new(AtomicBool::new(false));
    let revoked_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let killed = Arc::new(AtomicBool::new(false));
    let (errors, dropped, answers, after) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let outside = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..3)
        .map(|c| {
            let (replicas, stop, revoked_at, killed, errors, dropped, answers, after, outside) = (
                replicas.clone(),
                stop.clone(),
                revoked_at.clone(),
                killed.clone(),
                errors.clone(),
                dropped.clone(),
                answers.clone(),
                after.clone(),
                outside.clone(),
            );
            std::thread::spawn(move || {
                let questions = [
                    r#"{"query": "How are refunds limited?", "packages": false}"#,
                    r#"{"query": "ledger reconciliation nightly job", "packages": false}"#,
                    r#"{"query": "capture idempotency key retry", "packages": false, "mode": "lexical"}"#,
                ];
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (code, body) = balanced(&replicas, i, questions[i % 3]);
                    i += 1;
                    match code {
                        200 => {}
                        0 => {
                            dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        _ => {
                            eprintln!("{code}: {body}");
                            errors.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    }
                    answers.fetch_add(1, Ordering::Relaxed);
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                    let revoked = revoked_at.lock().unwrap().is_some_and(|t| sent > t);
                    for r in v["results"].as_array().into_iter().flatten() {
                        let s = r["provenance"]["source"].as_str().unwrap_or("").to_string();
                        if s == "people-ops" || (revoked && s == "ledger-worker") {
                            outside.lock().unwrap().push(s);
                        }
                    }
                    if killed.load(Ordering::Relaxed) {
                        after.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    // Revoked at the indexer: purged there, and out of every replica's
    // scope as soon as the registry file changed.
    let (code, out) = http(
        &iaddr,
        "POST",
        "/v1/sources/ledger-worker/revoke",
        Some(STEWARD),
        Some(r#"{"reason": "replica test"}"#),
    );
    assert_eq!(code, 200, "{out}");
    *revoked_at.lock().unwrap() = Some(Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    // A Qdrant node and a replica die mid-load.
    cluster.kill(3);
    let _ = children[1].kill();
    killed.store(true, Ordering::Relaxed);
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) && after.load(Ordering::Relaxed) < 30 {
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    eprintln!(
        "answers {}, after the kills {}, failed {}, lost in flight {}",
        answers.load(Ordering::Relaxed),
        after.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed)
    );
    assert_eq!(errors.load(Ordering::Relaxed), 0, "queries failed");
    assert!(
        dropped.load(Ordering::Relaxed) <= 3,
        "more than the in-flight requests were lost"
    );
    assert!(after.load(Ordering::Relaxed) >= 30, "answers did not go on");
    assert!(answers.load(Ordering::Relaxed) > 30);
    assert!(
        outside.lock().unwrap().is_empty(),
        "results outside the caller's scope: {:?}",
        outside.lock().unwrap()
    );
    // No surviving node holds a copy of the revoked source's points.
    let (_, ready) = http(&iaddr, "GET", "/readyz", None, None);
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let left = ready["index"]["vectors"].as_u64().unwrap();
    let on_live: u64 = (1..=2).map(|n| cluster.local_points(n, &collection)).sum();
    assert!(
        on_live <= 2 * left && on_live >= left,
        "{on_live} copies of {left} points"
    );
    // And none of them is the revoked source's: not a chunk, not a part of
    // its published manifest.
    let of_revoked =
        r#"{"exact": true, "filter": {"must": [{"key": "source", "match": {"value": "ledger-worker"}}]}}"#;
    for c in [collection.clone(), format!("{collection}_manifests")] {
        let (code, body) = http(
            &cluster.rest(1),
            "POST",
            &format!("/collections/{c}/points/count"),
            None,
            Some(of_revoked),
        );
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v["result"]["count"], 0,
            "{c} still holds the revoked source: {body}"
        );
    }
    // The other sources' manifests are there for the replicas.
    let (_, body) = http(
        &cluster.rest(1),
        "POST",
        &format!("/collections/{collection}_manifests/points/count"),
        None,
        Some(r#"{"exact": true}"#),
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["result"]["count"].as_u64().unwrap_or(0) > 0, "{body}");
    // The replicas' audit chains in the shared directory verify.
    let _ = children[0].kill();
    let _ = children[0].wait();
    let _ = children[1].wait();
    let out = Command::new(env!("CARGO_BIN_EXE_ctxplane"))
        .args(["audit", "verify", "--json"])
        .current_dir(shared.path().join("replica0"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["chains"].as_array().map(Vec::len), Some(2), "{report}");
    let _ = indexer.kill();
    let _ = indexer.wait();
}
