//! `ctxplane mcp` spoken to over stdio with JSON-RPC, as an MCP client
//! would: initialize, list the tools, call them; the principal's scope
//! and tier ceiling hold for every tool.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use common::{command, example_org_today, sources_in};
use serde_json::{Value, json};

struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next: u64,
}

impl Session {
    fn start(org: &std::path::Path, token: &str) -> Session {
        let mut child = command(org, &["mcp", "--no-watch"])
            .env("CTXPLANE_TOKEN", token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut s = Session {
            child,
            stdin,
            stdout,
            next: 1,
        };
        let init = s.request(
            "initialize",
            json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "ctxplane", "{init:#}");
        s.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        s
    }

    fn send(&mut self, m: Value) {
        writeln!(self.stdin, "{m}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let mut line = String::new();
            assert!(
                self.stdout.read_line(&mut line).unwrap() > 0,
                "server closed stdout"
            );
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// A tool call: (is_error, parsed JSON or the text).
    fn call(&mut self, tool: &str, args: Value) -> (bool, Value) {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        let result = &r["result"];
        let text = result["content"][0]["text"].as_str().unwrap_or("").to_string();
        let v = match &result["structuredContent"] {
            Value::Null => Value::String(text),
            structured => structured.clone(),
        };
        (result["isError"] == true, v)
    }

    fn close(mut self) {
        drop(self.stdin);
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

#[test]
fn tools_answer_within_the_principals_scope() {
    let tmp = example_org_today();
    let org = tmp.path();

    let mut coding = Session::start(org, "demo-agent-platform-token");
    let tools = coding.request("tools/list", json!({}));
    let mut names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "explain_provenance",
            "freshness_report",
            "get_context",
            "list_sources"
        ]
    );
    let (err, a) = coding.call(
        "get_context",
        json!({"query": "Is retrying a capture safe, or could it charge twice?"}),
    );
    assert!(!err);
    assert_eq!(a["served_by"], "topic_package", "{a:#}");
    let (err, p) = coding.call(
        "explain_provenance",
        json!({"result_id": "topic:capture-idempotency"}),
    );
    assert!(!err, "{p:#}");
    assert_eq!(p["package"]["owner"], "team-payments");
    let chunk = p["package"]["citations"][0]["chunk_ids"][0]
        .as_str()
        .unwrap()
        .to_string();
    let (err, f) = coding.call("freshness_report", json!({"source": "payments-api"}));
    assert!(!err);
    assert_eq!(f["sources"][0]["source"], "payments-api");
    let (err, bad) = coding.call("get_context", json!({"query": ""}));
    assert!(err, "{bad}");
    coding.close();

    // Tier 1 principal on platform-docs only.
    let mut support = Session::start(org, "demo-agent-support-token");
    for q in [
        "Is retrying a capture safe?",
        "refund window",
        "ledger reconciliation",
        "failover",
    ] {
        let (err, a) = support.call("get_context", json!({"query": q, "max_tokens": 2000}));
        assert!(!err);
        for s in sources_in(&a) {
            assert_eq!(s, "platform-docs", "{q}: {a:#}");
        }
    }
    let (err, hidden) = support.call("explain_provenance", json!({"result_id": chunk}));
    assert!(err);
    assert_eq!(hidden, Value::String("no such result".into()));
    let (err, _) = support.call(
        "explain_provenance",
        json!({"result_id": "topic:capture-idempotency"}),
    );
    assert!(err);
    let (_, srcs) = support.call("list_sources", json!({}));
    assert_eq!(srcs["sources"].as_array().unwrap().len(), 1);
    let (_, f) = support.call("freshness_report", json!({}));
    assert_eq!(f["sources"].as_array().unwrap().len(), 1);
    support.close();

    // An unknown token never starts a session.
    let out = command(org, &["mcp"])
        .env("CTXPLANE_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_stop_over_http_and_a_rotated_token_reach_a_running_mcp_server() {
    let tmp = example_org_today();
    let org = tmp.path();
    let mut agent = Session::start(org, "demo-agent-platform-token");
    let (err, _) = agent.call("list_sources", json!({}));
    assert!(!err);
    let (mut server, addr) = common::start_server(org, &["--no-watch", "--no-embed"]);
    let (code, _) = common::http(
        &addr,
        "POST",
        "/v1/admin/stop",
        Some("demo-steward-token"),
        Some(r#"{"reason":"incident drill"}"#),
    );
    assert_eq!(code, 200);
    let (err, v) = agent.call("get_context", json!({"query": "capture"}));
    assert!(err, "{v}");
    assert!(v.as_str().unwrap().contains("incident drill"), "{v}");
    let (code, _) = common::http(
        &addr,
        "POST",
        "/v1/admin/resume",
        Some("demo-steward-token"),
        None,
    );
    assert_eq!(code, 200);
    let (err, v) = agent.call("list_sources", json!({}));
    assert!(!err, "{v}");
    server.kill().unwrap();
    server.wait().unwrap();

    // Rotate the agent's token in the registry: the running session's
    // token no longer authenticates.
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    let old = registry_hash("demo-agent-platform-token");
    assert!(text.contains(&old));
    std::fs::write(&reg, text.replace(&old, &registry_hash("a-new-token"))).unwrap();
    let (err, v) = agent.call("list_sources", json!({}));
    assert!(err, "{v}");
    assert!(v.as_str().unwrap().contains("unauthorized"), "{v}");
    agent.close();
}

fn registry_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

#[test]
fn get_context_answers_carry_a_snapshot_and_the_registry_as_it_is_now() {
    let tmp = example_org_today();
    let org = tmp.path();
    let mut coding = Session::start(org, "demo-agent-platform-token");
    let ask = json!({"query": "refund window", "mode": "lexical", "packages": false});
    let (err, a) = coding.call("get_context", ask.clone());
    assert!(!err, "{a:#}");
    let cite = a["snapshot"]["cite"].as_str().unwrap().to_string();
    assert!(cite.starts_with("ctxplane:snap-"), "{a:#}");
    assert!(
        a["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["provenance"]["path"] == "src/refunds.rs")
    );
    // Files instead of chunks: limit counts files, each names its chunks.
    let (err, files) = coding.call(
        "get_context",
        json!({"query": "refund window", "mode": "lexical", "packages": false, "group_by": "file", "limit": 2}),
    );
    assert!(!err, "{files:#}");
    let listed = files["files"].as_array().unwrap();
    assert!(!listed.is_empty() && listed.len() <= 2, "{files:#}");
    assert_eq!(listed[0]["path"], "src/refunds.rs", "{files:#}");
    for id in listed[0]["chunks"].as_array().unwrap() {
        let r = files["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap();
        assert_eq!(r["provenance"]["path"], "src/refunds.rs");
    }
    let bad = coding.request(
        "tools/call",
        json!({"name": "get_context", "arguments": {"query": "refund window", "group_by": "folders"}}),
    );
    assert!(
        bad.get("error").is_some() || bad["result"]["isError"] == true,
        "an unknown group_by is refused: {bad:#}"
    );
    // The pasted citation line resolves through explain_provenance.
    let (err, r) = coding.call("explain_provenance", json!({"result_id": cite}));
    assert!(!err, "{r:#}");
    assert_eq!(r["verdict"], "holds", "{r:#}");
    assert_eq!(r["snapshot"]["via"], "mcp");

    // A steward denies the path; the running session sees it at once.
    let reg = org.join("registry.toml");
    let text = std::fs::read_to_string(&reg).unwrap();
    std::fs::write(
        &reg,
        text.replace(r#""*.sql.gz"]"#, r#""*.sql.gz", "**/refunds.rs"]"#),
    )
    .unwrap();
    let (err, after) = coding.call("get_context", ask);
    assert!(!err);
    assert!(
        !after["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["provenance"]["path"] == "src/refunds.rs"),
        "{after:#}"
    );
    assert!(after["withheld_by_policy"].as_u64().unwrap() >= 1);
    let (err, tier1) = coding.call("get_context", json!({"query": "refund", "mode": "lexical"}));
    assert!(!err);
    assert_eq!(tier1["topic"]["outcome"], "citation_denied", "{tier1:#}");
    let (_, r) = coding.call("explain_provenance", json!({"result_id": cite}));
    assert_eq!(r["verdict"], "partly_stale", "{r:#}");
    coding.close();
}
