//! What a compressed doc store costs a lexical query: the same queries,
//! each returning its top 10 chunks with their stored text, against
//! lexical indexes of the same corpus (one built before the doc store was
//! compressed, one after), alternating between them, with each index's
//! size on disk.
//!
//! ```text
//! cargo build --release -p benches --bin docstore_bench
//! target/release/docstore_bench --index A/index/lexical --index B/index/lexical [--queries 400]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use indexer::lexical::{Filter, Lexical};

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("docstore_bench: {e}");
        std::process::exit(1);
    }
}

fn size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dirs: Vec<PathBuf> = args
        .windows(2)
        .filter(|w| w[0] == "--index")
        .map(|w| PathBuf::from(&w[1]))
        .collect();
    if dirs.is_empty() {
        return Err("give --index DIR at least once".into());
    }
    let n: usize = benches::arg(&args, "--queries")
        .map_or(Ok(400), |s| s.parse().map_err(|_| "--queries needs a number"))?;
    let indexes: Vec<Lexical> = dirs
        .iter()
        .map(|d| Lexical::open(d).map_err(|e| format!("{}: {e}", d.display())))
        .collect::<Res<_>>()?;
    // Queries: words of the stored chunks themselves (identifiers and
    // prose alike), three per query, deterministic.
    let docs = indexes[0].stored_documents().map_err(|e| e.to_string())?;
    let sources: Vec<String> = docs
        .iter()
        .map(|d| d.source.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let words: Vec<String> = docs
        .iter()
        .flat_map(|d| {
            d.content
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|w| w.len() >= 5)
        .collect();
    if words.is_empty() {
        return Err("no words in the first index".into());
    }
    let queries: Vec<String> = (0..n)
        .map(|i| {
            (0..3)
                .map(|j| words[(i * 7_919 + j * 104_729) % words.len()].clone())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let filter = Filter { sources, max_tier: 4 };
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); indexes.len()];
    // Warm up each index once, then alternate.
    for l in &indexes {
        for q in queries.iter().take(20) {
            l.search(q, &filter, 10).map_err(|e| e.to_string())?;
        }
    }
    for q in &queries {
        for (i, l) in indexes.iter().enumerate() {
            let t = Instant::now();
            let hits = l.search(q, &filter, 10).map_err(|e| e.to_string())?;
            std::hint::black_box(hits.iter().map(|(_, d)| d.content.len()).sum::<usize>());
            times[i].push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    for (i, d) in dirs.iter().enumerate() {
        let t = &mut times[i];
        t.sort_by(f64::total_cmp);
        println!(
            "{}: {:.1} MB on disk; {} queries with stored text of the top 10: p50 {:.3} ms, p99 {:.3} ms, mean {:.3} ms",
            d.display(),
            size(d) as f64 / 1e6,
            t.len(),
            benches::percentile(t, 50.0),
            benches::percentile(t, 99.0),
            t.iter().sum::<f64>() / t.len() as f64
        );
    }
    Ok(())
}
