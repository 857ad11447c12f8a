//! Signed audit checkpoints, through the real binary: an attacker who can
//! write the data directory (but cannot read the signing key) re-links,
//! truncates, rewrites or wipes the log so that the plain chain check
//! passes; `audit verify --key` catches each of them.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{command, example_org, run};
use serde::Serialize;

/// An org whose CLI signs a checkpoint every 3 entries with a key kept
/// outside the data dir, exporting copies to a second directory; a few
/// registry changes made. Returns (org, key dir, public key).
fn signed_org() -> (tempfile::TempDir, tempfile::TempDir, String) {
    let org = example_org();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let public = run(org.path(), &["audit", "keygen", "--out", key.to_str().unwrap()])
        .trim()
        .to_string();
    std::fs::write(
        org.path().join("ctxplane.toml"),
        format!(
            "audit_key_file = {:?}\naudit_checkpoint_every = 3\naudit_checkpoint_export = {:?}\n",
            key,
            keys.path().join("export")
        ),
    )
    .unwrap();
    for (i, role) in ["agent", "developer", "ci", "agent", "developer"]
        .iter()
        .enumerate()
    {
        add_principal(org.path(), &format!("p{i}"), role);
    }
    (org, keys, public)
}

/// A principal reading payments-api, added through the CLI (an audited edit).
fn add_principal(org: &Path, name: &str, role: &str) {
    run(
        org,
        &[
            "registry",
            "principal",
            "add",
            "--name",
            name,
            "--role",
            role,
            "--tier-ceiling",
            "2",
            "--source",
            "payments-api",
        ],
    );
}

fn audit_dir(org: &Path) -> PathBuf {
    org.join(".ctxplane/audit")
}

/// `audit verify` (with `--key` when given): (exit code, JSON report).
fn verify(org: &Path, key: Option<&str>, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["audit", "verify", "--json"];
    if let Some(k) = key {
        args.extend(["--key", k]);
    }
    args.extend_from_slice(extra);
    let out = command(org, &args).output().unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), report)
}

/// What an entry's hash covers, in the order it is hashed.
#[derive(Serialize)]
struct Body<'a> {
    seq: u64,
    ts: &'a serde_json::Value,
    actor: &'a serde_json::Value,
    action: &'a serde_json::Value,
    subject: &'a serde_json::Value,
    details: &'a serde_json::Value,
    prev: &'a str,
}

/// Rewrites the log as an attacker with write access would: `edit` the
/// entries, then re-number, re-link and re-hash all of them and move the
/// head, so that the plain chain check passes.
fn forge(org: &Path, edit: impl FnOnce(&mut Vec<serde_json::Map<String, serde_json::Value>>)) {
    let log = audit_dir(org).join("log.jsonl");
    let mut entries: Vec<serde_json::Map<String, serde_json::Value>> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    edit(&mut entries);
    let mut prev = "0".repeat(64);
    let mut out = String::new();
    for (i, e) in entries.iter_mut().enumerate() {
        let seq = i as u64 + 1;
        let body = Body {
            seq,
            ts: &e["ts"],
            actor: &e["actor"],
            action: &e["action"],
            subject: &e["subject"],
            details: &e["details"],
            prev: &prev,
        };
        let mut h = blake3::Hasher::new();
        h.update(b"ctxplane-audit-v1\n");
        h.update(&serde_json::to_vec(&body).unwrap());
        let hash = h.finalize().to_hex().to_string();
        e.insert("seq".into(), seq.into());
        e.insert("prev".into(), prev.clone().into());
        e.insert("hash".into(), hash.clone().into());
        // Same field order as the log writes.
        out.push_str(&format!(
            "{{\"seq\":{seq},\"ts\":{},\"actor\":{},\"action\":{},\"subject\":{},\"details\":{},\"prev\":\"{prev}\",\"hash\":\"{hash}\"}}\n",
            e["ts"], e["actor"], e["action"], e["subject"], e["details"]
        ));
        prev = hash;
    }
    std::fs::write(&log, out).unwrap();
    std::fs::write(
        audit_dir(org).join("head.json"),
        serde_json::to_vec(&serde_json::json!({"seq": entries.len(), "hash": prev})).unwrap(),
    )
    .unwrap();
}

/// `audit verify --key` fails, naming `reason`.
fn refused_with_key(org: &Path, public: &str, extra: &[&str], reason: &str) {
    let (code, r) = verify(org, Some(public), extra);
    assert_eq!(code, 1, "{r}");
    assert!(r["first_bad"]["reason"].as_str().unwrap().contains(reason), "{r}");
}

fn tampered(org: &Path, public: &str, what: &str) {
    let (code, plain) = verify(org, None, &[]);
    assert_eq!(
        code, 0,
        "{what}: the forgery fools the plain chain check: {plain}"
    );
    let (code, signed) = verify(org, Some(public), &[]);
    assert_eq!(code, 1, "{what}: not detected with the key: {signed}");
    assert_eq!(signed["intact"], false, "{what}: {signed}");
}

