//! Helpers shared by the binary's end-to-end tests.
#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_ctxplane");

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// A copy of the example organisation in a temporary directory.
pub fn example_org() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/acme"),
        tmp.path(),
    );
    tmp
}

pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).current_dir(dir).env("CTXPLANE_ACTOR", "test").env(
        "CTXPLANE_MODEL_DIR",
        Path::new(env!("CARGO_MANIFEST_DIR")).join("vendor/model"),
    );
    c
}

/// Runs the binary in `dir` and returns stdout; panics unless it succeeds.
pub fn run(dir: &Path, args: &[&str]) -> String {
    let out = command(dir, args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn run_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&run(dir, args)).unwrap()
}

/// One source's part of an `index --json` pass report.
pub fn source_report<'a>(v: &'a serde_json::Value, source: &str) -> &'a serde_json::Value {
    v["report"]["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["source"] == source)
        .unwrap_or_else(|| panic!("no {source} in {v}"))
}

/// Files under `dirs` whose bytes contain `needle`.
pub fn files_containing(dirs: &[PathBuf], needle: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for d in dirs {
        files_under(d, &mut files);
    }
    let mut found: Vec<PathBuf> = files
        .iter()
        .filter(|f| {
            std::fs::read(f)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
        })
        .cloned()
        .collect();
    // The lexical index compresses what it stores: read its documents back
    // (deleted ones not yet expunged included), `<index dir>#<chunk id>`.
    for meta in files.iter().filter(|f| f.ends_with("meta.json")) {
        let dir = meta.parent().unwrap();
        if !dir.join(".managed.json").exists() {
            continue;
        }
        let lexical = indexer::lexical::Lexical::open(dir).unwrap();
        for doc in lexical.stored_documents().unwrap() {
            if doc.contains(needle) {
                found.push(PathBuf::from(format!("{}#{}", dir.display(), doc.chunk_id)));
            }
        }
    }
    found
}

pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// Sets every `key = <date>` line in `file` to `days_ago` days before today,
/// so example files reviewed on a fixed date stay within their max age.
pub fn redate(file: &Path, key: &str, days_ago: i64) {
    let date = jiff::Zoned::now()
        .date()
        .checked_sub(jiff::Span::new().days(days_ago))
        .unwrap();
    let text = std::fs::read_to_string(file).unwrap();
    let prefix = format!("{key} = ");
    let mut out = String::new();
    let mut hit = false;
    for l in text.split_inclusive('\n') {
        if l.starts_with(&prefix) {
            out.push_str(&format!("{prefix}{date}\n"));
            hit = true;
        } else {
            out.push_str(l);
        }
    }
    assert!(hit, "no {key} in {}", file.display());
    std::fs::write(file, out).unwrap();
}

/// The example organisation with its fresh packages dated recently (the
/// planted stale ones keep their dates).
pub fn example_org_today() -> tempfile::TempDir {
    let tmp = example_org();
    let org = tmp.path();
    for src in ["payments-api", "ledger-worker"] {
        redate(
            &org.join("sources").join(src).join("context-package.toml"),
            "last_updated",
            2,
        );
    }
    for t in [
        "capture-idempotency",
        "refunds",
        "postgres-failover",
        "ledger-reconciliation",
    ] {
        redate(&org.join("topics").join(format!("{t}.md")), "reviewed_at", 2);
    }
    tmp
}

/// Findings of `ctxplane check --format json` as (file name, line, code, severity).
pub fn findings(v: &serde_json::Value) -> Vec<(String, u64, String, String)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                f["line"].as_u64().unwrap(),
                f["code"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
pub fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
    let (status, _, body) = http_with_head(addr, method, path, token, body);
    (status, body)
}

/// [`http`] with the response's status line and headers, lower-cased:
/// (status, head, body).
pub fn http_with_head(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `ctxplane serve` on a free loopback port; the child and its address.
pub fn start_server(dir: &Path, extra: &[&str]) -> (std::process::Child, String) {
    let (child, addr, _) = start_server_logged(dir, extra);
    (child, addr)
}

/// What a server started by [`start_server_logged`] wrote to stderr: the
/// lines so far, and the thread reading them, which ends (and can be
/// joined) once the server has exited.
pub struct ServerLog {
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub reader: std::thread::JoinHandle<()>,
}

impl ServerLog {
    /// Every line, once the server has exited.
    pub fn all(self) -> Vec<String> {
        self.reader.join().unwrap();
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

/// [`start_server`], keeping the server's stderr lines.
pub fn start_server_logged(dir: &Path, extra: &[&str]) -> (std::process::Child, String, ServerLog) {
    use std::io::BufRead;
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = command(dir, &args)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufReader::new(stderr).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = loop {
        let line = lines.next().expect("serve exited before listening").unwrap();
        let found = line
            .strip_prefix("ctxplane serving on http://")
            .map(|rest| rest.split_whitespace().next().unwrap().to_string());
        log.lock().unwrap().push(line);
        if let Some(addr) = found {
            break addr;
        }
    };
    // Keep draining stderr so the server never blocks on it.
    let kept = log.clone();
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            kept.lock().unwrap().push(line);
        }
    });
    (child, addr, ServerLog { lines: log, reader })
}

/// Every source named anywhere in a context answer: results and a
/// topic package's citations.
pub fn sources_in(a: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = a["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["provenance"]["source"].as_str().unwrap().to_string())
        .collect();
    for c in a["package"]["provenance"]["citations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(c["source"].as_str().unwrap().to_string());
    }
    out
}
