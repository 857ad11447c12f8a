//! Every form of secret the built-in rules used to miss (issue 12, "What the
//! misses are"), planted in a source with fresh random values, indexed
//! through the real binary; then no file under the data directory may hold
//! any of the values.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::path::Path;

use benches::secrets_eval::adversarial::{Rng, base64};
use common::{example_org_today, files_containing, run};

/// Random values from the adversarial corpus's generator, seeded afresh
/// every run; the alphabets are this test's own.
struct Fresh(Rng);

impl Fresh {
    fn new() -> Fresh {
        Fresh(Rng::fresh())
    }

    fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        self.0.string(alphabet, len)
    }

    /// A password-like value: mixed case, digits, a symbol. Shapes the
    /// rules leave alone by design are not drawn, or the test would fail a
    /// few runs in a hundred on values it does not mean to plant: no `%`
    /// (two printf conversions such as `%r%s` make a format string), no
    /// character twice in a row (`xxxx` and `***` read as placeholders),
    /// and nothing so repetitive that it falls under the entropy floor the
    /// rules state (3.2 bits a character in prose).
    fn password(&mut self) -> String {
        loop {
            let pw = format!(
                "{}{}{}",
                self.string(b"ABCDEFGHJKLMNPQRSTUVWXYZ", 2),
                self.string(b"abcdefghijkmnopqrstuvwxyz23456789^*_-", 14),
                self.string(b"23456789", 2)
            );
            let doubled = pw.as_bytes().windows(2).any(|w| w[0] == w[1]);
            if !doubled && entropy(&pw) >= 3.5 {
                return pw;
            }
        }
    }

    fn alnum(&mut self, len: usize) -> String {
        self.string(b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", len)
    }
}