#[test]
fn keygen_keeps_the_key_private_and_out_of_the_data_dir() {
    let org = example_org();
    let inside = org.path().join(".ctxplane/audit.key");
    std::fs::create_dir_all(org.path().join(".ctxplane")).unwrap();
    let out = command(
        org.path(),
        &["audit", "keygen", "--out", inside.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("inside the data directory"));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("k");
    let public = run(org.path(), &["audit", "keygen", "--out", key.to_str().unwrap()]);
    assert_eq!(public.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // Never overwritten.
    let again = command(org.path(), &["audit", "keygen", "--out", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!again.status.success());
    // A key others can read is refused as configuration.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = command(org.path(), &["registry", "list"])
            .env("CTXPLANE_AUDIT_KEY_FILE", &key)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    }
}

#[test]
fn an_untouched_signed_log_verifies_through_its_last_entry() {
    let (org, keys, public) = signed_org();
    let (code, r) = verify(org.path(), Some(&public), &[]);
    assert_eq!(code, 0, "{r}");
    // Every command that appended signed at exit: the whole log is covered.
    assert_eq!(r["signed_through"], r["entries"], "{r}");
    let export = keys.path().join("export/checkpoints.jsonl");
    assert_eq!(
        std::fs::read(&export).unwrap(),
        std::fs::read(audit_dir(org.path()).join("checkpoints.jsonl")).unwrap()
    );
    // The wrong key proves nothing.
    let (_, other) = {
        let k = tempfile::tempdir().unwrap();
        let p = run(
            org.path(),
            &["audit", "keygen", "--out", k.path().join("x").to_str().unwrap()],
        );
        (k, p.trim().to_string())
    };
    let (code, r) = verify(org.path(), Some(&other), &[]);
    assert_eq!(code, 1, "{r}");
}

#[test]
fn only_processes_that_appended_sign_and_verifying_needs_no_secret() {
    let (org, keys, public) = signed_org();
    let cps = audit_dir(org.path()).join("checkpoints.jsonl");
    let count = || std::fs::read_to_string(&cps).unwrap().lines().count();
    let before = count();
    run(org.path(), &["audit", "verify"]);
    run(org.path(), &["audit", "tail"]);
    run(org.path(), &["policy", "scope", "p0"]);
    assert_eq!(count(), before, "a read-only command signed a checkpoint");
    // The secret key gone (an auditor's machine): verifying works, anything
    // that may append refuses to run unsigned.
    std::fs::remove_file(keys.path().join("audit.key")).unwrap();
    let (code, r) = verify(org.path(), Some(&public), &[]);
    assert_eq!(code, 0, "{r}");
    let out = command(org.path(), &["registry", "list"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn rewriting_relinking_truncating_and_wiping_are_detected_with_the_key() {
    let (base, keys, public) = signed_org();
    let fresh = || {
        let t = tempfile::tempdir().unwrap();
        common::copy_dir(base.path(), t.path());
        t
    };

    let t = fresh();
    forge(t.path(), |e| {
        e[1].insert("actor".into(), "someone-else".into());
    });
    tampered(t.path(), &public, "rewritten actor");

    let t = fresh();
    forge(t.path(), |e| {
        e.remove(2);
    });
    tampered(t.path(), &public, "entry dropped from the middle");

    let t = fresh();
    forge(t.path(), |e| {
        let mut fake = e[0].clone();
        fake.insert("action".into(), "source.approve".into());
        e.insert(1, fake);
    });
    tampered(t.path(), &public, "entry forged into the middle");

    let t = fresh();
    forge(t.path(), |e| {
        e.truncate(e.len() - 2);
    });
    tampered(t.path(), &public, "tail dropped");

    // Wiped: log, head and checkpoints all gone. The plain check shrugs;
    // the copy kept elsewhere does not.
    let t = fresh();
    std::fs::remove_dir_all(audit_dir(t.path())).unwrap();
    let (code, _) = verify(t.path(), None, &[]);
    assert_eq!(code, 0);
    let export = keys.path().join("export");
    refused_with_key(
        t.path(),
        &public,
        &["--checkpoints", export.to_str().unwrap()],
        "entries removed",
    );

    // A checkpoint forged with another key is not trusted.
    let t = fresh();
    let cps = audit_dir(t.path()).join("checkpoints.jsonl");
    let text = std::fs::read_to_string(&cps).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let mut altered = last.clone();
    altered["hash"] = serde_json::Value::from("f".repeat(64));
    std::fs::write(&cps, format!("{text}{altered}\n")).unwrap();
    refused_with_key(t.path(), &public, &[], "bad signature");
}

#[test]
fn a_forged_tail_adopted_after_a_crash_is_on_record() {
    let (org, _keys, public) = signed_org();
    // A complete entry after the head, as a crash (or a forger) leaves it.
    let log = audit_dir(org.path()).join("log.jsonl");
    let head = std::fs::read(audit_dir(org.path()).join("head.json")).unwrap();
    forge(org.path(), |e| {
        let mut fake = e[0].clone();
        fake.insert("action".into(), "source.approve".into());
        e.push(fake);
    });
    std::fs::write(audit_dir(org.path()).join("head.json"), head).unwrap();
    let (code, r) = verify(org.path(), Some(&public), &[]);
    assert_eq!(code, 0, "{r}");
    assert!(
        r["notes"]
            .to_string()
            .contains("after the last signed checkpoint"),
        "{r}"
    );
    add_principal(org.path(), "late", "agent");
    let (_, r) = verify(org.path(), Some(&public), &[]);
    assert!(r["notes"].to_string().contains("adopted 1"), "{r}");
    let text = std::fs::read_to_string(&log).unwrap();
    let adopted = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| !e["details"]["adopted_after_crash"].is_null())
        .expect("the next append records what it adopted");
    assert_eq!(adopted["details"]["adopted_after_crash"], 1, "{adopted}");
}
