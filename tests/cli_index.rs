//! Indexing a real source tree through the binary: planted secrets and
//! never-ingest files leave no trace anywhere under the data dir.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::Path;

use common::{copy_dir, files_under, run};

const PLANTED: &[&str] = &[
    "Pr0dPassw0rd-Fake-9d8f",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx",
    "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "CHANGE_ME",
];

#[test]
fn planted_secrets_and_never_ingest_files_leave_no_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let org = tmp.path();
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme"), org);
    let src = org.join("sources/payments-api/src");
    std::fs::write(
        src.join("client.rs"),
        "// Stripe client\nconst STRIPE_KEY: &str = \"sk_live_4eC39HqLyjWDarjtT1zdp7dc\";\nfn gh() -> &'static str { \"ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx\" }\n",
    )
    .unwrap();
    std::fs::write(src.join("blob.bin"), b"\x00\x01\x02binary").unwrap();
    std::fs::write(src.join("latin1.txt"), b"caf\xe9\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/passwd", src.join("escape")).unwrap();

    let v: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
    let payments = common::source_report(&v, "payments-api");
    assert_eq!(payments["denied"]["never_ingest"]["examples"][0], "config/.env");
    assert_eq!(payments["skipped"]["binary"]["count"], 1);
    assert_eq!(payments["skipped"]["invalid_utf8"]["count"], 1);
    #[cfg(unix)]
    assert_eq!(payments["skipped"]["symlink"]["count"], 1);
    assert!(payments["redactions"].as_u64().unwrap() >= 3);

    let mut files = Vec::new();
    files_under(&org.join(".ctxplane"), &mut files);
    assert!(files.len() > 5);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in PLANTED {
            assert!(!text.contains(secret), "{secret} found in {}", f.display());
        }
        assert!(
            !text.contains("root:x:0:0"),
            "symlink target leaked into {}",
            f.display()
        );
    }
    // And what the (compressed) lexical index stores, read back.
    for needle in PLANTED.iter().copied().chain(["root:x:0:0"]) {
        let found = common::files_containing(&[org.join(".ctxplane")], needle);
        assert!(found.is_empty(), "{needle} found in {found:?}");
    }
    // The check reads the stored text: a word the sources hold is found.
    assert!(!common::files_containing(&[org.join(".ctxplane")], "validate_refund").is_empty());
    let hits: serde_json::Value =
        serde_json::from_str(&run(org, &["query", "STRIPE_KEY", "--mode", "lexical", "--json"])).unwrap();
    let content = hits["results"][0]["content"].as_str().unwrap();
    assert!(content.contains("[REDACTED:"), "{content}");
    let env_hits: serde_json::Value =
        serde_json::from_str(&run(org, &["search", "DATABASE_URL payments", "--json"])).unwrap();
    for r in env_hits["results"].as_array().unwrap() {
        assert_ne!(r["provenance"]["path"], "config/.env");
    }

    // A second pass over unchanged input changes nothing.
    let manifest = std::fs::read(org.join(".ctxplane/index/manifests/payments-api.json")).unwrap();
    let again: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
    assert_eq!(again["report"]["committed"], false);
    assert_eq!(
        std::fs::read(org.join(".ctxplane/index/manifests/payments-api.json")).unwrap(),
        manifest
    );

    // Editing one file re-indexes only it; deleting one removes its chunks.
    std::fs::write(
        src.join("client.rs"),
        "// Stripe client, rewritten\nfn pay() {}\n",
    )
    .unwrap();
    std::fs::remove_file(org.join("sources/payments-api/docs/architecture.md")).unwrap();
    let third: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
    let p = common::source_report(&third, "payments-api");
    assert_eq!(p["indexed"], 1);
    assert_eq!(p["removed"], 1);

    // Scope: a tier-1 agent never sees the tier-2 payments source.
    let scoped: serde_json::Value = serde_json::from_str(&run(
        org,
        &["search", "pay capture ledger", "--as", "support-agent", "--json"],
    ))
    .unwrap();
    assert!(
        scoped["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["provenance"]["source"] == "platform-docs")
    );

    // Revoking the source purges all of its content at once, and proves it.
    let cache_bytes = || -> u64 {
        std::fs::read_dir(org.join(".ctxplane/vectors/cache"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let cached_before = cache_bytes();
    // Vectors that are only in the cache must go too: the store is dropped
    // (its vectors come back from the cache, the purged source's never
    // do) and an older model's cache file is left beside the current one.
    std::fs::remove_dir_all(org.join(".ctxplane/vectors/embedded")).unwrap();
    let old_model = org.join(".ctxplane/vectors/cache/all-MiniLM-L6-v2-int8-000000000000.cache");
    std::fs::write(&old_model, vec![7u8; 3 * 1584]).unwrap();
    let revoked: serde_json::Value = serde_json::from_str(&run(
        org,
        &["registry", "revoke", "payments-api", "--reason", "test", "--json"],
    ))
    .unwrap();
    assert_eq!(revoked["purged"][0], "payments-api", "{revoked}");
    assert_eq!(revoked["purge_verified"], true, "{revoked}");
    assert_eq!(revoked["remaining"]["chunks"], 0, "{revoked}");
    assert_eq!(revoked["remaining"]["cached_vectors"], 0, "{revoked}");
    assert!(!old_model.exists(), "another model's cache survived the purge");
    // The embedding cache keeps no vector of the purged source's texts.
    assert!(
        cache_bytes() < cached_before,
        "embedding cache not cut back: {cached_before} -> {} bytes",
        cache_bytes()
    );
    let after: serde_json::Value =
        serde_json::from_str(&run(org, &["search", "ledger capture pay", "--json"])).unwrap();
    assert!(
        after["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["provenance"]["source"] != "payments-api")
    );
    assert!(!org.join(".ctxplane/index/manifests/payments-api.json").exists());
    assert!(run(org, &["audit", "verify"]).contains("intact"));
}

#[test]
fn an_unreachable_qdrant_fails_the_index_and_says_so() {
    let tmp = common::example_org();
    let org = tmp.path();
    // Nothing listens on this port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    std::fs::write(
        org.join("ctxplane.toml"),
        format!("vector_store = \"qdrant\"\nqdrant_url = \"http://{free}\"\n"),
    )
    .unwrap();
    let out = common::command(org, &["index"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "index succeeded without its vector store: {stderr}"
    );
    assert!(
        stderr.contains("vector store") && stderr.contains("qdrant"),
        "{stderr}"
    );
    // Nothing was reported as done: no pass in the audit log.
    let log = std::fs::read_to_string(org.join(".ctxplane/audit/log.jsonl")).unwrap_or_default();
    assert!(!log.contains("\"index.pass\""), "{log}");
}

#[test]
fn index_threads_out_of_range_is_a_clear_error() {
    let tmp = common::example_org();
    let org = tmp.path();
    for bad in ["0", "99"] {
        std::fs::write(org.join("ctxplane.toml"), format!("index_threads = {bad}\n")).unwrap();
        let out = common::command(org, &["index", "--no-embed"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("index_threads must be between 1 and 8"),
            "{stderr}"
        );
    }
    // One thread indexes the same as the default.
    std::fs::write(org.join("ctxplane.toml"), "index_threads = 1\n").unwrap();
    let one = common::run_json(org, &["index", "--no-embed", "--json"]);
    let other = common::example_org();
    let default = common::run_json(other.path(), &["index", "--no-embed", "--json"]);
    assert!(one["report"]["total_chunks"].as_u64().unwrap() > 0, "{one}");
    assert_eq!(one["report"]["total_chunks"], default["report"]["total_chunks"]);
}
