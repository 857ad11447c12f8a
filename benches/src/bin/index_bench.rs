//! Indexing throughput and freshness on a real repository, through the
//! release binary, lexical only (`--no-embed`: embedding has its own
//! benchmarks, `embed_bench` and `retrieval_eval`):
//!
//! * full index: files/s and MB/s of the first pass;
//! * cold lexical index on one thread and on the default threads;
//! * no-op re-index: a pass over unchanged input (median of 5);
//! * edit -> searchable under `index --watch`: append a unique word to a
//!   file, then query the index (reloading it, as a server would) until the
//!   word is found; p50/p99 over N edits.
//!
//! The repository is copied to a temporary directory first, so it is never
//! modified. Usage (see scripts/bench-index.sh, which fetches Django 5.1.4
//! from PyPI):
//!
//! ```text
//! cargo build --release -p ctxplane -p benches
//! target/release/index_bench --repo PATH [--edits 50]
//! ```

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use indexer::lexical::{Filter, Lexical};

fn main() {
    if let Err(e) = run() {
        eprintln!("index_bench: {e}");
        std::process::exit(1);
    }
}

struct Args {
    repo: PathBuf,
    edits: usize,
}

fn args() -> Result<Args, String> {
    let mut repo = std::env::var_os("CTXPLANE_BENCH_REPO").map(PathBuf::from);
    let mut edits = 50;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--repo" => repo = it.next().map(PathBuf::from),
            "--edits" => {
                edits = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--edits needs a number")?
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: index_bench --repo PATH [--edits N]"
                ));
            }
        }
    }
    let repo = repo.ok_or("--repo PATH (or CTXPLANE_BENCH_REPO) is required")?;
    Ok(Args { repo, edits })
}

fn binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin = exe.with_file_name("ctxplane");
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found; build it first: cargo build --release -p ctxplane",
            bin.display()
        ))
    }
}

