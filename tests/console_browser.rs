//! The steward console in a real browser: Debian's Chromium driven by
//! playwright-core (both installed by `scripts/setup-peers.sh`, run by the
//! test command), against `ctxplane serve` on the example organisation.
//! The script (`tests/peers/console_browser.cjs`) signs in by keyboard,
//! approves, revokes (purge proof), grants an exception, adds a principal,
//! stops and resumes, verifies the audit chain, watches a change arrive
//! without a reload, forges a cross-site post, plants markup in a source
//! description, and checks labels, cookies, storage, CSP and phone width.
//! Screenshots of every page land in `target/tmp/console-browser/`.
//! When the browser is absent the test says so and skips, unless
//! CTXPLANE_REQUIRE_PEERS=1 (the test command sets it), when that fails.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{example_org_today, http, run, start_server};

fn chromium() -> Option<PathBuf> {
    std::env::var_os("CTXPLANE_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.exists())
        })
}

fn peers() -> Option<(PathBuf, PathBuf)> {
    let pw = Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/peers/npm/node_modules/playwright-core");
    let node_ok = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    match (chromium(), pw.join("package.json").exists() && node_ok) {
        (Some(c), true) => Some((pw, c)),
        (c, pw_ok) => {
            let why = format!(
                "browser peers missing (chromium: {}, node + playwright-core: {pw_ok}); run scripts/setup-peers.sh",
                c.is_some()
            );
            if std::env::var("CTXPLANE_REQUIRE_PEERS").is_ok_and(|v| v == "1") {
                panic!("{why}");
            }
            eprintln!("skipping: {why}");
            None
        }
    }
}

#[test]
fn the_steward_console_in_a_real_browser() {
    let Some((pw, chromium)) = peers() else { return };
    let tmp = example_org_today();
    let org = tmp.path();
    run(org, &["index", "--no-embed"]);
    let (mut server, addr) = start_server(org, &["--no-embed"]);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-browser");
    let _ = std::fs::remove_dir_all(&out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/console_browser.cjs");
    let result = Command::new("node")
        .arg(&script)
        .arg(&pw)
        .arg(&chromium)
        .arg(format!("http://{addr}"))
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout).to_string();
    let stderr = String::from_utf8_lossy(&result.stderr);

    // What the browser did is in the audit log too, through the same door.
    let (status, verify) = http(&addr, "GET", "/v1/audit/verify", Some("demo-steward-token"), None);
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        result.status.success() && stdout.contains(" passed, 0 failed"),
        "the browser script failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(status, 200, "{verify}");
    let v: serde_json::Value = serde_json::from_str(&verify).unwrap();
    assert_eq!(v["intact"], true, "{verify}");
    let log = std::fs::read_to_string(org.join(".ctxplane/audit/log.jsonl")).unwrap();
    for action in [
        "\"console.sign_in\"",
        "\"console.sign_in_refused\"",
        "\"source.approve\"",
        "\"source.revoke\"",
        "\"source.purge_verified\"",
        "\"exception.grant\"",
        "\"principal.add\"",
        "\"service.stop\"",
        "\"service.resume\"",
        "\"policy.decide\"",
        "\"console.sign_out\"",
    ] {
        assert!(log.contains(action), "{action} is not in the audit log");
    }
    assert!(!log.contains("forged"), "the forged stop reached the plane");
    for shot in [
        "02-sources",
        "04-revoke-purge-proof",
        "08-stopped",
        "10-sources-phone",
    ] {
        let f = out.join(format!("{shot}.png"));
        assert!(
            f.metadata().is_ok_and(|m| m.len() > 1000),
            "{} missing",
            f.display()
        );
    }
}