/// Shannon entropy in bits a character.
fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// (file under runbooks/planted/, its text, the values that must not be stored).
fn planted(r: &mut Fresh) -> Vec<(String, String, Vec<String>)> {
    let mut cases = Vec::new();
    let mut add =
        |name: &str, text: String, values: Vec<String>| cases.push((name.to_string(), text, values));

    // A found value is redacted once, and its other copies are left.
    let gh = format!("ghp_{}", r.alnum(36));
    add(
        "copies.md",
        format!("# Rotation\n\ntoken: {gh}\n\nThe old value was {gh} and {gh} twice.\n"),
        vec![gh],
    );
    let pw = r.password();
    add(
        "copy-comment.py",
        format!("DB_PASSWORD = \"{pw}\"\n# previously {pw}\n"),
        vec![pw],
    );
    // Consecutive unindented KEY=VALUE lines lose every second secret.
    let (a, b, c) = (
        r.password(),
        r.password(),
        format!("AKIA{}", r.string(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
    );
    add(
        "app.properties",
        format!(
            "api_url=https://api.internal.test/v1\naws_access_key_id={c}\napi_secret={a}\nSECRET_KEY_PREFIX=abc123\ndb.password={b}\n"
        ),
        vec![a, b, c],
    );
    // Values on another line than their name.
    let pw = r.password();
    add(
        "values.yaml",
        format!("db:\n  password: >-\n    {pw}\n  port: 5432\n"),
        vec![pw],
    );
    let pw = r.password();
    add("block.yaml", format!("api_token: |\n  {pw}\nnext: 1\n"), vec![pw]);
    let pw = r.password();
    add(
        "deploy.yaml",
        format!("env:\n  - name: DB_PASSWORD\n    value: \"{pw}\"\n  - name: LOG_LEVEL\n    value: info\n"),
        vec![pw],
    );
    let pw = r.password();
    let (p1, p2) = pw.split_at(8);
    add(
        "concat.py",
        format!("SECRET = (\"{p1}\"\n          \"{p2}\")\n"),
        vec![pw.clone()],
    );
    let tok = format!("sk_live_{}", r.alnum(24));
    let (t1, t2) = tok.split_at(12);
    add(
        "concat.js",
        format!("const apiKey = '{t1}' +\n  '{t2}';\n"),
        vec![tok.clone()],
    );
    let pw = r.password();
    add(
        "deploy.sh",
        format!("curl -s https://api.internal.test \\\n  --password \\\n  {pw}\n"),
        vec![pw],
    );
    let jwt = format!(
        "eyJhbGciOiJIUzI1NiJ9.{}.{}",
        base64(format!("{{\"sub\":\"{}\"}}", r.alnum(10)).as_bytes()).trim_end_matches('='),
        r.alnum(43)
    );
    let (j1, j2) = jwt.split_at(21);
    add(
        "jwt.ts",
        format!("const t = \"{j1}\"\n  + \"{j2}\";\n"),
        vec![jwt.clone()],
    );
    // Forms no rule covered.
    let pw = r.password();
    add("vendor.md", format!("Datadog token - '{pw}'\n"), vec![pw]);
    let pw = r.password();
    add(
        "chat.md",
        format!("Hi! Your API key is {pw} and it expires soon.\n"),
        vec![pw],
    );
    let jenkins = format!(
        "{{{}}}",
        base64(format!("AQAAABAAAAAQ{}", r.alnum(40)).as_bytes())
    );
    add(
        "jenkins-store.xml",
        format!("<entry>\n  <secret>{jenkins}</secret>\n</entry>\n"),
        vec![jenkins],
    );
    let pw = r.password();
    add(
        "space.properties",
        format!("db.user app\ndb.password {pw}\n"),
        vec![pw],
    );
    let pw = r.password();
    add(
        "Dockerfile",
        format!("FROM alpine:3.20\nENV API_TOKEN {pw}\n"),
        vec![pw],
    );
    let (m, s, pg) = (r.password(), r.password(), r.password());
    add(
        "ops.md",
        format!(
            "```\nmysql -u root -p{m} app\nsshpass -p '{s}' ssh deploy@host\nPGPASSWORD={pg} psql -h db\n```\n"
        ),
        vec![m, s, pg],
    );
    let (x, y) = (r.password(), r.password());
    add(
        "grants.sql",
        format!("CREATE USER 'app'@'%' IDENTIFIED BY '{x}';\nCREATE ROLE ro WITH LOGIN PASSWORD '{y}';\n"),
        vec![x, y],
    );
    let pw = r.password();
    add("Config.java", format!("ds.setPassword(\"{pw}\");\n"), vec![pw]);
    let pw = r.password();
    add(
        "form.html",
        format!("<input type=\"hidden\" name=\"api_key\" value=\"{pw}\">\n"),
        vec![pw],
    );
    let pw = r.password();
    add(
        "table.md",
        format!("| Service | Token |\n|---|---|\n| billing | `{pw}` |\n"),
        vec![pw],
    );
    let encoded = base64(format!("npm_{}", r.alnum(36)).as_bytes());
    add("blob.txt", format!("payload {encoded}\n"), vec![encoded]);
    let body: Vec<String> = (0..6).map(|_| r.alnum(64)).collect();
    let pem = format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        body.join("\n")
    );
    let key_data = base64(pem.as_bytes());
    add(
        "cluster.yaml",
        format!("users:\n- name: admin\n  user:\n    client-key-data: {key_data}\n"),
        vec![key_data],
    );
    let body: Vec<String> = (0..5).map(|_| r.alnum(64)).collect();
    add(
        "pasted-key.txt",
        format!("-----BEGIN PRIVATE KEY-----\n{}\n", body.join("\n")),
        body,
    );
    let at = format!("{}@{}", r.alnum(8), r.alnum(6));
    add(
        "db.md",
        format!("DATABASE_URL=postgres://app:{at}@db.internal:5432/app\n"),
        vec![at],
    );
    let long = r.alnum(420);
    add("long.env.sample.txt", format!("API_KEY=\"{long}\"\n"), vec![long]);
    cases
}

fn assert_nothing_stored(org: &Path, values: &[String]) {
    for v in values {
        let stored = files_containing(&[org.join(".ctxplane")], v);
        assert!(stored.is_empty(), "{v:?} stored in {stored:?}");
    }
}

#[test]
fn every_form_that_used_to_be_missed_is_never_stored() {
    let tmp = example_org_today();
    let org = tmp.path();
    let dir = org.join("sources/platform-docs/runbooks/planted");
    std::fs::create_dir_all(&dir).unwrap();
    let cases = planted(&mut Fresh::new());
    for (name, text, _) in &cases {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = run(org, &["index", "--no-embed", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let docs = common::source_report(&v, "platform-docs");
    // The planted files were read and indexed, not refused.
    assert!(docs["indexed"].as_u64().unwrap() >= cases.len() as u64, "{docs}");
    assert!(
        docs["redactions"].as_u64().unwrap() >= cases.len() as u64,
        "{docs}"
    );
    for (name, _, values) in &cases {
        for v in values {
            let stored = files_containing(&[org.join(".ctxplane")], v);
            assert!(stored.is_empty(), "{name}: {v:?} stored in {stored:?}");
        }
        assert!(!out.contains(values[0].as_str()), "{name} in the report");
    }
}

#[test]
fn a_value_found_in_one_file_is_redacted_from_a_later_file_of_the_source() {
    let tmp = example_org_today();
    let org = tmp.path();
    let dir = org.join("sources/platform-docs/runbooks/known");
    std::fs::create_dir_all(&dir).unwrap();
    let pw = Fresh::new().password();
    std::fs::write(dir.join("a-config.yaml"), format!("db_password: \"{pw}\"\n")).unwrap();
    // No rule fires here: the value stands alone.
    std::fs::write(
        dir.join("b-notes.md"),
        format!("# Notes\n\nUse {pw} for the replica.\n"),
    )
    .unwrap();
    run(org, &["index", "--no-embed"]);
    assert_nothing_stored(org, &[pw]);
}

#[test]
fn kubeconfig_npmrc_and_credential_files_are_never_ingested() {
    let tmp = example_org_today();
    let org = tmp.path();
    let dir = org.join("sources/platform-docs/runbooks/creds");
    std::fs::create_dir_all(&dir).unwrap();
    let mut r = Fresh::new();
    let mut values = Vec::new();
    for name in [
        "kubeconfig",
        "kubeconfig.yaml",
        "corp.npmrc",
        ".netrc",
        ".pgpass",
        ".my.cnf",
        ".s3cfg",
    ] {
        // A marker no rule detects: only never-ingest keeps it out.
        let marker = format!("zqxplain{}", r.string(b"abcdefghijkmnopqrstuvwxyz", 12));
        std::fs::write(dir.join(name), format!("note {marker}\n")).unwrap();
        values.push(marker);
    }
    let v: serde_json::Value = serde_json::from_str(&run(org, &["index", "--no-embed", "--json"])).unwrap();
    let docs = common::source_report(&v, "platform-docs");
    assert_eq!(docs["denied"]["never_ingest"]["count"], 7, "{docs}");
    assert_nothing_stored(org, &values);
}

#[test]
fn a_directory_named_after_a_token_denies_its_files_without_naming_it() {
    let tmp = example_org_today();
    let org = tmp.path();
    let token = format!("glpat-{}", Fresh::new().alnum(20));
    let dir = org.join("sources/platform-docs/runbooks").join(&token);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("readme.md"), "# Readme\n\nzqxpathmarker\n").unwrap();
    let out = run(org, &["index", "--no-embed", "--json"]);
    assert!(!out.contains(&token), "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        common::source_report(&v, "platform-docs")["denied"]["secret_in_path"]["count"],
        1
    );
    assert_nothing_stored(org, &[token, "zqxpathmarker".into()]);
}

#[test]
fn built_in_allowlists_do_not_weaken_a_users_rules() {
    let tmp = example_org_today();
    let org = tmp.path();
    let rules = org.join("acme-rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nid = \"acme-key\"\nregex = '''ACME-[a-z0-9]{18}'''\nkeywords = [\"acme-\"]\n",
    )
    .unwrap();
    // "abc123" is a placeholder to the built-in global allowlist; the
    // user's rule has no allowlist, so the value is still a secret.
    let value = format!(
        "ACME-abc123{}",
        Fresh::new().string(b"abcdefghijkmnopqrstuvwxyz23456789", 12)
    );
    std::fs::write(
        org.join("sources/platform-docs/runbooks/acme.md"),
        format!("# Acme\n\nkey {value}\n"),
    )
    .unwrap();
    run(org, &["index", "--no-embed", "--rules", rules.to_str().unwrap()]);
    assert_nothing_stored(org, &[value]);
}
