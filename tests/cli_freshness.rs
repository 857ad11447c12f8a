//! Keeping the index fresh through the binary: `freshness` reports what
//! changed and what is too old, `index --watch` follows edits, deletions
//! and registry changes, and a pass killed at any moment (SIGKILL) is
//! completed by the next one with the same result as an uninterrupted run.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{command, example_org, run, run_json};

fn source<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == id)
        .unwrap_or_else(|| panic!("no {id} in {v:#}"))
}

#[test]
fn freshness_reports_changes_on_disk_and_content_past_its_max_age() {
    let tmp = example_org();
    let org = tmp.path();
    // The example's architecture doc drifts from its Cargo.lock on purpose
    // (tests/cli_check.rs); align it so the first pass is clean.
    let arch = org.join("sources/payments-api/docs/architecture.md");
    let text = std::fs::read_to_string(&arch).unwrap();
    std::fs::write(&arch, text.replace("tokio 1.28", "tokio 1.41")).unwrap();
    let before = run_json(org, &["freshness", "--json"]);
    assert_eq!(source(&before, "payments-api")["status"], "never_indexed");
    assert!(
        !command(org, &["freshness", "--check"])
            .status()
            .unwrap()
            .success()
    );

    run(org, &["index"]);
    let fresh = run_json(org, &["freshness", "--json"]);
    assert_eq!(fresh["needs_attention"], 0, "{fresh:#}");
    assert!(
        command(org, &["freshness", "--check"])
            .status()
            .unwrap()
            .success()
    );

    let api = org.join("sources/payments-api");
    std::fs::write(api.join("src/lib.rs"), "pub fn changed() {}\n").unwrap();
    std::fs::write(api.join("src/extra.rs"), "pub fn extra() {}\n").unwrap();
    std::fs::remove_file(api.join("docs/architecture.md")).unwrap();
    std::fs::write(api.join("config/.env.production"), "never ingested\n").unwrap();
    let behind = run_json(org, &["freshness", "--json"]);
    let p = source(&behind, "payments-api");
    assert_eq!(p["status"], "behind");
    assert_eq!(p["modified"]["examples"], serde_json::json!(["src/lib.rs"]));
    // A never-ingest file is not "added": it never will be.
    assert_eq!(p["added"]["examples"], serde_json::json!(["src/extra.rs"]));
    assert_eq!(
        p["removed"]["examples"],
        serde_json::json!(["docs/architecture.md"])
    );
    assert_eq!(source(&behind, "platform-docs")["status"], "fresh");
    assert_eq!(
        command(org, &["freshness", "--check"]).status().unwrap().code(),
        Some(1)
    );

    run(org, &["index"]);
    assert_eq!(run_json(org, &["freshness", "--json"])["needs_attention"], 0);

    // A lockfile and a doc that names another version: drift, in freshness
    // and on the results that come from that doc.
    std::fs::write(
        api.join("Cargo.lock"),
        "version = 4\n\n[[package]]\nname = \"tokio\"\nversion = \"1.41.0\"\n",
    )
    .unwrap();
    std::fs::write(
        api.join("docs/runtime.md"),
        "# Runtime\n\nThe worker pool requires tokio 1.28 for its blocking quirks.\n",
    )
    .unwrap();
    run(org, &["index"]);
    let drifted = run_json(org, &["freshness", "--json"]);
    let p = source(&drifted, "payments-api");
    assert_eq!(p["status"], "drifted", "{p:#}");
    assert_eq!(p["drift"][0]["file"], "docs/runtime.md");
    assert_eq!(p["drift"][0]["line"], 3);
    assert_eq!(p["drift"][0]["claimed"], "1.28");
    assert_eq!(p["drift"][0]["pinned"][0], "1.41.0 (Cargo.lock:5)");
    let q = run_json(
        org,
        &[
            "query",
            "worker pool blocking quirks",
            "--mode",
            "lexical",
            "--no-packages",
            "--json",
        ],
    );
    assert_eq!(q["results"][0]["provenance"]["path"], "docs/runtime.md");
    assert_eq!(q["results"][0]["provenance"]["drift"][0]["dependency"], "tokio");
    std::fs::write(
        api.join("docs/runtime.md"),
        "# Runtime\n\nThe worker pool requires tokio 1.41 for its blocking quirks.\n",
    )
    .unwrap();
    run(org, &["index"]);
    assert_eq!(run_json(org, &["freshness", "--json"])["needs_attention"], 0);

    // Age the indexed content of one file past the tier's max age (tier 1:
    // 365 days by default; the registry lowers it to 30).
    let registry = org.join("registry.toml");
    let text = std::fs::read_to_string(&registry).unwrap();
    std::fs::write(&registry, format!("{text}\n[freshness.max_age_days]\n1 = 30\n")).unwrap();
    let manifest_path = org.join(".ctxplane/index/manifests/platform-docs.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let (path, entry) = m["files"].as_object_mut().unwrap().iter_mut().next().unwrap();
    let path = path.clone();
    entry["content_since"] = "2026-01-01T00:00:00Z".into();
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    let aged = run_json(org, &["freshness", "--json"]);
    let d = source(&aged, "platform-docs");
    assert_eq!(d["status"], "stale");
    assert_eq!(d["max_age_days"], 30);
    assert_eq!(d["stale"]["examples"], serde_json::json!([path]));
}

/// Lines of `index --watch --json` output, read on a thread.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
}

