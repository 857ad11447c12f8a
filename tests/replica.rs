//! `serve --read-only` without a shared index to read: refused at start
//! with what to configure, having written no index of its own. (A replica
//! on a real Qdrant server is tested in `qdrant_serve.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::{command, example_org_today};

#[test]
fn a_replica_needs_the_shared_index_and_says_so() {
    let tmp = example_org_today();
    let org = tmp.path();
    let out = command(org, &["serve", "--read-only", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("vector_store = \"qdrant\""), "{err}");
    assert!(!org.join(".ctxplane/index/lexical").exists());

    // Qdrant configured, but no deployment id to read: said, not guessed.
    std::fs::write(
        org.join("ctxplane.toml"),
        "vector_store = \"qdrant\"\nqdrant_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let out = command(org, &["serve", "--read-only", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deployment"), "{err}");
    assert!(!org.join(".ctxplane/index/lexical").exists());
}
