//! Load on `ctxplane serve` from a second process on loopback.
//!
//! The server (the release binary) serves Django 5.1.4's `docs/topics` and
//! `docs/howto` (a copy, ~1,900 chunks) with the 14 topic packages of
//! `benches/data/topics-django`; clients send the 124 labelled queries of
//! that set round robin (so a mix of tier-1 and tier-2 answers), each
//! client one request at a time on its own connection. For 1, 8 and 32
//! clients, without and then with a concurrent re-index (five docs edited
//! every second, which the server's watcher re-indexes and re-embeds), it
//! reports sustained queries/s, p50/p99 latency as the client sees it,
//! errors, and the server's resident memory (max sampled).
//!
//! ```text
//! bash scripts/bench-serve.sh        # fetches Django, builds, runs this
//! target/release/serve_load --django DIR [--seconds 15] [--soak 0] [--bin PATH] [--fresh]
//!                            [--mode lexical|hybrid|dense] [--soak-clients 8]
//! ```
//!
//! The server answers before its vectors are complete: the first line
//! gives the seconds to listening, to the first answer and to complete
//! vectors (`--fresh` starts from an empty data dir, embedding cache
//! included); the phases run once the vectors are complete.
//!
//! `--soak SECS` adds a final phase (`--soak-clients N`, default 8, with
//! the re-index running: 5 edits a second) that prints the server's RSS
//! over time, to show memory levels off.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

