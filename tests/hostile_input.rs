//! Hostile input in an approved source, through the real binary: nothing
//! panics or hangs, and what cannot be read is skipped with a reason.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{command, example_org_today, run, start_server};

/// Runs the binary with a deadline; a hang is a failure, not a stuck suite.
fn run_within(org: &std::path::Path, args: &[&str], secs: u64) -> std::process::Output {
    let mut child = command(org, args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(secs) {
            child.kill().unwrap();
            panic!("{args:?} did not finish within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn lockfile_keys_that_once_crashed_every_command() {
    let tmp = example_org_today();
    let org = tmp.path();
    let src = org.join("sources/payments-api");
    std::fs::write(
        src.join("yarn.lock"),
        "# yarn lockfile v1\n\n\"é@^1.0.0\":\n  version \"1.0.0\"\n\n\"\":\n  version \"2\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("pnpm-lock.yaml"),
        "lockfileVersion: '9.0'\npackages:\n  :\n    resolution: x\n  /ü@1.0.0:\n    resolution: y\n",
    )
    .unwrap();
    run(org, &["index", "--no-embed"]);
    for args in [
        vec!["check", "--json"],
        vec!["freshness", "--json"],
        vec!["query", "capture", "--mode", "lexical", "--json"],
        vec!["status", "--json"],
    ] {
        let out = run_within(org, &args, 60);
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("panicked"),
            "{args:?}"
        );
    }
    let (mut server, addr) = start_server(org, &["--no-watch", "--no-embed"]);
    for (path, token) in [("/v1/freshness", "demo-ci-token"), ("/v1/check", "demo-ci-token")] {
        let (code, body) = common::http(&addr, "GET", path, Some(token), None);
        assert_eq!(code, 200, "{path}: {body}");
    }
    let (code, body) = common::http(
        &addr,
        "POST",
        "/v1/context",
        Some("demo-agent-platform-token"),
        Some(r#"{"query":"capture"}"#),
    );
    assert_eq!(code, 200, "{body}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[cfg(unix)]
#[test]
fn fifos_are_skipped_not_opened() {
    let tmp = example_org_today();
    let org = tmp.path();
    for fifo in [
        org.join("sources/payments-api/src/pipe.rs"),
        org.join("topics/pipe.md"),
    ] {
        let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(status.success());
    }
    let out = run_within(org, &["index", "--no-embed", "--json"], 120);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let payments = common::source_report(&v, "payments-api");
    assert_eq!(
        payments["skipped"]["not_a_regular_file"]["count"], 1,
        "{payments}"
    );
    let out = run_within(org, &["packages", "list", "--json"], 60);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pipe = listed["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["file"].as_str().unwrap().ends_with("pipe.md"))
        .unwrap();
    assert_eq!(pipe["status"], "invalid", "{pipe}");
    let out = run_within(
        org,
        &[
            "query",
            "Is it safe to retry a capture?",
            "--mode",
            "lexical",
            "--json",
        ],
        60,
    );
    assert!(out.status.success());
}

#[cfg(unix)]
#[test]
fn a_fifo_as_the_registry_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("registry.toml");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&reg)
            .status()
            .unwrap()
            .success()
    );
    let out = run_within(tmp.path(), &["registry", "validate"], 30);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a regular file"));
}

#[test]
fn deleted_edited_and_newly_denied_text_leaves_the_disk() {
    let tmp = example_org_today();
    let org = tmp.path();
    let src = org.join("sources/payments-api/src");
    for (file, marker) in [
        ("gone.rs", "zqxmarkerdeleted"),
        ("edited.rs", "zqxmarkeredited"),
        ("denied.rs", "zqxmarkerdenied"),
    ] {
        std::fs::write(src.join(file), format!("/// {marker}\npub fn {marker}() {{}}\n")).unwrap();
    }
    run(org, &["index"]);
    let data = org.join(".ctxplane");
    assert!(
        !common::files_containing(std::slice::from_ref(&data), "zqxmarkerdeleted").is_empty(),
        "indexed at first"
    );
    std::fs::remove_file(src.join("gone.rs")).unwrap();
    std::fs::write(src.join("edited.rs"), "pub fn replaced() {}\n").unwrap();
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    std::fs::write(
        &reg,
        text.replacen(
            "exclude = [\"target/**\"]",
            "exclude = [\"target/**\", \"src/denied.rs\"]",
            1,
        ),
    )
    .unwrap();
    run(org, &["index"]);
    for marker in ["zqxmarkerdeleted", "zqxmarkeredited", "zqxmarkerdenied"] {
        // Any file of the data dir holding the text is a trace (the audit
        // log names no content; the embedding cache keeps vectors only).
        let left = common::files_containing(std::slice::from_ref(&data), marker);
        assert!(left.is_empty(), "{marker} still on disk in {left:?}");
    }
}

#[test]
fn a_revocation_leaves_no_redaction_records() {
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let log = org.join(".ctxplane/index/redactions.jsonl");
    let before = std::fs::read_to_string(&log).unwrap();
    assert!(before.contains("\"source\":\"payments-api\""), "{before}");
    run(org, &["registry", "revoke", "payments-api", "--reason", "leak"]);
    let after = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!after.contains("\"source\":\"payments-api\""), "{after}");
}

#[test]
fn a_binary_context_package_is_reported_as_not_text() {
    let tmp = example_org_today();
    let org = tmp.path();
    std::fs::write(
        org.join("sources/payments-api/context-package.toml"),
        b"purpose = \"x\"\0\x01\x02binary",
    )
    .unwrap();
    let out = command(org, &["check", "--source", "payments-api", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["file"].as_str().unwrap().ends_with("context-package.toml"))
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unreadable"], "{v}");
}

#[test]
fn a_file_named_after_a_credential_is_refused_by_name_and_never_named() {
    let tmp = example_org_today();
    let org = tmp.path();
    let token = "ghp_R8s9T0u1V2w3X4y5Z6a7B8c9D0e1F2g3H4i5";
    let key = "AKIAQWERTYUIOPASDFGH";
    let docs = org.join("sources/platform-docs/runbooks");
    std::fs::write(
        docs.join(format!("{token}.md")),
        "# Rotation\n\nzqxnamedmarker rotate keys.\n",
    )
    .unwrap();
    std::fs::create_dir_all(docs.join(key)).unwrap();
    std::fs::write(
        docs.join(key).join("notes.md"),
        "# Notes\n\nzqxnamedmarker again.\n",
    )
    .unwrap();
    let out = run(org, &["index", "--json"]);
    assert!(!out.contains(token) && !out.contains(key), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let docs_report = common::source_report(&v, "platform-docs");
    assert_eq!(
        docs_report["denied"]["secret_in_path"]["count"], 2,
        "{docs_report}"
    );
    for args in [
        vec!["query", "zqxnamedmarker", "--mode", "lexical", "--json"],
        vec!["freshness", "--json"],
        vec!["check", "--json"],
        vec!["audit", "tail", "-n", "50", "--json"],
    ] {
        let out = command(org, &args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(!text.contains(token) && !text.contains(key), "{args:?}: {text}");
        if args[0] == "query" {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(
                v["results"].as_array().unwrap().is_empty(),
                "served the file: {text}"
            );
        } else {
            assert!(!text.contains("zqxnamedmarker"), "{args:?}: {text}");
        }
    }
    for needle in [token, key, "zqxnamedmarker"] {
        let stored = common::files_containing(&[org.join(".ctxplane")], needle);
        assert!(stored.is_empty(), "{needle} stored in {stored:?}");
    }
}

/// `serve` over a lexical index of `org`, no watcher, with `extra` flags.
fn lexical_server(org: &std::path::Path, extra: &[&str]) -> (std::process::Child, String) {
    run(org, &["index", "--no-embed"]);
    let mut args = vec!["--no-watch", "--no-embed"];
    args.extend_from_slice(extra);
    start_server(org, &args)
}

#[test]
fn idle_sockets_are_closed_and_cannot_hold_every_slot() {
    use std::io::Read;
    let tmp = example_org_today();
    let (mut server, addr) = lexical_server(
        tmp.path(),
        &["--max-connections", "4", "--idle-timeout-secs", "2"],
    );
    // Four sockets take every slot and say nothing (one sends half a header).
    let mut idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(&addr).unwrap())
        .collect();
    std::io::Write::write_all(&mut idle[0], b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = std::time::Instant::now();
    // A real request waits for a slot, and gets one once the idle ones are cut.
    let (code, _) = common::http(&addr, "GET", "/healthz", None, None);
    assert_eq!(code, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "served before any slot was free: {waited:?}"
    );
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        // Closed by the server: end of stream (or a reset), never a hang.
        let n = s.read(&mut buf).unwrap_or(0);
        assert!(n == 0 || buf[..n].starts_with(b"HTTP/1.1"), "{:?}", &buf[..n]);
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn a_trickled_request_head_is_cut_at_the_header_deadline() {
    use std::io::{Read, Write};
    let tmp = example_org_today();
    let (mut server, addr) = lexical_server(
        tmp.path(),
        &["--idle-timeout-secs", "60", "--header-timeout-secs", "2"],
    );
    // One byte every 300 ms never lets the idle timer fire; the head's own
    // deadline must.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let started = std::time::Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for b in head.iter().cycle().take(200) {
        if s.write_all(&[*b]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => panic!("answered a request whose head never ended"),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    let took = started.elapsed();
    assert!(closed, "a trickling head held its socket for {took:?}");
    assert!(took < Duration::from_secs(10), "closed only after {took:?}");
    assert!(
        took >= Duration::from_millis(1800),
        "closed before the deadline: {took:?}"
    );
    // A normal request on a fresh connection is unaffected.
    assert_eq!(common::http(&addr, "GET", "/healthz", None, None).0, 200);
    server.kill().unwrap();
    server.wait().unwrap();
}

/// (status, head, body) of one request, headers included.
fn raw_post(addr: &str, path: &str, token: &str, body: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

/// Seconds in the Retry-After header of a (lower-cased) response head.
fn retry_after(head: &str) -> u64 {
    head.lines()
        .find_map(|l| l.strip_prefix("retry-after: "))
        .expect("Retry-After header")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn principals_are_held_to_their_rate_and_daily_token_quota() {
    let tmp = example_org_today();
    let org = tmp.path();
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    // A bad limit is refused with its location, like any registry problem.
    let bad = text.replacen(
        "name = \"coding-agent\"",
        "name = \"coding-agent\"\nrequests_per_minute = 0",
        1,
    );
    std::fs::write(&reg, &bad).unwrap();
    let out = common::command(org, &["registry", "validate"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("requests_per_minute must be between 1")
            || String::from_utf8_lossy(&out.stderr).contains("requests_per_minute must be between 1"),
        "{out:?}"
    );
    // The coding agent: 3 requests a minute; the support agent: 1,200
    // tokens a day (from the registry-wide default).
    let limited = format!(
        "{}\n[limits]\ntokens_per_day = 1200\n",
        text.replacen(
            "name = \"coding-agent\"",
            "name = \"coding-agent\"\nrequests_per_minute = 3\ntokens_per_day = 1000000",
            1,
        )
        .replacen(
            "name = \"rivera\"",
            "name = \"rivera\"\nrequests_per_minute = 1",
            1
        )
    );
    std::fs::write(&reg, limited).unwrap();
    run(org, &["registry", "validate"]);
    run(org, &["index", "--no-embed"]);
    let (mut server, addr) = start_server(org, &["--no-watch", "--no-embed"]);

    let ask = r#"{"query": "capture idempotency", "max_tokens": 500}"#;
    for _ in 0..3 {
        let (code, _, body) = raw_post(&addr, "/v1/context", "demo-agent-platform-token", ask);
        assert_eq!(code, 200, "{body}");
    }
    let (code, head, body) = raw_post(&addr, "/v1/context", "demo-agent-platform-token", ask);
    assert_eq!(code, 429, "{body}");
    let retry = retry_after(&head);
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(body.contains("rate_limited"), "{body}");

    // The daily quota caps what is served, then refuses until midnight UTC.
    let mut served = 0;
    let mut refused = None;
    for _ in 0..20 {
        let (code, head, body) = raw_post(&addr, "/v1/context", "demo-agent-support-token", ask);
        if code == 429 {
            refused = Some(head);
            break;
        }
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        served += v["delivered_tokens"].as_u64().unwrap();
    }
    let head = refused.expect("the quota never ran out");
    assert!(served > 0, "refused before serving anything");
    assert!(served <= 1200, "served {served} tokens on a quota of 1200");
    let retry = retry_after(&head);
    assert!((1..=86_400).contains(&retry), "{retry}");
    // A steward's bucket never holds back stop, resume or revoke.
    assert_eq!(
        common::http(&addr, "GET", "/v1/sources", Some("demo-steward-token"), None).0,
        200
    );
    assert_eq!(
        common::http(&addr, "GET", "/v1/sources", Some("demo-steward-token"), None).0,
        429
    );
    for op in ["stop", "resume"] {
        let (code, _, body) = raw_post(
            &addr,
            &format!("/v1/admin/{op}"),
            "demo-steward-token",
            r#"{"reason":"drill"}"#,
        );
        assert_eq!(code, 200, "{op}: {body}");
    }
    server.kill().unwrap();
    server.wait().unwrap();

    // Refusals are audited, once per principal per minute, not per request.
    let tail: serde_json::Value =
        serde_json::from_str(&run(org, &["audit", "tail", "-n", "100", "--json"])).unwrap();
    let limited: Vec<_> = tail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "principal.limited")
        .map(|e| e["subject"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(limited, ["coding-agent", "support-agent", "rivera"], "{tail}");
}

#[test]
fn non_utf8_names_stay_distinct_and_unreadable_directories_are_reported() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let tmp = example_org_today();
    let org = tmp.path();
    let runbooks = org.join("sources/platform-docs/runbooks");
    for name in [&b"a\xff.md"[..], &b"a\xfe.md"[..]] {
        std::fs::write(runbooks.join(std::ffi::OsStr::from_bytes(name)), "# zqxnonutf8\n").unwrap();
    }
    let locked = runbooks.join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::write(locked.join("x.md"), "# zqxlocked\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any directory: run as nobody then, over a tree it owns.
    let as_root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let mut cmd = if as_root {
        let ok = std::process::Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(org)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let have_setpriv = std::process::Command::new("setpriv")
            .arg("--version")
            .output()
            .is_ok();
        if !ok || !have_setpriv {
            eprintln!("skipping the unreadable-directory half: cannot drop root privileges here");
            std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::remove_dir_all(&locked).unwrap();
            common::command(org, &["index", "--no-embed", "--json"])
        } else {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", common::BIN])
                .args(["index", "--no-embed", "--json"])
                .current_dir(org)
                .env("CTXPLANE_ACTOR", "test");
            c
        }
    } else {
        common::command(org, &["index", "--no-embed", "--json"])
    };
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = common::source_report(&v, "platform-docs");
    let names = &r["skipped"]["non_utf8_name"];
    assert_eq!(names["count"], 2, "{r}");
    let shown: Vec<&str> = names["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        shown.contains(&"runbooks/a\\xFF.md") && shown.contains(&"runbooks/a\\xFE.md"),
        "{shown:?}"
    );
    if locked.exists() {
        assert_eq!(r["skipped"]["unreadable"]["count"], 1, "{r}");
        assert_eq!(
            r["skipped"]["unreadable"]["examples"][0], "runbooks/locked",
            "{r}"
        );
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Neither file's text was indexed under any name.
    assert!(common::files_containing(&[org.join(".ctxplane")], "zqxnonutf8").is_empty());
}

#[test]
fn answers_count_only_what_the_caller_may_see() {
    let tmp = example_org_today();
    let org = tmp.path();
    let indexed: serde_json::Value = serde_json::from_str(&run(org, &["index", "--json"])).unwrap();
    let total = indexed["report"]["total_chunks"].as_u64().unwrap();
    let docs = common::source_report(&indexed, "platform-docs");
    let visible = docs["chunks_added"].as_u64().unwrap();
    assert!(visible > 0 && visible < total, "{visible} of {total}");
    // The support agent sees platform-docs (tier 1) only.
    let a: serde_json::Value = serde_json::from_str(&run(
        org,
        &[
            "query",
            "failover runbook",
            "--as",
            "support-agent",
            "--no-packages",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(a["dense"]["chunks"], visible, "{}", a["dense"]);
    assert_eq!(a["dense"]["vectors"], visible, "{}", a["dense"]);
    // The operator sees everything.
    let all: serde_json::Value = serde_json::from_str(&run(
        org,
        &["query", "failover runbook", "--no-packages", "--json"],
    ))
    .unwrap();
    assert_eq!(all["dense"]["chunks"], total, "{}", all["dense"]);
}
