//! One-shot lexical queries: what a `ctxplane query --mode lexical`
//! process costs from start to exit (CPU and peak memory), next to ck's
//! BM25 mode (`ck --lex`) on the same tree when a ck binary is given.
//!
//! The tree is copied to a temporary directory and indexed once by each
//! tool (ctxplane: `index`, vectors included unless `--no-embed`, so a
//! lexical query that loaded the model or the vectors would show it; ck:
//! `ck --index`). Then each query of a fixed set runs `--runs` times as a
//! fresh process per tool, interleaved; the figures are medians over every
//! run of CPU (user + system, from `/usr/bin/time` when present, else the
//! children's CPU ticks) and of peak resident memory.
//!
//! ```text
//! cargo build --release -p ctxplane -p benches --bin ctxplane --bin oneshot_query
//! CTXPLANE_MODEL_DIR=vendor/model target/release/oneshot_query --tree PATH [--runs 5] [--no-embed] [--ck PATH]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("oneshot_query: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

/// Questions a developer would ask of an async runtime's source.
const QUERIES: &[&str] = &[
    "spawn a blocking task on a thread pool",
    "TcpListener accept incoming connection",
    "bounded mpsc channel send when full",
    "timeout a future after a duration",
    "runtime builder worker threads",
    "read lines from a file asynchronously",
    "graceful shutdown signal ctrl_c",
    "semaphore acquire permit",
];

/// CPU of waited-for children (user + system), in milliseconds.
fn children_cpu_ms() -> f64 {
    benches::cpu_ms(true)
}

/// One process: (CPU ms, peak RSS MB if known, wall ms).
struct Cost {
    cpu_ms: f64,
    rss_mb: Option<f64>,
    wall_ms: f64,
}

/// Runs one process; a query (`answers`) must print something.
fn measure(program: &Path, args: &[&str], dir: &Path, env: &[(&str, &Path)], answers: bool) -> Res<Cost> {
    let timer = Path::new("/usr/bin/time");
    let report = std::env::temp_dir().join(format!("oneshot-time-{}", std::process::id()));
    let mut cmd = if timer.exists() {
        let mut c = Command::new(timer);
        c.arg("-f").arg("%U %S %M").arg("-o").arg(&report).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).current_dir(dir).env("CTXPLANE_ACTOR", "bench");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let before = children_cpu_ms();
    let t = Instant::now();
    let out = cmd.output().map_err(|e| format!("{}: {e}", program.display()))?;
    let wall_ms = t.elapsed().as_secs_f64() * 1000.0;
    let ticks = children_cpu_ms() - before;
    if !out.status.success() {
        return Err(format!(
            "{} {args:?}: {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if answers && out.stdout.is_empty() {
        return Err(format!("{} {args:?} printed nothing", program.display()));
    }
    if timer.exists() {
        let text = std::fs::read_to_string(&report).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&report);
        let f: Vec<f64> = text
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        if let [user, sys, kb] = f[..] {
            return Ok(Cost {
                cpu_ms: (user + sys) * 1000.0,
                rss_mb: Some(kb / 1024.0),
                wall_ms,
            });
        }
        return Err(format!("unreadable /usr/bin/time report: {text}"));
    }
    Ok(Cost {
        cpu_ms: ticks,
        rss_mb: None,
        wall_ms,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

struct Tool {
    name: String,
    costs: Vec<Cost>,
}

impl Tool {
    fn line(&self) -> String {
        let cpu = median(self.costs.iter().map(|c| c.cpu_ms).collect());
        let wall = median(self.costs.iter().map(|c| c.wall_ms).collect());
        let rss: Vec<f64> = self.costs.iter().filter_map(|c| c.rss_mb).collect();
        let rss = if rss.is_empty() {
            "n/a".to_string()
        } else {
            format!("{:.0}", median(rss))
        };
        format!(
            "{:<28} {:>6} runs  CPU {:>7.1} ms  wall {:>7.1} ms  peak RSS {:>5} MB",
            self.name,
            self.costs.len(),
            cpu,
            wall,
            rss
        )
    }

    fn cpu(&self) -> f64 {
        median(self.costs.iter().map(|c| c.cpu_ms).collect())
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| benches::arg(&args, name);
    let tree = PathBuf::from(arg("--tree").ok_or("--tree PATH is required")?);
    if !tree.is_dir() {
        return Err(format!("{} is not a directory", tree.display()));
    }
    let runs = benches::arg_count(&args, "--runs", 5)?;
    let embed = !args.iter().any(|a| a == "--no-embed");
    let ck = arg("--ck").map(PathBuf::from);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = arg("--bin").map_or_else(|| root.join("target/release/ctxplane"), PathBuf::from);
    if !bin.exists() {
        return Err(format!(
            "no binary at {}: cargo build --release -p ctxplane",
            bin.display()
        ));
    }
    let model =
        std::env::var_os("CTXPLANE_MODEL_DIR").map_or_else(|| root.join("vendor/model"), PathBuf::from);

    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let work = tmp.path();
    let repo = work.join("repo");
    let files = benches::copy_tree(&tree, &repo).map_err(|e| e.to_string())?;
    std::fs::write(
        work.join("registry.toml"),
        "version = 1\n\n[[sources]]\nid = \"repo\"\nkind = \"dir\"\nlocation = \"repo\"\nowner = \"bench\"\ntier = 1\nstatus = \"approved\"\n",
    )
    .map_err(|e| e.to_string())?;
    let env: [(&str, &Path); 1] = [("CTXPLANE_MODEL_DIR", &model)];
    let mut index_args = vec!["index", "--json"];
    if !embed {
        index_args.push("--no-embed");
    }
    let t = Instant::now();
    measure(&bin, &index_args, work, &env, false)?;
    println!(
        "{}: {} files; ctxplane index ({}) in {:.1} s",
        tree.display(),
        files.len(),
        if embed {
            "lexical and vectors"
        } else {
            "lexical only"
        },
        t.elapsed().as_secs_f64()
    );
    if let Some(ck) = &ck {
        let t = Instant::now();
        measure(ck, &["--index", "."], &repo, &[], false)?;
        println!("ck --index in {:.1} s", t.elapsed().as_secs_f64());
    }

    let mut ours = Tool {
        name: "ctxplane query --mode lexical".into(),
        costs: Vec::new(),
    };
    let mut theirs = Tool {
        name: "ck --lex".into(),
        costs: Vec::new(),
    };
    for _ in 0..runs {
        for q in QUERIES {
            ours.costs.push(measure(
                &bin,
                &["query", q, "--mode", "lexical", "--json"],
                work,
                &env,
                true,
            )?);
            if let Some(ck) = &ck {
                theirs
                    .costs
                    .push(measure(ck, &["--lex", q, "."], &repo, &[], true)?);
            }
        }
    }
    println!("{} queries x {runs} runs, medians per process:", QUERIES.len());
    println!("  {}", ours.line());
    if ck.is_some() {
        println!("  {}", theirs.line());
        if theirs.cpu() > 0.0 {
            println!("  CPU ratio ctxplane / ck: {:.2}x", ours.cpu() / theirs.cpu());
        }
    }
    Ok(())
}
