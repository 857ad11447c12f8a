//! Shared fixtures for ctxplane's benchmarks.

pub mod ranking;
pub mod secrets_eval;

use std::path::{Path, PathBuf};

use registry::Registry;

/// A registry shaped like a mid-sized organisation: 50 sources with include,
/// exclude and never-ingest rules, built-in rules on, a few exceptions.
pub fn org_registry() -> Registry {
    let mut text = String::from("[never_ingest]\npatterns = [\"**/customer-exports/**\", \"*.sql.gz\"]\n");
    for i in 0..50 {
        text.push_str(&format!(
            "[[sources]]\nid = \"svc-{i}\"\nkind = \"git\"\nlocation = \"repos/svc-{i}\"\nowner = \"team-{}\"\ntier = {}\nstatus = \"approved\"\ninclude = [\"src/**\", \"docs/**\", \"*.md\"]\nexclude = [\"**/vendor/**\", \"**/*.snap\"]\nnever_ingest = [\"fixtures/live/\"]\n",
            i % 7,
            1 + i % 4
        ));
    }
    for i in 0..10 {
        text.push_str(&format!(
            "[[exceptions]]\nid = \"x{i}\"\nsource = \"svc-{i}\"\npath = \"docs/.env.example\"\npermits = [\"never_ingest\"]\napprover = \"a\"\nreason = \"r\"\ngranted_at = 2026-01-01T00:00:00Z\nexpires_at = 2026-12-01T00:00:00Z\n"
        ));
    }
    Registry::parse(&text, Path::new("/")).expect("benchmark registry is valid")
}

/// Realistic relative paths: mostly source files, some docs, some
/// never-ingest hits.
pub fn paths(n: usize) -> Vec<String> {
    let shapes = [
        "src/module_{i}/handler.rs",
        "src/api/v1/routes_{i}.py",
        "docs/guide/chapter-{i}.md",
        "docs/.env.example",
        "config/.env.{i}",
        "src/vendor/lib_{i}/mod.go",
        "deploy/certs/server-{i}.pem",
        "README.md",
    ];
    (0..n)
        .map(|i| shapes[i % shapes.len()].replace("{i}", &i.to_string()))
        .collect()
}

/// Copies the directory tree `from` into `to` (regular files only; symlinks
/// are not followed) and returns the paths of the copies.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<Vec<PathBuf>> {
    fn walk(from: &Path, to: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            let ty = e.file_type()?;
            let dest = to.join(e.file_name());
            if ty.is_dir() {
                walk(&e.path(), &dest, files)?;
            } else if ty.is_file() {
                std::fs::copy(e.path(), &dest)?;
                files.push(dest);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(from, to, &mut files)?;
    Ok(files)
}

/// The value after `name` (`--seconds 10`) on a command line.
pub fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

/// `--name N` as a count of at least 1, or `default` when absent.
pub fn arg_count(args: &[String], name: &str, default: usize) -> Result<usize, String> {
    arg(args, name).map_or(Ok(default), |s| {
        s.parse()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{name} needs a number from 1"))
    })
}

/// The rest of a server's stderr, after its listening line.
pub type ServerLog = std::io::Lines<std::io::BufReader<std::process::ChildStderr>>;

/// Starts `ctxplane serve` as `cmd` describes (stderr is taken over) and
/// waits for it to listen: the child, its address and the rest of its log.
pub fn start_serve(
    mut cmd: std::process::Command,
) -> Result<(std::process::Child, String, ServerLog), String> {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        let line = lines
            .next()
            .ok_or("the server exited before listening")?
            .map_err(|e| e.to_string())?;
        if let Some(rest) = line.strip_prefix("ctxplane serving on http://") {
            let addr = rest.split_whitespace().next().unwrap_or_default().to_string();
            return Ok((child, addr, lines));
        }
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`): the
/// whole response.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body.unwrap_or(""));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `POST /v1/context` with `body` as `token`: the status code.
pub fn post_context(addr: &str, token: &str, body: &str) -> Result<u16, String> {
    http(addr, "POST", "/v1/context", Some(token), Some(body))?
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| "no status line".to_string())
}

/// The `p`th percentile of sorted values (0 when there are none).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// CPU time (user + system) in milliseconds from `/proc/self/stat`: this
/// process's own, or with `children` that of the children it has waited
/// for. Clock ticks are 10 ms.
pub fn cpu_ms(children: bool) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ")".
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime and cstime are fields 14 to 17 (1-based), 11 to
    // 14 after ")".
    let at = if children { 13 } else { 11 };
    (ticks(at) + ticks(at + 1)) * 10.0
}

/// The embedding model a benchmark loads: `CTXPLANE_MODEL_DIR` if set (to
/// measure another model), else where the product looks by default.
pub fn model_dir() -> Result<std::path::PathBuf, String> {
    let explicit = std::env::var_os("CTXPLANE_MODEL_DIR").map(std::path::PathBuf::from);
    indexer::embed::find_model_dir(explicit.as_deref()).map_err(|e| e.to_string())
}