impl Watcher {
    fn start(org: &Path) -> Watcher {
        let mut child = command(
            org,
            &["index", "--watch", "--no-embed", "--json", "--debounce-ms", "50"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    break;
                }
            }
        });
        let w = Watcher { child, lines };
        let first = w.next();
        assert_eq!(first["event"], "pass");
        let second = w.next();
        assert_eq!(second["event"], "vectors");
        assert_eq!(
            second["vectors"]["served_by"], "lexical",
            "--no-embed: {second:#}"
        );
        w
    }

    fn next(&self) -> serde_json::Value {
        self.lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the watcher reported nothing within 30 s")
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hits(org: &Path, query: &str) -> Vec<String> {
    let v = run_json(org, &["query", query, "--mode", "lexical", "--json"]);
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provenance"]["path"].as_str().unwrap().to_string())
        .collect()
}

/// Waits until `check` holds, up to 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn watch_follows_edits_deletions_and_registry_changes() {
    let tmp = example_org();
    let org = tmp.path();
    let w = Watcher::start(org);
    let runbook = org.join("sources/platform-docs/runbooks/zebra.md");
    std::fs::write(
        &runbook,
        "# Zebra failover\nflip the quokkaswitch, then page on-call\n",
    )
    .unwrap();
    eventually("the new runbook to be searchable", || {
        hits(org, "quokkaswitch") == ["runbooks/zebra.md"]
    });
    let update = w.next();
    assert_eq!(update["event"], "update");
    assert_eq!(update["report"]["committed"], true);

    // A secret written while watching is redacted like any other.
    std::fs::write(
        org.join("sources/payments-api/src/live.rs"),
        "const K: &str = \"sk_live_4eC39HqLyjWDarjtT1zdp7dc\"; // wombatkey\n",
    )
    .unwrap();
    eventually("the new source file to be searchable", || {
        hits(org, "wombatkey") == ["src/live.rs"]
    });
    let v = run_json(org, &["query", "wombatkey", "--mode", "lexical", "--json"]);
    let content = v["results"][0]["content"].as_str().unwrap();
    assert!(
        content.contains("[REDACTED:") && !content.contains("sk_live_"),
        "{content}"
    );

    std::fs::remove_file(&runbook).unwrap();
    eventually("the deleted runbook to leave the index", || {
        hits(org, "quokkaswitch").is_empty()
    });

    // Revoking a source hides it at once (queries check the registry) and
    // the watcher purges its content from the index.
    run(org, &["registry", "revoke", "payments-api", "--reason", "test"]);
    assert!(hits(org, "wombatkey").is_empty());
    let purge = loop {
        let ev = w.next();
        if ev["report"]["purged"] == serde_json::json!(["payments-api"]) {
            break ev;
        }
    };
    assert_eq!(purge["registry_reloaded"], true);
    assert!(!org.join(".ctxplane/index/manifests/payments-api.json").exists());
    drop(w);
    let audit = run(org, &["audit", "tail", "-n", "50"]);
    assert!(audit.contains("index.update"), "{audit}");
}

/// Every indexed file's chunk ids, from the manifests (`<source>.json`,
/// as the indexer reads them: a pass killed mid-write leaves its
/// `.<source>.json.<pid>.tmp` behind, which is not a manifest).
fn manifest_state(data: &Path) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut out = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(data.join("index/manifests")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        for (path, entry) in m["files"].as_object().unwrap() {
            out.insert(
                format!("{}/{path}", m["source"].as_str().unwrap()),
                entry["chunk_ids"].clone(),
            );
        }
    }
    out
}

