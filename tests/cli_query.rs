//! Asking for context through the binary: hybrid results within a
//! principal's scope and token budget, each with provenance; `provenance`
//! explains a result id; `status` reports vectors; without a model the
//! same query is served lexically and says so; batches and bad input.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{command, example_org_today, run, run_json};

#[test]
fn query_provenance_status_and_the_lexical_fallback() {
    let tmp = example_org_today();
    let org = tmp.path();
    let idx = run_json(org, &["index", "--json"]);
    assert_eq!(idx["vectors"]["coverage"], 1.0, "{:#}", idx["vectors"]);

    // Tier 2 (search); tier 1 is tests/cli_topics.rs.
    let a = run_json(
        org,
        &[
            "query",
            "how do we fail over the database?",
            "--no-packages",
            "--json",
        ],
    );
    assert_eq!(a["served_by"], "hybrid");
    // A mixed corpus: a short question about a rule that code enforces is
    // answered by the code first, whatever the genre of the other chunks.
    let refunds = run_json(
        org,
        &["query", "How are refunds limited?", "--no-packages", "--json"],
    );
    assert_eq!(refunds["served_by"], "hybrid");
    assert_eq!(
        refunds["results"][0]["provenance"]["symbol"], "validate_refund",
        "{:#}",
        refunds["results"]
    );
    let results = a["results"].as_array().unwrap();
    assert!(!results.is_empty());
    for r in results {
        let p = &r["provenance"];
        for field in [
            "result_id",
            "source",
            "owner",
            "tier",
            "path",
            "start_line",
            "end_line",
            "content_hash",
            "file_hash",
            "ingested_at",
            "decision_id",
            "registry_version",
            "served_by",
        ] {
            assert!(!p[field].is_null(), "{field} missing in {p:#}");
        }
        assert_eq!(p["freshness"]["status"], "fresh");
        assert_eq!(p["result_id"], r["id"]);
    }
    // The runbook about failover ranks near the top.
    assert!(
        results
            .iter()
            .take(3)
            .any(|r| r["provenance"]["path"] == "runbooks/db-failover.md"),
        "{results:#?}"
    );

    // Scope and budget: support-agent reads platform-docs (tier 1) only.
    let s = run_json(
        org,
        &[
            "query",
            "payments ledger retry database",
            "--no-packages",
            "--as",
            "support-agent",
            "--max-tokens",
            "120",
            "--json",
        ],
    );
    assert!(s["tokens"].as_u64().unwrap() <= 120);
    for r in s["results"].as_array().unwrap() {
        assert_eq!(r["provenance"]["source"], "platform-docs");
    }
    // An unknown principal is an error, not an empty answer.
    let nobody = command(org, &["query", "database", "--as", "nobody-such", "--json"])
        .output()
        .unwrap();
    assert_eq!(nobody.status.code(), Some(2));
    let err: serde_json::Value = serde_json::from_slice(&nobody.stdout).unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("no principal \"nobody-such\""),
        "{err}"
    );

    // Provenance of a result, then of the same result after its file changed.
    let id = results[0]["id"].as_str().unwrap().to_string();
    let path = results[0]["provenance"]["path"].as_str().unwrap().to_string();
    let source = results[0]["provenance"]["source"].as_str().unwrap().to_string();
    let p = run_json(org, &["provenance", &id, "--json"]);
    assert_eq!(p["checks"]["chunk_matches_its_hash"], true);
    assert_eq!(p["checks"]["file_on_disk_matches_ingested_hash"], true);
    assert_eq!(p["checks"]["policy_now"]["allowed"], true);
    assert!(!p["ingest"]["audit_event"].is_null(), "{p:#}");
    assert_eq!(p["source"]["id"], source.as_str());
    let file = org.join("sources").join(&source).join(&path);
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    writeln!(f, "\nAn edit the index has not seen yet.").unwrap();
    drop(f);
    let p = run_json(org, &["provenance", &id, "--json"]);
    assert_eq!(p["checks"]["file_on_disk_matches_ingested_hash"], false);
    assert_eq!(p["provenance"]["freshness"]["status"], "modified_on_disk");
    let unknown = command(org, &["provenance", "c-000000000000000000000000"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("not in the index"));

    let st = run_json(org, &["status", "--json"]);
    assert_eq!(st["ok"], true);
    assert_eq!(st["index"]["dense"]["available"], true);
    assert_eq!(st["index"]["served_by"], "hybrid");

    // Without the model: still answers, lexically, and says why.
    let out = command(org, &["query", "postgres failover", "--no-packages", "--json"])
        .env("CTXPLANE_MODEL_DIR", org.join("no-model-here"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let lex: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lex["served_by"], "lexical");
    assert!(
        lex["dense"]["reason"]
            .as_str()
            .unwrap()
            .contains("setup-model.sh")
    );
    assert_eq!(lex["results"][0]["provenance"]["served_by"], "lexical");
    // Tier 1 matches on terms alone without the model.
    let out = command(org, &["query", "fail over the postgres primary", "--json"])
        .env("CTXPLANE_MODEL_DIR", org.join("no-model-here"))
        .output()
        .unwrap();
    let lex: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lex["served_by"], "topic_package", "{lex:#}");
    assert!(lex["topic"]["dense"].is_null());

    // Batches: one line out per line in, bad lines reported, exit 1.
    let mut child = command(org, &["query", "--batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"id\": 1, \"query\": \"postgres\"}\nnot json\n{\"id\": \"b\", \"query\": \"retry\", \"as\": \"support-agent\"}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], 1);
    assert!(lines[1]["error"].as_str().unwrap().contains("not a query line"));
    for r in lines[2]["answer"]["results"].as_array().unwrap() {
        assert_eq!(r["provenance"]["source"], "platform-docs");
    }

    // A long query (a pasted stack trace) is answered, reduced.
    let trace = format!(
        "{}\n  File \"ledger_worker/reconcile.py\", line 3, in reconcile\nKeyError: 'entry'\n",
        "the nightly reconcile job failed again with this trace ".repeat(300)
    );
    assert!(trace.len() > 16 * 1024 && trace.len() < 32 * 1024);
    let v = run_json(
        org,
        &["query", &trace, "--mode", "lexical", "--no-packages", "--json"],
    );
    assert_eq!(
        v["results"][0]["provenance"]["path"], "ledger_worker/reconcile.py",
        "{v:#}"
    );
    // Oversized queries are refused as bad input (exit 2).
    let big = "x".repeat(33_000);
    assert_eq!(command(org, &["query", &big]).status().unwrap().code(), Some(2));

    let audit = run(org, &["audit", "tail", "-n", "100"]);
    assert!(audit.matches(" query ").count() >= 5, "{audit}");
    assert!(audit.contains("provenance"));
}

/// Lockfiles, generated and vendored files are left out of answers and
/// tests and changelogs ranked lower by default; a source's `answers`
/// rules change that. All stay indexed.
#[test]
fn answer_rules_leave_out_lockfiles_and_demote_tests_per_source() {
    let tmp = example_org_today();
    let org = tmp.path();
    // A changelog whose every line shares words with the question.
    std::fs::write(
        org.join("sources/ledger-worker/CHANGELOG.md"),
        "# Changelog\n\n## 1.4.0\n\n- Reconcile mismatches between the ledger and the bank \
         feed nightly; reconcile mismatches report lists each mismatch.\n",
    )
    .unwrap();
    run_json(org, &["index", "--no-embed", "--json"]);
    let ask = |q: &str| {
        run_json(
            org,
            &[
                "query",
                q,
                "--mode",
                "lexical",
                "--no-packages",
                "--limit",
                "20",
                "--json",
            ],
        )
    };
    let paths = |q: &str| -> (Vec<String>, u64) {
        let a = ask(q);
        let paths = a["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{}:{}",
                    r["provenance"]["source"].as_str().unwrap(),
                    r["provenance"]["path"].as_str().unwrap()
                )
            })
            .collect();
        (paths, a["left_out_by_answer_rules"].as_u64().unwrap())
    };
    let rank = |paths: &[String], p: &str| paths.iter().position(|x| x == p).unwrap_or(usize::MAX);
    let (tokio, left_out) = paths("tokio version");
    assert!(!tokio.iter().any(|p| p.ends_with("Cargo.lock")), "{tokio:?}");
    assert!(left_out > 0);
    let (reconcile, _) = paths("reconcile mismatches");
    let test_file = "ledger-worker:tests/test_reconcile.py";
    let demoted = rank(&reconcile, test_file);
    assert!(
        rank(&reconcile, "ledger-worker:CHANGELOG.md") < usize::MAX,
        "{reconcile:?}"
    );
    // A file's best score for the question. Lexical scores are the
    // engine's, relative to its best: the same whatever the rules, so a
    // demotion shows as exactly half.
    let score = |path: &str| -> f64 {
        let a = ask("reconcile mismatches");
        a["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["provenance"]["path"] == path)
            .unwrap_or_else(|| panic!("{path} is still answered: {a:#}"))["score"]
            .as_f64()
            .unwrap()
    };
    let (test_demoted, changelog_demoted) = (score("tests/test_reconcile.py"), score("CHANGELOG.md"));
    let halved = |demoted: f64, kept: f64| (kept - 2.0 * demoted).abs() < 1e-4;

    let registry = org.join("registry.toml");
    let original = std::fs::read_to_string(&registry).unwrap();
    let ledger = "description = \"Ledger writer and nightly reconciliation (Python)\"\n";
    let with_rules = |ledger_rules: &str| {
        let text = original
            .replace(
                "exclude = [\"target/**\"]\n",
                "exclude = [\"target/**\"]\nanswers = { lockfiles = \"keep\" }\n",
            )
            .replace(ledger, &format!("{ledger}answers = {{ {ledger_rules} }}\n"));
        std::fs::write(&registry, text).unwrap();
    };
    // Each key acts on its own class only.
    with_rules("changelogs = \"keep\"");
    let (tokio, _) = paths("tokio version");
    assert!(tokio.iter().any(|p| p == "payments-api:Cargo.lock"), "{tokio:?}");
    let changelog_kept = score("CHANGELOG.md");
    assert!(
        halved(changelog_demoted, changelog_kept),
        "{changelog_demoted} {changelog_kept}"
    );
    assert!((score("tests/test_reconcile.py") - test_demoted).abs() < 1e-4);
    with_rules("tests = \"keep\"");
    let (reconcile, _) = paths("reconcile mismatches");
    assert!(rank(&reconcile, test_file) < demoted, "{reconcile:?}");
    let test_kept = score("tests/test_reconcile.py");
    assert!(halved(test_demoted, test_kept), "{test_demoted} {test_kept}");
    assert!((score("CHANGELOG.md") - changelog_demoted).abs() < 1e-4);
}

/// `--group-by file`: files ranked by their chunks, each naming its best
/// chunks among the results; `--limit` counts files; a bad value is a
/// usage error.
#[test]
fn query_grouped_by_file() {
    let tmp = example_org_today();
    let org = tmp.path();
    run_json(org, &["index", "--no-embed", "--json"]);
    let ask = [
        "query",
        "refund window partial refunds",
        "--mode",
        "lexical",
        "--no-packages",
        "--group-by",
        "file",
    ];
    let a = run_json(org, &[&ask[..], &["--limit", "3", "--json"]].concat());
    let files = a["files"].as_array().unwrap();
    assert!(!files.is_empty() && files.len() <= 3, "{a:#}");
    assert_eq!(files[0]["path"], "src/refunds.rs", "{a:#}");
    let results = a["results"].as_array().unwrap();
    for f in files {
        for id in f["chunks"].as_array().unwrap() {
            let r = results.iter().find(|r| &r["id"] == id).unwrap();
            assert_eq!(r["provenance"]["path"], f["path"]);
            assert!(r["provenance"]["citation"].is_string());
        }
    }
    let text = run(org, &ask);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("payments-api:src/refunds.rs  (L"),
        "{text}"
    );
    let bad = command(org, &["query", "refund", "--group-by", "folder"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
