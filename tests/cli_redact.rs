//! `ctxplane redact` through the real binary.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::io::Write;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ctxplane");

fn redact(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .arg("redact")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The binary may refuse (bad rules) before reading its input.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn secrets_are_replaced_and_findings_name_no_values() {
    let input = "db: postgres://app:S3cr3t-Pa55w0rd@db.prod:5432/app\ngh = ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx\nok = 1\n";
    let out = redact(&["--json"], input.as_bytes());
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "db: postgres://app:[REDACTED:url-credentials]@db.prod:5432/app\ngh = [REDACTED:github-token]\nok = 1\n"
    );
    let findings = String::from_utf8(out.stderr).unwrap();
    assert_eq!(findings.lines().count(), 2);
    assert!(!findings.contains("S3cr3t") && !findings.contains("ghp_R8wd"));
    let first: serde_json::Value = serde_json::from_str(findings.lines().next().unwrap()).unwrap();
    assert_eq!(first["rule_id"], "url-credentials");
    assert_eq!(first["line"], 1);
}

#[test]
fn a_user_rule_file_adds_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nid = \"acme-key\"\nregex = '''ACME-[0-9]{6}'''\nkeywords = [\"acme-\"]\n",
    )
    .unwrap();
    let out = redact(
        &["--rules", rules.to_str().unwrap()],
        b"key ACME-123456 and ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx\n",
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "key [REDACTED:acme-key] and [REDACTED:github-token]\n"
    );
    let only = redact(
        &["--rules", rules.to_str().unwrap(), "--no-builtin"],
        b"ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx\n",
    );
    assert_eq!(
        String::from_utf8(only.stdout).unwrap(),
        "ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx\n"
    );
}

#[test]
fn bad_input_and_bad_rules_fail_clearly() {
    let out = redact(&[], b"ok\n\xff\xfe");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid UTF-8 (first bad byte at offset 3)"));
    assert!(out.stdout.is_empty(), "nothing half-redacted is printed");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.toml");
    std::fs::write(&rules, "[[rules]]\nid = \"x\"\nregex = '''(unclosed'''\n").unwrap();
    let out = redact(&["--rules", rules.to_str().unwrap()], b"x\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("regex does not compile"));
}

#[test]
fn a_value_found_in_one_file_is_redacted_from_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "Qw7rT9zLm2XcVb4N";
    // The copy comes first: no rule fires on it, and it is still redacted.
    std::fs::write(
        dir.path().join("a-notes.md"),
        format!("use {secret} for the replica\n"),
    )
    .unwrap();
    std::fs::write(dir.path().join("b.env.sample"), format!("DB_PASSWORD={secret}\n")).unwrap();
    let out = Command::new(BIN)
        .arg("redact")
        .arg("--json")
        .arg(dir.path().join("a-notes.md"))
        .arg(dir.path().join("b.env.sample"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text,
        "use [REDACTED:repeated-secret] for the replica\nDB_PASSWORD=[REDACTED:assigned-secret-unquoted]\n"
    );
    let findings = String::from_utf8(out.stderr).unwrap();
    assert!(!findings.contains(secret));
    assert_eq!(findings.lines().count(), 2, "{findings}");
    assert!(findings.contains("a-notes.md"), "{findings}");
}