fn main() {
    if let Err(e) = run() {
        eprintln!("serve_load: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

const TOKEN: &str = "bench-load-agent-token";

/// One line of `/proc/PID/status` in MB (0 when the process is gone).
fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// Resident memory split into anonymous (heap, the process's own) and
/// file-backed pages (mapped index and vector files, which the kernel can
/// drop under pressure): a climbing total is only a leak when the
/// anonymous part climbs.
#[derive(Clone, Copy)]
struct Rss {
    total: f64,
    anon: f64,
    file: f64,
}

fn rss_split(pid: u32) -> Rss {
    Rss {
        total: rss_mb(pid),
        anon: status_mb(pid, "RssAnon:"),
        file: status_mb(pid, "RssFile:"),
    }
}

struct Phase {
    qps: f64,
    p50: f64,
    p99: f64,
    requests: usize,
    errors: u64,
    rss_max: f64,
    /// (seconds into the phase, RSS), sampled every 250 ms.
    rss: Vec<(f64, Rss)>,
    edits: u64,
}

fn phase(
    addr: &str,
    pid: u32,
    mode: Option<&str>,
    queries: &Arc<Vec<String>>,
    clients: usize,
    secs: u64,
    docs: Option<&Path>,
) -> Res<Phase> {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let edits = Arc::new(AtomicU64::new(0));
    let editor = docs.map(|dir| {
        let dir = dir.to_path_buf();
        let stop = stop.clone();
        let edits = edits.clone();
        std::thread::spawn(move || {
            let files: Vec<PathBuf> = [
                "cache.txt",
                "signals.txt",
                "email.txt",
                "migrations.txt",
                "pagination.txt",
            ]
            .iter()
            .map(|f| dir.join("topics").join(f))
            .collect();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for f in &files {
                    if let Ok(mut h) = std::fs::OpenOptions::new().append(true).open(f) {
                        let _ = writeln!(h, "\nLoad test edit {n}: the quokka{n} setting.");
                        n += 1;
                        edits.fetch_add(1, Ordering::Relaxed);
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    });
    let started = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.to_string();
            let mode = mode.map(str::to_string);
            let stop = stop.clone();
            let errors = errors.clone();
            let queries = queries.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut i = c * 7;
                while !stop.load(Ordering::Relaxed) {
                    let q = &queries[i % queries.len()];
                    i += 1;
                    let mut body = serde_json::json!({"query": q, "max_tokens": 2000});
                    if let Some(m) = &mode {
                        body["mode"] = serde_json::json!(m);
                    }
                    let body = body.to_string();
                    let t = Instant::now();
                    match benches::post_context(&addr, TOKEN, &body) {
                        Ok(200) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        _ => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        rss.push((started.elapsed().as_secs_f64(), rss_split(pid)));
        std::thread::sleep(Duration::from_millis(250));
    }
    let rss_max = rss.iter().map(|r| r.1.total).fold(0.0, f64::max);
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<f64> = Vec::new();
    for h in handles {
        lat.extend(h.join().map_err(|_| "client panicked")?);
    }
    if let Some(e) = editor {
        let _ = e.join();
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Phase {
        qps: lat.len() as f64 / elapsed,
        p50: benches::percentile(&lat, 50.0),
        p99: benches::percentile(&lat, 99.0),
        requests: lat.len(),
        errors: errors.load(Ordering::Relaxed),
        rss_max,
        rss,
        edits: edits.load(Ordering::Relaxed),
    })
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| benches::arg(&args, name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let django = arg("--django").map_or_else(|| root.join("vendor/bench/Django-5.1.4"), PathBuf::from);
    let secs: u64 = arg("--seconds").map_or(Ok(15), |s| s.parse().map_err(|_| "--seconds needs a number"))?;
    let soak: u64 = arg("--soak").map_or(Ok(0), |s| s.parse().map_err(|_| "--soak needs a number"))?;
    // `--mode lexical|hybrid|dense`: the search mode every query asks for
    // (default: the server's default, hybrid).
    let mode = arg("--mode");
    if let Some(m) = &mode
        && !["lexical", "hybrid", "dense"].contains(&m.as_str())
    {
        return Err(format!("--mode must be lexical, hybrid or dense, not {m}"));
    }
    let mode = mode.as_deref();
    let soak_clients = benches::arg_count(&args, "--soak-clients", 8)?;
    if !django.join("docs/topics").is_dir() {
        return Err(format!(
            "no Django docs at {}; run scripts/bench-serve.sh",
            django.display()
        ));
    }
    // `--bin` compares another build (e.g. before and after a change).
    let bin = arg("--bin").map_or_else(|| root.join("target/release/ctxplane"), PathBuf::from);
    if !bin.exists() {
        return Err(format!(
            "no binary at {}: cargo build --release -p ctxplane",
            bin.display()
        ));
    }
    let work = root.join("target/eval-data/serve");
    // `--fresh`: no index, vectors or embedding cache from an earlier run,
    // to time a first start (listening, first answer, vectors complete).
    if args.iter().any(|a| a == "--fresh") {
        let _ = std::fs::remove_dir_all(work.join("data"));
    }
    let docs = work.join("docs");
    // A fresh copy of the docs each run (the edits change it); the data dir
    // (index, vectors, embedding cache) is kept, so reruns do not re-embed.
    let _ = std::fs::remove_dir_all(&docs);
    for dir in ["topics", "howto"] {
        benches::copy_tree(&django.join("docs").join(dir), &docs.join(dir)).map_err(|e| e.to_string())?;
    }
    let topics = root.join("benches/data/topics-django");
    let hash = blake3::hash(TOKEN.as_bytes()).to_hex().to_string();
    // The packages cite `django:docs/...`: the source root is the parent of docs/.
    std::fs::write(
        work.join("registry.toml"),
        format!(
            "version = 1\n\n[[sources]]\nid = \"django\"\nkind = \"dir\"\nlocation = \".\"\nowner = \"django-docs\"\ntier = 1\nstatus = \"approved\"\ninclude = [\"docs/topics/**\", \"docs/howto/**\"]\n\n[[principals]]\nname = \"load-agent\"\nrole = \"agent\"\ntoken_hash = \"{hash}\"\ntier_ceiling = 1\nsources = [\"*\"]\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let queries: Vec<String> = std::fs::read_to_string(topics.join("queries.jsonl"))
        .map_err(|e| e.to_string())?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["query"].as_str().map(str::to_string))
        .collect();
    let queries = Arc::new(queries);

    let t = Instant::now();
    let mut cmd = Command::new(&bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(&work)
        .env("CTXPLANE_REGISTRY", work.join("registry.toml"))
        .env("CTXPLANE_DATA_DIR", work.join("data"))
        .env("CTXPLANE_TOPICS_DIR", &topics)
        .env("CTXPLANE_ACTOR", "bench");
    let (mut child, addr, lines) = benches::start_serve(cmd)?;
    // The server's log (one line per indexing pass) is kept for reading.
    let log_path = work.join("server.log");
    let mut log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
        }
    });
    let pid = child.id();
    let listening = t.elapsed().as_secs_f64();
    benches::post_context(
        &addr,
        TOKEN,
        &serde_json::json!({"query": queries[0]}).to_string(),
    )?;
    let first = t.elapsed().as_secs_f64();
    // The server answers before its vectors are complete; the phases
    // measure it with every vector in place.
    loop {
        let ready = benches::http(&addr, "GET", "/readyz", None, None)?;
        if ready.contains("\"vectors\":\"complete\"") || ready.contains("\"vectors\":\"off\"") {
            break;
        }
        if !ready.contains("\"vectors\"") {
            break; // a build from before vectors were filled in behind
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    println!(
        "server listening after {listening:.1} s, first answer after {first:.1} s, vectors complete after {:.1} s; {} queries in rotation, mode {}; {secs} s per phase",
        t.elapsed().as_secs_f64(),
        queries.len(),
        mode.unwrap_or("default (hybrid)")
    );
    // Warm up: first queries embed the packages' texts.
    for q in queries.iter().take(20) {
        benches::post_context(&addr, TOKEN, &serde_json::json!({"query": q}).to_string())?;
    }
    println!(
        "\n{:>7}  {:>9}  {:>8}  {:>7}  {:>7}  {:>8}  {:>6}  {:>8}  {:>5}",
        "clients", "re-index", "queries", "q/s", "p50 ms", "p99 ms", "errors", "RSS MB", "edits"
    );
    let mut result = Ok(());
    for reindex in [false, true] {
        for clients in [1usize, 8, 32] {
            let docs_dir = reindex.then_some(docs.as_path());
            match phase(&addr, pid, mode, &queries, clients, secs, docs_dir) {
                Ok(p) => println!(
                    "{:>7}  {:>9}  {:>8}  {:>7.1}  {:>7.1}  {:>8.1}  {:>6}  {:>8.0}  {:>5}",
                    clients,
                    if reindex { "yes" } else { "no" },
                    p.requests,
                    p.qps,
                    p.p50,
                    p.p99,
                    p.errors,
                    p.rss_max,
                    p.edits
                ),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    if result.is_ok() && soak > 0 {
        // Memory under a long re-index: RSS should level off, not climb
        // with every re-embedded edit.
        match phase(
            &addr,
            pid,
            mode,
            &queries,
            soak_clients,
            soak,
            Some(docs.as_path()),
        ) {
            Ok(p) => {
                println!(
                    "\nsoak: {soak_clients} clients with re-index for {soak} s: {} queries, {:.1} q/s, p50 {:.1} ms, p99 {:.1} ms, {} errors, {} edits",
                    p.requests, p.qps, p.p50, p.p99, p.errors, p.edits
                );
                let mut line = String::from("RSS MB over time (total = anonymous + file-backed):");
                let step = (soak as f64 / 8.0).max(1.0);
                let mut next = 0.0;
                let shown = |t: f64, r: &Rss| format!(" {t:.0}s={:.0}={:.0}+{:.0}", r.total, r.anon, r.file);
                for (t, r) in &p.rss {
                    if *t >= next {
                        line.push_str(&shown(*t, r));
                        next += step;
                    }
                }
                if let Some((t, r)) = p.rss.last() {
                    line.push_str(&shown(*t, r));
                }
                println!("{line}");
                // The growth rate over the second half: what is still
                // climbing once warm-up is over.
                let half: Vec<&(f64, Rss)> = p.rss.iter().filter(|(t, _)| *t >= soak as f64 / 2.0).collect();
                if let (Some(a), Some(b)) = (half.first(), half.last())
                    && b.0 > a.0
                {
                    let per_min = |f: fn(&Rss) -> f64| (f(&b.1) - f(&a.1)) / (b.0 - a.0) * 60.0;
                    println!(
                        "second half growth: total {:+.2} MB/min, anonymous {:+.2} MB/min, file-backed {:+.2} MB/min",
                        per_min(|r| r.total),
                        per_min(|r| r.anon),
                        per_min(|r| r.file)
                    );
                }
            }
            Err(e) => result = Err(e),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    println!("server log: {}", log_path.display());
    result
}
