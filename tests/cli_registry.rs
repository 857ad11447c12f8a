//! The steward's CLI, run as the real binary against real files.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ctxplane");

fn example_registry() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme/registry.toml")
}

/// A scratch copy of the example registry with its own data dir.
struct Org {
    dir: tempfile::TempDir,
}

impl Org {
    fn new() -> Org {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(example_registry(), dir.path().join("registry.toml")).unwrap();
        Org { dir }
    }

    fn registry(&self) -> PathBuf {
        self.dir.path().join("registry.toml")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("CTXPLANE_CONFIG")
            .env_remove("CTXPLANE_REGISTRY")
            .env_remove("CTXPLANE_DATA_DIR")
            .env("CTXPLANE_ACTOR", "rivera")
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn audit_actions(&self) -> Vec<String> {
        let v = self.json(&["audit", "tail", "-n", "100"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect()
    }
}

#[test]
fn list_shows_the_example_registry() {
    let org = Org::new();
    let text = org.ok(&["registry", "list"]);
    assert!(
        text.contains("payments-api") && text.contains("approved"),
        "{text}"
    );
    let v = org.json(&["registry", "list"]);
    let sources = v["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 4);
    let people = sources.iter().find(|s| s["id"] == "people-ops").unwrap();
    assert_eq!(people["status"], "proposed");
    assert_eq!(people["tier"], 4);
    // Reading the registry the first time is itself recorded.
    assert_eq!(org.audit_actions(), ["registry.adopted"]);
    assert!(
        org.dir.path().join(".ctxplane/audit/log.jsonl").is_file(),
        "data dir defaults beside the registry"
    );
}

#[test]
fn a_steward_walks_a_source_through_its_life() {
    let org = Org::new();
    std::fs::create_dir(org.dir.path().join("wiki")).unwrap();
    org.ok(&[
        "registry",
        "add",
        "--id",
        "wiki",
        "--kind",
        "dir",
        "--location",
        "wiki",
        "--owner",
        "docs",
        "--tier",
        "3",
    ]);
    let status = |org: &Org| {
        let v = org.json(&["registry", "list"]);
        v["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "wiki")
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status(&org), "proposed");
    org.ok(&["registry", "deny", "wiki", "--reason", "needs an owner review"]);
    assert_eq!(status(&org), "denied");
    let approved = org.json(&["registry", "approve", "wiki", "--reason", "owner reviewed"]);
    assert_eq!(approved["action"], "source.approve");
    assert_eq!(status(&org), "approved");
    org.ok(&["registry", "revoke", "wiki", "--reason", "contains customer data"]);
    assert_eq!(status(&org), "revoked");
    assert_eq!(
        org.audit_actions(),
        [
            "registry.adopted",
            "source.add",
            "source.deny",
            "source.approve",
            "source.revoke",
            // The CLI revocation purges and proves it, exactly as HTTP's.
            "source.purge_verified"
        ]
    );
    assert!(org.ok(&["audit", "verify"]).contains("intact: 6 entries"));
    let text = std::fs::read_to_string(org.registry()).unwrap();
    assert!(
        text.starts_with("# Acme's source registry"),
        "comments survive edits"
    );
    assert!(text.contains("status_reason = \"contains customer data\""));
}

#[test]
fn refused_edits_leave_the_registry_and_log_as_they_were() {
    let org = Org::new();
    org.ok(&["registry", "list"]);
    let before = std::fs::read(org.registry()).unwrap();
    assert!(
        org.fails(&["registry", "revoke", "payments-api"], 1)
            .contains("a reason is required to revoke")
    );
    assert!(
        org.fails(&["registry", "deny", "payments-api", "--reason", "x"], 1)
            .contains("revoke it instead")
    );
    assert!(
        org.fails(&["registry", "approve", "ghost"], 1)
            .contains("no source \"ghost\"")
    );
    let dup = [
        "registry",
        "add",
        "--id",
        "payments-api",
        "--kind",
        "dir",
        "--location",
        "x",
        "--owner",
        "o",
        "--tier",
        "1",
    ];
    assert!(org.fails(&dup, 1).contains("already exists"));
    let bad_tier = [
        "registry",
        "add",
        "--id",
        "n",
        "--kind",
        "git",
        "--location",
        "x",
        "--owner",
        "o",
        "--tier",
        "5",
    ];
    assert!(org.fails(&bad_tier, 1).contains("tier must be 1, 2, 3 or 4"));
    let bad_glob = [
        "registry",
        "add",
        "--id",
        "n",
        "--kind",
        "git",
        "--location",
        "x",
        "--owner",
        "o",
        "--tier",
        "1",
        "--include",
        "src/[x",
    ];
    assert!(org.fails(&bad_glob, 1).contains("does not parse"));
    let bad_expiry = [
        "registry",
        "exception",
        "grant",
        "--source",
        "payments-api",
        "--path",
        "a.pem",
        "--reason",
        "r",
        "--expires-at",
        "2001-01-01T00:00:00Z",
    ];
    assert!(org.fails(&bad_expiry, 1).contains("is not after granted_at"));
    assert_eq!(std::fs::read(org.registry()).unwrap(), before);
    assert_eq!(org.audit_actions(), ["registry.adopted"]);
}

#[test]
fn malformed_registries_are_located_and_never_rewritten() {
    let org = Org::new();
    let text = std::fs::read_to_string(org.registry())
        .unwrap()
        .replace("tier = 2\nstatus", "tier = two\nstatus");
    std::fs::write(org.registry(), &text).unwrap();
    let line = text.lines().position(|l| l == "tier = two").unwrap() + 1;
    let err = org.fails(&["registry", "approve", "people-ops"], 2);
    assert!(err.contains(&format!("registry.toml:{line}:8:")), "{err}");
    assert_eq!(std::fs::read_to_string(org.registry()).unwrap(), text);
    let err = org.fails(&["registry", "validate"], 2);
    assert!(err.contains(&format!(":{line}:8:")), "{err}");
    std::fs::write(org.registry(), b"version = 1\n\xff\xfe").unwrap();
    assert!(org.fails(&["registry", "list"], 2).contains("not valid UTF-8"));
    std::fs::remove_file(org.registry()).unwrap();
    assert!(org.fails(&["registry", "list"], 2).contains("registry init"));
}

#[test]
fn exceptions_are_granted_listed_and_their_expiry_audited() {
    let org = Org::new();
    let denied = org.json(&["policy", "decide", "payments-api", "certs/ca.pem"]);
    assert_eq!(denied[0]["outcome"], "deny");
    assert_eq!(denied[0]["reason"], "never_ingest");
    let granted = org.json(&[
        "registry",
        "exception",
        "grant",
        "--source",
        "payments-api",
        "--path",
        "certs/ca.pem",
        "--reason",
        "public test CA",
        "--for",
        "7d",
        "--id",
        "exc-ca",
    ]);
    assert_eq!(granted["subject"], "exc-ca");
    let allowed = org.json(&[
        "policy",
        "decide",
        "payments-api",
        "certs/ca.pem",
        "certs/other.pem",
    ]);
    assert_eq!(allowed[0]["outcome"], "allow");
    assert_eq!(allowed[0]["exception"], "exc-ca");
    assert_eq!(
        allowed[1]["outcome"], "deny",
        "the exception covers only its path"
    );
    let list = org.json(&["registry", "exception", "list"]);
    let windows: Vec<&str> = list["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["window"].as_str().unwrap())
        .collect();
    assert_eq!(windows, ["live", "live"]);

    // An exception whose window has closed is reported and audited once.
    let text = std::fs::read_to_string(org.registry()).unwrap().replace(
        "granted_at = 2026-11-01T00:00:00Z\nexpires_at = 2027-10-31T00:00:00Z",
        "granted_at = 2024-01-01T00:00:00Z\nexpires_at = 2024-02-01T00:00:00Z",
    );
    std::fs::write(org.registry(), text).unwrap();
    let list = org.json(&["registry", "exception", "list"]);
    assert_eq!(list["exceptions"][0]["window"], "expired");
    org.ok(&["registry", "list"]);
    let actions = org.audit_actions();
    assert_eq!(
        actions.iter().filter(|a| *a == "exception.expired").count(),
        1,
        "{actions:?}"
    );
    assert!(actions.contains(&"registry.changed_externally".to_string()));
    let env = org.json(&["policy", "decide", "payments-api", "config/.env.example"]);
    assert_eq!(env[0]["outcome"], "deny");
    assert_eq!(env[0]["lapsed_exceptions"][0], "exc-env-example");
}

#[test]
fn principals_get_a_token_once_and_only_its_hash_is_stored() {
    let org = Org::new();
    let v = org.json(&[
        "registry",
        "principal",
        "add",
        "--name",
        "review-bot",
        "--role",
        "agent",
        "--tier-ceiling",
        "1",
        "--source",
        "platform-docs",
    ]);
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("ctx_") && token.len() == 68);
    let text = std::fs::read_to_string(org.registry()).unwrap();
    assert!(!text.contains(token));
    let log = std::fs::read_to_string(org.dir.path().join(".ctxplane/audit/log.jsonl")).unwrap();
    assert!(!log.contains(token), "tokens never reach the audit log");
    let scope = org.json(&["policy", "scope", "review-bot"]);
    assert_eq!(scope["sources"], serde_json::json!(["platform-docs"]));
    let list = org.json(&["registry", "principal", "list"]);
    assert!(
        list["principals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "review-bot")
    );
}

#[test]
fn audit_verify_names_the_first_tampered_entry() {
    let org = Org::new();
    org.ok(&["registry", "approve", "people-ops", "--reason", "ok"]);
    org.ok(&["registry", "revoke", "people-ops", "--reason", "not needed"]);
    let log_path = org.dir.path().join(".ctxplane/audit/log.jsonl");
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The revocation's purge proof is the last entry: tamper with it.
    let last = log.lines().count();
    assert!(
        log.lines().last().unwrap().contains("source.purge_verified"),
        "{log}"
    );
    let tampered: Vec<String> = log
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == last {
                l.replacen("\"clean\":true", "\"clean\":false", 1)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&log_path, tampered.join("\n") + "\n").unwrap();
    let out = org.run(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("log.jsonl:{last}:")), "{err}");
    let report = org.run(&["audit", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(v["intact"], false);
    assert_eq!(v["first_bad"]["line"], last);
    // Appends refuse to extend a chain whose tail no longer checks out.
    assert_eq!(
        org.run(&["registry", "approve", "people-ops", "--reason", "x"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn settings_layer_defaults_file_env_and_flags() {
    let org = Org::new();
    std::fs::create_dir(org.dir.path().join("conf")).unwrap();
    std::fs::write(
        org.dir.path().join("conf/ctxplane.toml"),
        "registry = \"../registry.toml\"\ndata_dir = \"../state\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", "conf/ctxplane.toml", "registry", "list"])
        .current_dir(org.dir.path())
        .env_remove("CTXPLANE_DATA_DIR")
        .env_remove("CTXPLANE_REGISTRY")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        org.dir.path().join("state/audit/log.jsonl").is_file(),
        "data_dir from the config file"
    );
    let out = Command::new(BIN)
        .args([
            "--config",
            "conf/ctxplane.toml",
            "--data-dir",
            "flagged",
            "registry",
            "list",
        ])
        .current_dir(org.dir.path())
        .env("CTXPLANE_DATA_DIR", "from-env")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        org.dir.path().join("flagged/audit").is_dir(),
        "flags beat env and file"
    );
    assert!(!org.dir.path().join("from-env").exists());
    std::fs::write(org.dir.path().join("conf/ctxplane.toml"), "registy = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", "conf/ctxplane.toml", "registry", "list"])
        .current_dir(org.dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ctxplane.toml:1:1"));
}

#[test]
fn init_creates_a_valid_registry_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    assert!(run(&["registry", "init"]).status.success());
    assert!(run(&["registry", "validate"]).status.success());
    assert_eq!(run(&["registry", "init"]).status.code(), Some(1));
    let v: Value = serde_json::from_slice(&run(&["registry", "list", "--json"]).stdout).unwrap();
    assert_eq!(v["sources"], serde_json::json!([]));
}
