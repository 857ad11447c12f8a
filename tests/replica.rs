//! `serve --read-only` without a shared index to read: refused at start
//! with what to configure, having written no index of its own; started
//! but answering 503 while its Qdrant cannot be reached or hangs. (A
//! replica on a real Qdrant server is tested in `qdrant_serve.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{command, example_org_today, http_with_head, start_server, start_server_logged};

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

/// A replica whose Qdrant cannot be reached (down, or not started yet)
/// still listens: not ready, and a query answers 503 with Retry-After,
/// never 500, and never with the server's address.
#[test]
fn a_replica_whose_qdrant_is_down_listens_and_answers_503() {
    let tmp = example_org_today();
    let org = tmp.path();
    // A loopback port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    std::fs::write(
        org.join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"http://127.0.0.1:{port}\"\ndeployment_id = \"acme\"\n"
        ),
    )
    .unwrap();
    let (mut child, addr, log) = start_server_logged(org, &["--read-only"]);
    let address = format!("127.0.0.1:{port}");

    let (status, _, body) = http_with_head(&addr, "GET", "/readyz", None, None);
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    assert!(
        ready["index"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{ready}"
    );
    assert!(!body.contains(&address), "{body}");

    let body = refused_query(&addr);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "unavailable", "{v}");
    assert_eq!(v["retry_after_secs"], 5, "{v}");
    assert!(!body.contains(&address), "{body}");
    // Authentication still comes first.
    let (status, _, _) = http_with_head(&addr, "POST", "/v1/context", Some("no-such-token"), Some(QUERY));
    assert_eq!(status, 401);
    // Every request fails the same way while the server is down; the log
    // says so once (with the address, for the operator), not per request.
    for _ in 0..4 {
        refused_query(&addr);
    }

    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!org.join(".ctxplane/index/lexical").exists());
    let log = log.all();
    // The interface's reason, and the plane's own reports of the outage.
    let reason = "the index server (Qdrant) cannot be reached or has nothing to read yet";
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") && (l.contains("unavailable") || l.contains(reason)))
        .collect();
    assert!(warnings.iter().any(|l| l.contains(&address)), "{warnings:#?}");
    // A text log line: time, level, spans and target each ending in
    // ": ", the message, then fields (`detail=`, `error=`).
    let message = |l: &str| -> String {
        let fields = [" detail=", " error="]
            .iter()
            .filter_map(|f| l.find(f))
            .min()
            .unwrap_or(l.len());
        let head = &l[..fields];
        head[head.rfind(": ").map_or(0, |i| i + 2)..].to_string()
    };
    let mut messages: Vec<String> = warnings.iter().map(|l| message(l)).collect();
    // Five refused queries, one warning of the refusal.
    assert_eq!(
        messages.iter().filter(|m| m.as_str() == reason).count(),
        1,
        "{warnings:#?}"
    );
    let n = messages.len();
    messages.sort();
    messages.dedup();
    assert_eq!(messages.len(), n, "one warning per kind of outage: {warnings:#?}");
}

/// A Qdrant address that accepts connections and never answers (a hung
/// server, not a refused port): requests are answered 503 at once within
/// the retry interval after a failed attempt, not each made to wait on
/// the server again (they would queue behind one another); after the
/// interval the replica tries again.
#[test]
fn a_replica_whose_qdrant_hangs_tries_it_once_per_retry_interval() {
    let tmp = example_org_today();
    let org = tmp.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        // Held open, never answered.
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    std::fs::write(
        org.join("ctxplane.toml"),
        format!(
            "vector_store = \"qdrant\"\nqdrant_url = \"http://127.0.0.1:{port}\"\ndeployment_id = \"acme\"\n"
        ),
    )
    .unwrap();
    let (mut child, addr) = start_server(org, &["--read-only"]);
    let tried_at_start = accepted.load(Ordering::SeqCst);
    assert!(tried_at_start > 0, "the replica tried the server when it started");
    for _ in 0..4 {
        refused_query(&addr);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        tried_at_start,
        "tried again within the retry interval"
    );
    std::thread::sleep(std::time::Duration::from_secs(plane::UNAVAILABLE_RETRY_SECS + 1));
    refused_query(&addr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        accepted.load(Ordering::SeqCst) > tried_at_start,
        "tried again once the interval had passed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

const QUERY: &str = r#"{"query": "How are refunds limited?"}"#;

/// An agent's query, refused with 503 and Retry-After; the body.
fn refused_query(addr: &str) -> String {
    let (status, head, body) = http_with_head(
        addr,
        "POST",
        "/v1/context",
        Some("demo-agent-platform-token"),
        Some(QUERY),
    );
    assert_eq!(status, 503, "{body}");
    assert!(head.contains("\r\nretry-after: 5"), "{head}");
    body
}