fn ctxplane(bin: &Path, work: &Path, args: &[&str]) -> Result<(serde_json::Value, Duration), String> {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(work)
        .env("CTXPLANE_ACTOR", "bench")
        .output()
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    if !out.status.success() {
        return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let v = serde_json::from_slice(&out.stdout).map_err(|e| format!("{args:?}: {e}"))?;
    Ok((v, wall))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

/// A word made of letters only, so every tokenizer keeps it whole.
fn token(i: usize, salt: u64) -> String {
    let mut n = (i as u64) * 7919 + salt;
    let mut s = String::from("zqbench");
    for _ in 0..8 {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    s
}

fn run() -> Result<(), String> {
    let args = args()?;
    let bin = binary()?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let work = tmp.path();
    let repo = work.join("repo");
    let files =
        benches::copy_tree(&args.repo, &repo).map_err(|e| format!("copying {}: {e}", args.repo.display()))?;
    let bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    std::fs::write(
        work.join("registry.toml"),
        "version = 1\n\n[[sources]]\nid = \"bench-repo\"\nkind = \"dir\"\nlocation = \"repo\"\nowner = \"bench\"\ntier = 2\nstatus = \"approved\"\n",
    )
    .map_err(|e| e.to_string())?;
    // Fake credentials planted in real files: none may reach the data dir.
    let planted = [
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzq8Rb3kT2m",
        ),
        ("GITHUB_TOKEN", "ghp_R8wd8k4aXcaT4fNP0UcnZwJUVFk6LO0pINUx"),
        ("STRIPE_KEY", "sk_live_51HqLyjWDarjtT1zdp7dcQw3rT9"),
        ("SLACK_BOT", "xoxb-2718281828-3141592653-Zq8RbkT2mWv7LpXy4NcJh5Ds"),
        ("DATABASE_PASSWORD", "Pr0d-Passw0rd-9d8f-Kq2x"),
    ];
    let py: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "py"))
        .collect();
    if py.len() < planted.len() {
        return Err("the repository needs Python files to plant credentials in".into());
    }
    for (i, (name, value)) in planted.iter().enumerate() {
        let f = py[(i * 7_919) % py.len()];
        let mut text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        text.push_str(&format!("\n{name} = \"{value}\"\n"));
        std::fs::write(f, text).map_err(|e| e.to_string())?;
    }
    println!(
        "repository: {} ({} files, {:.1} MB on disk)",
        args.repo.display(),
        files.len(),
        bytes as f64 / 1e6
    );

    // Full index.
    let (full, wall) = ctxplane(&bin, work, &["index", "--no-embed", "--json"])?;
    let secs = full["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0;
    let sources = full["report"]["sources"].as_array().cloned().unwrap_or_default();
    let s = sources.first().ok_or("no source in the report")?;
    let seen = s["files_seen"].as_f64().unwrap_or(0.0);
    let read = s["bytes_read"].as_f64().unwrap_or(0.0);
    println!(
        "full index: {} files seen, {} indexed, {} chunks, {} skipped, {} denied in {:.2} s (process {:.2} s)",
        seen,
        s["indexed"],
        full["report"]["total_chunks"],
        s["skipped"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|t| t["count"].as_u64()).sum::<u64>()),
        s["denied"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|t| t["count"].as_u64()).sum::<u64>()),
        secs,
        wall.as_secs_f64()
    );
    println!(
        "  throughput: {:.0} files/s, {:.2} MB/s of text read",
        seen / secs,
        read / 1e6 / secs
    );

    let mut leaked = Vec::new();
    let stored =
        benches::copy_tree(&work.join(".ctxplane"), &work.join("data-copy")).map_err(|e| e.to_string())?;
    for f in &stored {
        let bytes = std::fs::read(f).map_err(|e| e.to_string())?;
        for (_, value) in &planted {
            if bytes.windows(value.len()).any(|w| w == value.as_bytes()) {
                leaked.push(format!("{value} in {}", f.display()));
            }
        }
    }
    std::fs::remove_dir_all(work.join("data-copy")).map_err(|e| e.to_string())?;
    // The lexical index compresses what it stores: read the documents back.
    let stored_docs = Lexical::open(&work.join(".ctxplane/index/lexical"))
        .and_then(|l| l.stored_documents())
        .map_err(|e| e.to_string())?;
    for d in &stored_docs {
        for (_, value) in &planted {
            if d.contains(value) {
                leaked.push(format!("{value} in stored chunk {}", d.chunk_id));
            }
        }
    }
    println!(
        "  {} secrets redacted; planted credentials found in the {} files under the data dir: {}",
        s["redactions"],
        stored.len(),
        leaked.len()
    );
    if !leaked.is_empty() {
        return Err(format!("secrets reached the data dir: {leaked:?}"));
    }

    // Cold lexical index (no embedding) into fresh data dirs, one thread
    // against the default (one per core), in this run.
    let mut cold = Vec::new();
    for threads in [1, indexer::PassOptions::default_threads()] {
        let dir = work.join(format!("cold-{threads}"));
        let start = Instant::now();
        let out = Command::new(&bin)
            .arg("--data-dir")
            .arg(&dir)
            .args(["index", "--no-embed", "--json"])
            .current_dir(work)
            .env("CTXPLANE_ACTOR", "bench")
            .env("CTXPLANE_INDEX_THREADS", threads.to_string())
            .output()
            .map_err(|e| e.to_string())?;
        let wall = start.elapsed().as_secs_f64();
        if !out.status.success() {
            return Err(format!("cold index: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        let pass = v["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0;
        println!(
            "cold lexical index, {threads} thread(s): pass {pass:.2} s, process {wall:.2} s, {} chunks",
            v["report"]["total_chunks"]
        );
        cold.push(pass);
        std::fs::remove_dir_all(&dir).map_err(|e| e.to_string())?;
    }
    println!("  parallel pass speed-up: {:.2}x", cold[0] / cold[1].max(1e-9));

    // No-op re-index.
    let mut noop = Vec::new();
    let mut noop_wall = Vec::new();
    for _ in 0..5 {
        let (v, wall) = ctxplane(&bin, work, &["index", "--no-embed", "--json"])?;
        if v["report"]["committed"] != false {
            return Err("a no-op pass committed changes".into());
        }
        noop.push(v["elapsed_ms"].as_f64().unwrap_or(0.0));
        noop_wall.push(wall.as_secs_f64() * 1000.0);
    }
    noop.sort_by(f64::total_cmp);
    noop_wall.sort_by(f64::total_cmp);
    println!(
        "no-op re-index of {} files: pass {:.0} ms median (process incl. start-up {:.0} ms); {:.0} ms per 1,000 files",
        seen,
        noop[2],
        noop_wall[2],
        noop[2] * 1000.0 / seen
    );

    // Edit -> searchable under --watch.
    let mut child = Command::new(&bin)
        .args(["index", "--watch", "--no-embed", "--json"])
        .current_dir(work)
        .env("CTXPLANE_ACTOR", "bench")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = std::io::BufReader::new(stdout).lines();
    // The watcher's first pass (a no-op) is done when it prints.
    lines.next();
    std::thread::spawn(move || for _ in lines {});
    let lexical = Lexical::open(&work.join(".ctxplane/index/lexical")).map_err(|e| e.to_string())?;
    let filter = Filter {
        sources: vec!["bench-repo".into()],
        max_tier: 4,
    };
    let targets: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "py" || e == "txt"))
        .collect();
    if targets.is_empty() {
        return Err("no .py or .txt files to edit".into());
    }
    let salt = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut lat = Vec::new();
    let mut result = Ok(());
    for i in 0..args.edits {
        let file = targets[(i * 104_729) % targets.len()];
        let word = token(i, salt);
        let mut text = std::fs::read_to_string(file).unwrap_or_default();
        text.push_str(&format!("\n# {word}\n"));
        let start = Instant::now();
        std::fs::write(file, text).map_err(|e| e.to_string())?;
        loop {
            lexical.reload().map_err(|e| e.to_string())?;
            if !lexical
                .search(&word, &filter, 1)
                .map_err(|e| e.to_string())?
                .is_empty()
            {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                result = Err(format!(
                    "edit {i} to {} not searchable after 30 s",
                    file.display()
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if result.is_err() {
            break;
        }
        lat.push(start.elapsed().as_secs_f64() * 1000.0);
        // Let the watcher go idle so edits do not share a debounce window.
        std::thread::sleep(Duration::from_millis(150));
    }
    let _ = child.kill();
    let _ = child.wait();
    result?;
    lat.sort_by(f64::total_cmp);
    println!(
        "edit -> searchable under --watch ({} edits, debounce 100 ms): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        lat[lat.len() - 1]
    );
    Ok(())
}
