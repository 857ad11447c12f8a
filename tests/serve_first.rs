//! `serve` answers before its vectors exist: it listens once the lexical
//! index is committed, builds the vectors in the background a step at a
//! time, and says so (`/readyz` `vectors: building` then `complete`,
//! answers with their coverage, `ctxplane_vectors_complete`).
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{http, start_server};
use serde_json::{Value, json};

const TOKEN: &str = "serve-first-agent-token";
const STEWARD: &str = "serve-first-steward-token";

fn get(addr: &str, path: &str) -> Value {
    let (code, body) = http(addr, "GET", path, None, None);
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn ask(addr: &str, q: &str) -> Value {
    let (code, body) = http(
        addr,
        "POST",
        "/v1/context",
        Some(TOKEN),
        Some(&json!({"query": q, "packages": false}).to_string()),
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// An organisation with one source of 400 short notes (several fill
/// steps' worth of chunks), an agent and a steward.
fn notes_org() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let org = tmp.path();
    // Several steps' worth of chunks: one short note per file.
    let notes = org.join("notes");
    std::fs::create_dir_all(&notes).unwrap();
    let topics = [
        "billing", "failover", "caching", "retries", "quotas", "tracing", "backups", "search",
    ];
    for i in 0..400 {
        let t = topics[i % topics.len()];
        std::fs::write(
            notes.join(format!("note-{i:03}.md")),
            format!(
                "# Note {i} on {t}\n\nRunbook entry {i}: how the {t} service behaves when shard {i} is degraded, \
                 who owns it, and which dashboard shows the {t} error budget.\n"
            ),
        )
        .unwrap();
    }
    std::fs::write(
        org.join("registry.toml"),
        format!(
            "version = 1\n\n[[sources]]\nid = \"notes\"\nkind = \"dir\"\nlocation = \"notes\"\nowner = \"ops\"\ntier = 1\nstatus = \"approved\"\n\n\
             [[principals]]\nname = \"agent\"\nrole = \"agent\"\ntoken_hash = \"{}\"\ntier_ceiling = 1\nsources = [\"*\"]\n\n\
             [[principals]]\nname = \"lead\"\nrole = \"steward\"\ntoken_hash = \"{}\"\ntier_ceiling = 4\nsources = [\"*\"]\n",
            blake3::hash(TOKEN.as_bytes()).to_hex(),
            blake3::hash(STEWARD.as_bytes()).to_hex()
        ),
    )
    .unwrap();

    tmp
}

#[test]
fn serve_answers_lexically_at_once_and_fills_in_vectors_behind() {
    let tmp = notes_org();
    let org = tmp.path();
    let started = Instant::now();
    let (mut server, addr) = start_server(org, &["--no-watch"]);
    let listening = started.elapsed();
    let ready = get(&addr, "/readyz");
    assert_eq!(ready["ready"], true, "{ready:#}");
    assert_eq!(ready["index"]["chunks"], 400, "{ready:#}");
    assert_eq!(
        ready["vectors"], "building",
        "serving began before the vectors were complete: {ready:#}"
    );
    let first = ask(&addr, "who owns the failover error budget?");
    assert!(!first["results"].as_array().unwrap().is_empty(), "{first:#}");
    assert!(first["dense"]["coverage"].as_f64().unwrap() < 1.0, "{first:#}");
    let metrics = http(&addr, "GET", "/metrics", None, None).1;
    assert!(metrics.contains("ctxplane_vectors_complete 0"), "{metrics}");

    // The vectors fill in behind; answers keep coming meanwhile.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut coverage = Vec::new();
    loop {
        let r = get(&addr, "/readyz");
        coverage.push(r["index"]["coverage"].as_f64().unwrap());
        if r["vectors"] == "complete" {
            break;
        }
        assert!(Instant::now() < deadline, "vectors never completed: {r:#}");
        assert!(
            !ask(&addr, "backups shard degraded")["results"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        coverage.windows(2).all(|w| w[0] <= w[1]),
        "coverage only grows: {coverage:?}"
    );
    let done = ask(&addr, "who owns the failover error budget?");
    assert_eq!(done["served_by"], "hybrid", "{done:#}");
    assert_eq!(done["dense"]["coverage"], 1.0);
    let metrics = http(&addr, "GET", "/metrics", None, None).1;
    assert!(metrics.contains("ctxplane_vectors_complete 1"), "{metrics}");
    eprintln!(
        "listening after {listening:?}; vectors complete after {:?}",
        started.elapsed()
    );
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn an_emergency_stop_pauses_the_filling_and_a_resume_finishes_it() {
    let tmp = notes_org();
    let org = tmp.path();
    let (mut server, addr) = start_server(org, &["--no-watch"]);
    let stop = http(
        &addr,
        "POST",
        "/v1/admin/stop",
        Some(STEWARD),
        Some(r#"{"reason":"drill"}"#),
    );
    assert_eq!(stop.0, 200, "{}", stop.1);
    // One step may have been under way when the stop came; after that,
    // nothing more is embedded.
    std::thread::sleep(Duration::from_secs(4));
    let (_, body) = http(&addr, "GET", "/readyz", None, None);
    let during: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(during["ready"], false, "{during:#}");
    std::thread::sleep(Duration::from_secs(3));
    let (_, body) = http(&addr, "GET", "/readyz", None, None);
    let later: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        during["index"]["vectors"], later["index"]["vectors"],
        "nothing embedded while stopped"
    );
    assert_eq!(later["vectors"], "building", "{later:#}");
    let resume = http(&addr, "POST", "/v1/admin/resume", Some(STEWARD), Some("{}"));
    assert_eq!(resume.0, 200, "{}", resume.1);
    let deadline = Instant::now() + Duration::from_secs(600);
    while get(&addr, "/readyz")["vectors"] != "complete" {
        assert!(
            Instant::now() < deadline,
            "vectors never completed after the resume"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
