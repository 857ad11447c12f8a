//! What answer provenance costs a query: the same server, data and queries
//! with two builds of `ctxplane` (one without query-time policy and
//! snapshots, one with), alternated so drift in the machine hits both.
//!
//! The corpus is the whole Django 5.1.4 tree as one source (code, docs,
//! tests, about 50,000 chunks), indexed lexically once (both builds read
//! the same index), with the 14 Django topic packages as tier 1. A client
//! on loopback sends the 124 labelled Django queries round robin, one at a
//! time (1 client) and then from 8 clients, and reports p50/p99 latency
//! as it sees it. The new build's snapshot files give the bytes recorded
//! per answer.
//!
//! ```text
//! bash scripts/fetch-django.sh
//! cargo build --release --locked -p ctxplane -p benches --bin ctxplane --bin provenance_load
//! target/release/provenance_load --before PATH/TO/OLD/ctxplane [--seconds 20] [--rounds 2]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

type Res<T> = Result<T, String>;

const TOKEN: &str = "bench-provenance-agent-token";

fn main() {
    if let Err(e) = run() {
        eprintln!("provenance_load: {e}");
        std::process::exit(1);
    }
}

/// Latencies (ms) of `clients` clients for `secs` seconds, and errors.
fn phase(addr: &str, queries: &Arc<Vec<String>>, clients: usize, secs: u64) -> Res<(Vec<f64>, u64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (addr, stop, queries) = (addr.to_string(), stop.clone(), queries.clone());
            std::thread::spawn(move || {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, c * 7);
                while !stop.load(Ordering::Relaxed) {
                    let body = serde_json::json!({"query": queries[i % queries.len()], "mode": "lexical", "max_tokens": 2000})
                        .to_string();
                    i += 1;
                    let t = Instant::now();
                    match benches::post_context(&addr, TOKEN, &body) {
                        Ok(200) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        _ => errors += 1,
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut lat = Vec::new();
    let mut errors = 0;
    for h in handles {
        let (l, e) = h.join().map_err(|_| "client panicked")?;
        lat.extend(l);
        errors += e;
    }
    lat.sort_by(f64::total_cmp);
    Ok((lat, errors))
}

struct Server {
    child: std::process::Child,
    addr: String,
}

fn serve(bin: &Path, work: &Path, topics: &Path) -> Res<Server> {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--no-watch", "--no-embed"])
        .current_dir(work)
        .env("CTXPLANE_REGISTRY", work.join("registry.toml"))
        .env("CTXPLANE_DATA_DIR", work.join("data"))
        .env("CTXPLANE_TOPICS_DIR", topics)
        .env("CTXPLANE_ACTOR", "bench");
    let (child, addr, lines) = benches::start_serve(cmd)?;
    std::thread::spawn(move || for _ in lines {});
    Ok(Server { child, addr })
}

/// Snapshot records and their bytes under the data dir.
fn snapshot_usage(data: &Path) -> (u64, u64) {
    let mut n = 0;
    let mut bytes = 0;
    if let Ok(entries) = std::fs::read_dir(data.join("snapshots")) {
        for e in entries.flatten() {
            if let Ok(text) = std::fs::read(e.path()) {
                n += text.iter().filter(|b| **b == b'\n').count() as u64;
                bytes += text.len() as u64;
            }
        }
    }
    (n, bytes)
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| benches::arg(&args, name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let django = arg("--django").map_or_else(|| root.join("vendor/bench/Django-5.1.4"), PathBuf::from);
    let secs: u64 = arg("--seconds").map_or(Ok(20), |s| s.parse().map_err(|_| "--seconds needs a number"))?;
    let rounds: usize =
        arg("--rounds").map_or(Ok(2), |s| s.parse().map_err(|_| "--rounds needs a number"))?;
    let after = arg("--bin").map_or_else(|| root.join("target/release/ctxplane"), PathBuf::from);
    let before = PathBuf::from(
        arg("--before").ok_or("--before PATH (a ctxplane built before the change) is required")?,
    );
    for b in [&before, &after] {
        if !b.exists() {
            return Err(format!("no binary at {}", b.display()));
        }
    }
    if !django.join("django").is_dir() {
        return Err(format!(
            "no Django tree at {}; run scripts/fetch-django.sh",
            django.display()
        ));
    }
    let work = root.join("target/eval-data/provenance");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let topics = root.join("benches/data/topics-django");
    let hash = blake3::hash(TOKEN.as_bytes()).to_hex().to_string();
    std::fs::write(
        work.join("registry.toml"),
        format!(
            "version = 1\n\n[never_ingest]\npatterns = [\"**/*.po\", \"**/*.mo\"]\n\n[[sources]]\nid = \"django\"\nkind = \"dir\"\nlocation = \"{}\"\nowner = \"django\"\ntier = 1\nstatus = \"approved\"\n\n[[principals]]\nname = \"load-agent\"\nrole = \"agent\"\ntoken_hash = \"{hash}\"\ntier_ceiling = 1\nsources = [\"*\"]\n",
            django.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let t = Instant::now();
    let out = Command::new(&after)
        .args(["index", "--no-embed", "--json"])
        .current_dir(&work)
        .env("CTXPLANE_REGISTRY", work.join("registry.toml"))
        .env("CTXPLANE_DATA_DIR", work.join("data"))
        .env("CTXPLANE_ACTOR", "bench")
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("index failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    let chunks = report["report"]["total_chunks"].as_u64().unwrap_or(0);
    println!(
        "Django 5.1.4, whole tree: {chunks} chunks (lexical), indexed in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let queries: Vec<String> = std::fs::read_to_string(topics.join("queries.jsonl"))
        .map_err(|e| e.to_string())?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["query"].as_str().map(str::to_string))
        .collect();
    let queries = Arc::new(queries);
    println!(
        "{} queries round robin, lexical + topic packages, {secs} s per phase, {rounds} round(s)\n",
        queries.len()
    );
    println!(
        "{:>7}  {:>7}  {:>8}  {:>7}  {:>8}  {:>6}",
        "build", "clients", "queries", "p50 ms", "p99 ms", "errors"
    );
    let mut totals: Vec<(String, usize, Vec<f64>)> = Vec::new();
    let mut recorded = (0u64, 0u64);
    for _ in 0..rounds {
        for (name, bin) in [("before", &before), ("after", &after)] {
            let mut server = serve(bin, &work, &topics)?;
            for q in queries.iter().take(30) {
                benches::post_context(
                    &server.addr,
                    TOKEN,
                    &serde_json::json!({"query": q, "mode": "lexical"}).to_string(),
                )?;
            }
            let snap_before = snapshot_usage(&work.join("data"));
            for clients in [1usize, 8] {
                let (lat, errors) = phase(&server.addr, &queries, clients, secs)?;
                println!(
                    "{name:>7}  {clients:>7}  {:>8}  {:>7.2}  {:>8.2}  {errors:>6}",
                    lat.len(),
                    benches::percentile(&lat, 50.0),
                    benches::percentile(&lat, 99.0)
                );
                match totals.iter_mut().find(|t| t.0 == name && t.1 == clients) {
                    Some(t) => t.2.extend(lat),
                    None => totals.push((name.to_string(), clients, lat)),
                }
            }
            if name == "after" {
                let s = snapshot_usage(&work.join("data"));
                recorded.0 += s.0 - snap_before.0;
                recorded.1 += s.1 - snap_before.1;
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
        }
    }
    println!("\nall rounds:");
    for clients in [1usize, 8] {
        let mut get = |n: &str| {
            totals
                .iter_mut()
                .find(|t| t.0 == n && t.1 == clients)
                .map(|t| {
                    t.2.sort_by(f64::total_cmp);
                    (
                        benches::percentile(&t.2, 50.0),
                        benches::percentile(&t.2, 99.0),
                        t.2.len(),
                    )
                })
                .unwrap_or_default()
        };
        let (b, a) = (get("before"), get("after"));
        println!(
            "{clients} client(s): p50 {:.2} -> {:.2} ms ({:+.2}), p99 {:.2} -> {:.2} ms ({:+.2}); {} vs {} answers",
            b.0,
            a.0,
            a.0 - b.0,
            b.1,
            a.1,
            a.1 - b.1,
            b.2,
            a.2
        );
    }
    if recorded.0 > 0 {
        println!(
            "snapshots: {} recorded, {} bytes, {:.0} bytes per answer",
            recorded.0,
            recorded.1,
            recorded.1 as f64 / recorded.0 as f64
        );
    }
    Ok(())
}