#[test]
fn a_pass_killed_at_any_moment_is_completed_by_the_next() {
    let tmp = example_org();
    let org = tmp.path();
    // Enough files that a pass takes a while.
    let generated = org.join("sources/payments-api/src/generated");
    std::fs::create_dir_all(&generated).unwrap();
    for i in 0..1500 {
        std::fs::write(
            generated.join(format!("mod_{i}.rs")),
            format!(
                "//! Generated module {i}.\n\n/// Handler number {i}.\npub fn handler_{i}(x: u64) -> u64 {{\n    x.wrapping_mul({i}) ^ 0x5f3759df\n}}\n\npub struct State{i} {{\n    pub count: u64,\n}}\n"
            ),
        )
        .unwrap();
    }
    // Five hundred files rewritten before each attempt, so that every pass
    // has work a kill can interrupt; kills land at fractions of the time an
    // uninterrupted pass over such a change takes on this machine.
    let bulk = |tag: usize| {
        for i in 1000..1500 {
            std::fs::write(
                generated.join(format!("mod_{i}.rs")),
                format!("/// Bulk {tag}.\npub fn bulk_{tag}_{i}(x: u64) -> u64 {{\n    x + {i}\n}}\n"),
            )
            .unwrap();
        }
    };
    run(org, &["index", "--no-embed"]);
    bulk(1000);
    let t = std::time::Instant::now();
    run(org, &["index", "--no-embed"]);
    let pass = t.elapsed();
    let kill = |org: &std::path::Path, attempt: u32| -> bool {
        let mut child = command(org, &["index", "--no-embed"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(pass * (attempt % 9 + 1) / 10);
        let mid_pass = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        mid_pass
    };
    let mut killed_mid_pass = 0;
    let mut attempt = 0u32;
    for round in 0..7 {
        // Change something between attempts so later passes have work.
        std::fs::write(
            generated.join(format!("mod_{}.rs", round * 100)),
            format!("pub fn rewritten_{round}() {{}}\n"),
        )
        .unwrap();
        if round % 2 == 1 {
            std::fs::remove_file(generated.join(format!("mod_{}.rs", round * 100 + 1))).unwrap();
        }
        bulk(round);
        killed_mid_pass += usize::from(kill(org, attempt));
        attempt += 1;
    }
    // Until at least three kills landed inside a pass.
    while killed_mid_pass < 3 && attempt < 40 {
        bulk(attempt as usize + 100);
        killed_mid_pass += usize::from(kill(org, attempt));
        attempt += 1;
    }
    assert!(killed_mid_pass >= 3, "passes finished too fast to test a crash");
    // What a kill between writing a manifest's temp file and renaming it
    // leaves (the kills above may or may not have landed there).
    let manifests = org.join(".ctxplane/index/manifests");
    std::fs::write(
        manifests.join(registry::fsutil::temp_name("payments-api.json", 4_194_304)),
        b"{\"source\": \"payme",
    )
    .unwrap();

    let done = run_json(org, &["index", "--json"]);
    let left: Vec<String> = std::fs::read_dir(&manifests)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(
        left.is_empty(),
        "temp files of killed writes are still there: {left:?}"
    );
    assert!(
        done["report"]["sources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["error"].is_null())
    );
    assert_eq!(done["vectors"]["coverage"], 1.0, "{:#}", done["vectors"]);
    let again = run_json(org, &["index", "--json"]);
    assert_eq!(again["report"]["committed"], false, "{again:#}");
    // Unchanged input embeds nothing.
    assert_eq!(again["vectors"]["embedded"], 0, "{:#}", again["vectors"]);
    assert_eq!(again["vectors"]["vectors"], done["vectors"]["vectors"]);

    // Same result as one uninterrupted pass into a fresh data dir.
    let clean = org.join("clean-data");
    let reference = run_json(
        org,
        &[
            "--data-dir",
            clean.to_str().unwrap(),
            "index",
            "--no-embed",
            "--json",
        ],
    );
    let recovered = manifest_state(&org.join(".ctxplane"));
    assert_eq!(recovered, manifest_state(&clean));
    let listed: usize = recovered.values().map(|ids| ids.as_array().unwrap().len()).sum();
    assert_eq!(
        done["report"]["total_chunks"], listed,
        "chunks in the index but in no manifest"
    );
    assert_eq!(
        done["report"]["total_chunks"],
        reference["report"]["total_chunks"]
    );
    assert!(recovered.contains_key("payments-api/src/generated/mod_600.rs"));
    assert!(!recovered.contains_key("payments-api/src/generated/mod_101.rs"));
    assert_eq!(hits(org, "rewritten_6"), ["src/generated/mod_600.rs"]);
    assert!(hits(org, "handler_101").is_empty());
}
