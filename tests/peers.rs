//! ctxplane driven by real clients nobody here wrote, installed from their
//! registries by `scripts/setup-peers.sh` (run by the test command):
//! the official MCP Python SDK in its default auto mode (stdio and
//! streamable HTTP), MCP Inspector's CLI with `--strict`, and schemathesis
//! with `--checks all` against `/v1/openapi.json` as a steward, an agent
//! and CI. When the peers are absent the tests say so and skip, unless
//! CTXPLANE_REQUIRE_PEERS=1 (the test command sets it), when that fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{example_org_today, run, start_server};

struct Peers {
    python: PathBuf,
    st: PathBuf,
    inspector: PathBuf,
}

fn peers() -> Option<Peers> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/peers");
    let p = Peers {
        python: root.join("venv/bin/python"),
        st: root.join("venv/bin/st"),
        inspector: root.join("npm/node_modules/.bin/mcp-inspector"),
    };
    let missing: Vec<_> = [&p.python, &p.st, &p.inspector]
        .into_iter()
        .filter(|f| !f.exists())
        .collect();
    if missing.is_empty() {
        return Some(p);
    }
    let why = format!("peers not installed ({missing:?}); run scripts/setup-peers.sh");
    if std::env::var("CTXPLANE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    None
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ctxplane")
}

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/model")
}

/// Runs a peer and asserts it succeeded, showing what it printed.
fn expect_success(mut c: Command, what: &str) -> String {
    let out = c.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

#[test]
fn the_mcp_python_sdk_in_auto_mode_over_stdio_and_http() {
    let Some(p) = peers() else { return };
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index"]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/mcp_sdk.py");

    let mut c = Command::new(&p.python);
    c.arg(&script)
        .args(["stdio", bin()])
        .arg(org.join("registry.toml"))
        .env("CTXPLANE_MODEL_DIR", model_dir());
    let out = expect_success(c, "the MCP SDK over stdio");
    assert!(out.contains(" passed, 0 failed"), "{out}");

    let (mut server, addr) = start_server(org, &["--no-watch"]);
    let mut c = Command::new(&p.python);
    c.arg(&script).args(["http", &format!("http://{addr}/mcp")]);
    let out = expect_success(c, "the MCP SDK over streamable HTTP");
    assert!(out.contains(" passed, 0 failed"), "{out}");
    server.kill().unwrap();
    server.wait().unwrap();
}

#[test]
fn mcp_inspector_strict_accepts_every_tool() {
    let Some(p) = peers() else { return };
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index"]);
    let registry = org.join("registry.toml");
    let inspector = |args: &[&str]| {
        let mut c = Command::new(&p.inspector);
        c.args(["--cli", "--protocol-era", "auto", "--format", "json"])
            .args(["-e", "CTXPLANE_TOKEN=demo-agent-platform-token", "-e"])
            .arg(format!("CTXPLANE_MODEL_DIR={}", model_dir().display()))
            .arg(bin())
            .arg("--registry")
            .arg(&registry)
            .args(["mcp", "--no-watch"])
            .args(args);
        c
    };
    let listed = expect_success(
        inspector(&["--method", "tools/list", "--strict"]),
        "inspector --strict tools/list",
    );
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let tools = v["result"]["tools"].as_array().or(v["tools"].as_array());
    assert_eq!(tools.map(Vec::len), Some(4), "{v}");

    let answer = expect_success(
        inspector(&[
            "--method",
            "tools/call",
            "--tool-name",
            "get_context",
            "--tool-arg",
            "query=ledger reconciliation",
            "--tool-arg",
            "packages=false",
        ]),
        "inspector get_context",
    );
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = v["result"]["structuredContent"]["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    for call in [
        vec!["--tool-name", "explain_provenance", "--tool-arg"],
        vec!["--tool-name", "list_sources"],
        vec!["--tool-name", "freshness_report"],
    ] {
        let mut args = vec!["--method", "tools/call"];
        args.extend(call.iter());
        let result_id = format!("result_id={id}");
        if call[1] == "explain_provenance" {
            args.push(&result_id);
        }
        let out = expect_success(inspector(&args), &format!("inspector {}", call[1]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert!(v["result"]["structuredContent"].is_object(), "{v}");
    }
}

fn schemathesis(p: &Peers, addr: &str, token: &str, filter: &[&str], what: &str) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/schemathesis.toml");
    let report = tempfile::tempdir().unwrap();
    let mut c = Command::new(&p.st);
    // schemathesis keeps a cache in its working directory: not in the tree.
    c.current_dir(report.path())
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{addr}/v1/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--max-examples",
            "30",
            "--workers",
            "1",
            "--seed",
            "1",
        ])
        .args(["--no-color", "--report", "junit", "--report-dir"])
        .arg(report.path())
        .args(filter);
    let out = expect_success(c, &format!("schemathesis as {what}"));
    assert!(out.contains("passed"), "{out}");
}

#[test]
fn schemathesis_with_every_check_finds_nothing() {
    let Some(p) = peers() else { return };
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let (mut server, addr) = start_server(org, &["--no-watch", "--no-embed"]);
    // The emergency stop makes every other operation answer 503 by design
    // (schemathesis counts any 5xx as a failure), so the steward's run
    // leaves it out; serve_http and the router tests drive it.
    schemathesis(
        &p,
        &addr,
        "demo-steward-token",
        &["--exclude-path", "/v1/admin/stop"],
        "a steward",
    );
    // Agents and CI, on the operations their roles may use (the rest are
    // 403 for them, which the steward's run and the router tests cover).
    schemathesis(
        &p,
        &addr,
        "demo-agent-platform-token",
        &[
            "--include-operation-id",
            "context",
            "--include-operation-id",
            "provenance",
            "--include-operation-id",
            "listSources",
            "--include-operation-id",
            "freshness",
        ],
        "an agent",
    );
    schemathesis(
        &p,
        &addr,
        "demo-ci-token",
        &[
            "--include-operation-id",
            "listSources",
            "--include-operation-id",
            "freshness",
            "--include-operation-id",
            "check",
        ],
        "CI",
    );
    server.kill().unwrap();
    server.wait().unwrap();
}
