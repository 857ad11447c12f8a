//! A process killed between two durable steps of a purge: whatever runs
//! next (a pass, or a server starting, even during an emergency stop)
//! finishes the purge, removes the text from disk and audits the proof.
//! `CTXPLANE_CRASH_AT` ends the process at a named point as `kill -9` would.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{command, example_org_today, files_containing, http, run, start_server};

const MARKER: &str = "zqxrevokedmarker";
const STEWARD: &str = "demo-steward-token";

/// The example organisation, indexed with vectors, with a marker in a
/// source about to be revoked (in a file's name and its text).
fn indexed_org() -> tempfile::TempDir {
    let tmp = example_org_today();
    let org = tmp.path();
    std::fs::write(
        org.join(format!("sources/payments-api/docs/{MARKER}.md")),
        format!("# Settlement {MARKER}\n\nThe {MARKER} settlement window closes at noon.\n"),
    )
    .unwrap();
    run(org, &["index"]);
    assert!(!on_disk(org).is_empty(), "the marker was indexed");
    tmp
}

fn data(org: &Path) -> PathBuf {
    org.join(".ctxplane")
}

/// Files of the data dir that hold the marker (the audit log names the
/// revoked source, never its content or paths).
fn on_disk(org: &Path) -> Vec<PathBuf> {
    files_containing(&[data(org)], MARKER)
}

/// `registry revoke` killed at `point`.
fn revoke_killed_at(org: &Path, point: &str) {
    let out = command(org, &["registry", "revoke", "payments-api", "--reason", "leak"])
        .env("CTXPLANE_CRASH_AT", point)
        .output()
        .unwrap();
    assert!(
        !out.status.success() && out.status.code().is_none(),
        "{point}: the revoke was meant to die there: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `source.purge_verified` entries for payments-api in the audit log.
fn purge_proofs(org: &Path) -> Vec<serde_json::Value> {
    let tail: serde_json::Value =
        serde_json::from_str(&run(org, &["audit", "tail", "-n", "200", "--json"])).unwrap();
    tail.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "source.purge_verified" && e["subject"] == "payments-api")
        .cloned()
        .collect()
}

#[test]
fn a_purge_killed_at_any_step_is_finished_by_the_next_pass() {
    let base = indexed_org();
    for point in [
        "pass.committed",
        "pass.stored",
        "vectors.synced",
        "purge.expunged",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let org = tmp.path();
        common::copy_dir(base.path(), org);
        revoke_killed_at(org, point);
        if point != "purge.expunged" {
            // The window is real: the text is still on disk.
            assert!(!on_disk(org).is_empty(), "{point}: nothing left to finish");
        }
        assert!(
            data(org).join("index/purges.json").exists(),
            "{point}: the intent was journalled"
        );
        assert!(
            purge_proofs(org).is_empty(),
            "{point}: no proof before it is done"
        );

        run(org, &["index"]);
        let left = on_disk(org);
        assert!(left.is_empty(), "{point}: revoked text still on disk in {left:?}");
        let proofs = purge_proofs(org);
        assert_eq!(proofs.len(), 1, "{point}: {proofs:?}");
        assert_eq!(proofs[0]["details"]["clean"], true, "{point}: {proofs:?}");
        if point != "pass.committed" {
            // (Killed before its manifest went, the source is simply purged again.)
            assert_eq!(proofs[0]["details"]["resumed"], true, "{point}: {proofs:?}");
        }
        assert!(!data(org).join("index/purges.json").exists(), "{point}");
        assert!(run(org, &["audit", "verify"]).contains("intact"));
        // And the index is healthy: a second pass changes nothing.
        let again: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
        assert_eq!(again["report"]["committed"], false, "{point}: {again}");
    }
}

#[test]
fn a_server_starting_during_a_stop_finishes_a_killed_purge() {
    let tmp = indexed_org();
    let org = tmp.path();
    let (mut server, addr) = start_server(org, &[]);
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/admin/stop",
        Some(STEWARD),
        Some("{\"reason\":\"leak drill\"}"),
    );
    assert_eq!(code, 200, "{body}");
    server.kill().unwrap();
    server.wait().unwrap();

    revoke_killed_at(org, "pass.stored");
    assert!(!on_disk(org).is_empty());

    let (mut server, addr) = start_server(org, &[]);
    // Still stopped, and the purge is finished before the server is ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while data(org).join("index/purges.json").exists() {
        assert!(std::time::Instant::now() < deadline, "purge never finished");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still stopped: the purge ran without lifting the stop.
    assert_eq!(http(&addr, "GET", "/readyz", None, None).0, 503);
    server.kill().unwrap();
    server.wait().unwrap();
    let left = on_disk(org);
    assert!(left.is_empty(), "revoked text still on disk in {left:?}");
    let proofs = purge_proofs(org);
    assert_eq!(proofs.len(), 1, "{proofs:?}");
    assert_eq!(proofs[0]["details"]["clean"], true, "{proofs:?}");
}

#[test]
fn a_purge_is_not_called_clean_while_its_vectors_cannot_be_checked() {
    let tmp = indexed_org();
    let org = tmp.path();
    // No model here: the vector store on disk cannot be opened.
    let empty = tempfile::tempdir().unwrap();
    let out = command(
        org,
        &["registry", "revoke", "payments-api", "--reason", "leak", "--json"],
    )
    .env("CTXPLANE_MODEL_DIR", empty.path())
    .output()
    .unwrap();
    assert!(
        !out.status.success(),
        "a purge without its vectors checked passed"
    );
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("purge_incomplete"), "{body}");
    assert!(
        data(org).join("index/purges.json").exists(),
        "the intent was dropped"
    );
    // With the model back, the next pass finishes and proves it.
    run(org, &["index"]);
    assert!(on_disk(org).is_empty());
    let proofs = purge_proofs(org);
    let last = proofs.last().unwrap();
    assert_eq!(last["details"]["clean"], true, "{proofs:?}");
    assert!(!data(org).join("index/purges.json").exists());
}

#[test]
fn embeddings_survive_a_pass_killed_while_embedding() {
    let tmp = example_org_today();
    let org = tmp.path();
    let out = command(org, &["index"])
        .env("CTXPLANE_CRASH_AT", "embed.group")
        .output()
        .unwrap();
    assert!(out.status.code().is_none(), "meant to die embedding: {out:?}");
    let again: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
    let v = &again["vectors"];
    assert!(
        v["from_cache"].as_u64().unwrap() >= 1,
        "the killed pass's embeddings were lost: {v}"
    );
    assert_eq!(v["vectors"], v["chunks"], "{v}");
}
