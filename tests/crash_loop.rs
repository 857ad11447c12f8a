//! The crash loop: `kill -9` at random moments across indexing (with and
//! without embedding), revocation and re-approval, and a server indexing or
//! revoking, then one clean pass. The data dir must equal a clean rebuild's
//! (files, hashes, chunk ids, vectors, what queries return) and hold no
//! text of the revoked source. The seed is printed; `CRASH_LOOP_SEED` and
//! `CRASH_LOOP_KILLS` replay or lengthen a run.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{command, example_org_today, files_containing, http, run};

const MARKER: &str = "zqxcrashloopmarker";
const STEWARD: &str = "demo-steward-token";

/// xorshift64*: small, seedable, good enough to pick moments and files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Lets `child` run for `after`, then kills it (SIGKILL) unless it ended;
/// true when it was killed mid-way.
fn kill_after(mut child: Child, after: Duration) -> bool {
    let deadline = Instant::now() + after;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn spawn(org: &Path, args: &[&str]) -> Child {
    command(org, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Generated runbooks, so that a pass and its embedding take long enough
/// for kills to land inside them.
fn grow(org: &Path) {
    let dir = org.join("sources/platform-docs/runbooks/generated");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..80 {
        std::fs::write(dir.join(format!("rb-{i:03}.md")), runbook(i, 0)).unwrap();
    }
    let docs = org.join("sources/payments-api/docs");
    for i in 0..20 {
        std::fs::write(
            docs.join(format!("settlement-{i:02}.md")),
            format!("# Settlement {i} {MARKER}\n\nThe {MARKER} window {i} closes at noon.\n"),
        )
        .unwrap();
    }
}

fn runbook(i: usize, version: u64) -> String {
    format!(
        "# Runbook {i} (rev {version})\n\n## When\n\nPage the on-call when queue {i} backs up beyond {version} minutes.\n\n## Steps\n\n1. Drain worker {i}.\n2. Replay the dead letters of shard {}.\n3. Confirm the lag is under {} seconds.\n",
        i % 7,
        30 + version
    )
}

/// Per source, per file: (content hash, chunk ids) from the manifests.
fn manifests(org: &Path) -> BTreeMap<String, BTreeMap<String, (String, Vec<String>)>> {
    let dir = org.join(".ctxplane/index/manifests");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
        let files = v["files"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(p, f)| {
                let ids = f["chunk_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i.as_str().unwrap().to_string())
                    .collect();
                (p.clone(), (f["hash"].as_str().unwrap().to_string(), ids))
            })
            .collect();
        out.insert(v["source"].as_str().unwrap().to_string(), files);
    }
    out
}

/// What queries return (ids in order), lexically and densely, as the operator.
fn answers(org: &Path) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for q in [
        "replay dead letters",
        "capture idempotency key",
        "failover postgres",
        "queue backs up",
    ] {
        for mode in ["lexical", "dense"] {
            let a: serde_json::Value = serde_json::from_str(&run(
                org,
                &[
                    "query",
                    q,
                    "--mode",
                    mode,
                    "--no-packages",
                    "--limit",
                    "10",
                    "--json",
                ],
            ))
            .unwrap();
            // Equal scores rank by chunk id, so the order is exact too.
            out.push(
                a["results"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| {
                        format!(
                            "{:.4} {}",
                            r["score"].as_f64().unwrap(),
                            r["id"].as_str().unwrap()
                        )
                    })
                    .collect(),
            );
        }
    }
    out
}

fn status(org: &Path) -> (u64, u64) {
    let s: serde_json::Value = serde_json::from_str(&run(org, &["status", "--json"])).unwrap();
    let v = &s["index"]["dense"];
    (
        v["chunks"].as_u64().unwrap_or_else(|| panic!("{s}")),
        v["vectors"].as_u64().unwrap_or_else(|| panic!("{s}")),
    )
}

fn revoked(org: &Path) -> bool {
    std::fs::read_to_string(org.join("registry.toml"))
        .unwrap()
        .contains("status = \"revoked\"")
}

#[test]
fn fifty_kills_leave_the_state_of_a_clean_rebuild() {
    let seed: u64 = std::env::var("CRASH_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let kills_wanted: usize = std::env::var("CRASH_LOOP_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    eprintln!("crash loop seed {seed} (CRASH_LOOP_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let tmp = example_org_today();
    let org = tmp.path();
    grow(org);

    // How long the operations take uninterrupted, to aim kills inside them.
    let t = Instant::now();
    run(org, &["index"]);
    let full = t.elapsed();
    eprintln!("a full pass with embedding takes {full:?}");

    let mut kills = 0;
    let mut rounds = 0;
    let mut version = 1u64;
    while kills < kills_wanted {
        rounds += 1;
        assert!(
            rounds < kills_wanted * 6,
            "only {kills} kills landed in {rounds} rounds"
        );
        // Change some files so that the pass has work (and vectors to make).
        for _ in 0..1 + rng.below(12) {
            let i = rng.below(80) as usize;
            let p = org.join(format!("sources/platform-docs/runbooks/generated/rb-{i:03}.md"));
            if rng.below(8) == 0 {
                let _ = std::fs::remove_file(&p);
            } else {
                version += 1;
                std::fs::write(&p, runbook(i, version)).unwrap();
            }
        }
        let at = Duration::from_millis(rng.below(full.as_millis() as u64 * 12 / 10 + 50));
        let killed = match rng.below(6) {
            0 => kill_after(spawn(org, &["index", "--no-embed"]), at),
            1 | 2 => kill_after(spawn(org, &["index"]), at),
            3 => {
                if revoked(org) {
                    kill_after(spawn(org, &["registry", "approve", "payments-api"]), at)
                } else {
                    kill_after(
                        spawn(org, &["registry", "revoke", "payments-api", "--reason", "drill"]),
                        at,
                    )
                }
            }
            4 => {
                // A server's start-up pass.
                let child = command(org, &["serve", "--listen", "127.0.0.1:0", "--no-watch"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                kill_after(child, at)
            }
            _ => {
                // A server revoking (or approving and ingesting) over HTTP.
                let (child, addr) = common::start_server(org, &["--no-watch"]);
                let action = if revoked(org) { "approve" } else { "revoke" };
                let addr2 = addr.clone();
                let req = std::thread::spawn(move || {
                    http(
                        &addr2,
                        "POST",
                        &format!("/v1/sources/payments-api/{action}"),
                        Some(STEWARD),
                        Some("{\"reason\":\"drill\"}"),
                    )
                });
                let killed = kill_after(child, at);
                let _ = req.join();
                killed
            }
        };
        if killed {
            kills += 1;
        }
    }
    eprintln!("{kills} kills in {rounds} rounds");

    // The end state: payments-api revoked, one clean pass.
    if !revoked(org) {
        run(org, &["registry", "revoke", "payments-api", "--reason", "final"]);
    }
    run(org, &["index"]);
    assert!(run(org, &["audit", "verify"]).contains("intact"));
    let left = files_containing(&[org.join(".ctxplane")], MARKER);
    assert!(
        left.is_empty(),
        "revoked text on disk after the crash loop: {left:?}"
    );
    assert!(!org.join(".ctxplane/index/purges.json").exists());
    assert!(!org.join(".ctxplane/index/pending.json").exists());

    // A clean rebuild of the same files and registry.
    let clean = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(org).unwrap() {
        let e = entry.unwrap();
        if e.file_name() == ".ctxplane" {
            continue;
        }
        if e.file_type().unwrap().is_dir() {
            common::copy_dir(&e.path(), &clean.path().join(e.file_name()));
        } else {
            std::fs::copy(e.path(), clean.path().join(e.file_name())).unwrap();
        }
    }
    run(clean.path(), &["index"]);

    assert_eq!(
        manifests(org),
        manifests(clean.path()),
        "files, hashes or chunk ids differ"
    );
    let (chunks, vectors) = status(org);
    assert_eq!(
        (chunks, vectors),
        status(clean.path()),
        "chunk or vector counts differ"
    );
    assert_eq!(chunks, vectors, "every chunk has its vector");
    assert_eq!(answers(org), answers(clean.path()), "queries answer differently");
}
