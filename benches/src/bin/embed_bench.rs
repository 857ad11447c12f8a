//! Embedding cost per chunk, texts in input order against texts sorted by
//! length before batching (what `Embedder::embed` does): each batch is
//! padded to its longest text, so sorting saves the padding's compute.
//!
//! Chunks come from a real tree (files in path order, chunked as the
//! indexer chunks them), in groups of 64 as indexing embeds them; each
//! group is embedded both ways on one thread, alternating which goes
//! first, and the process CPU time of each is summed. The vectors of both
//! ways are compared (they must agree). Then the same groups are embedded
//! whole (`Embedder::embed_documents`: windows for chunks longer than the
//! model's 256 tokens, what indexing does), with the share of chunks that
//! need more than one window.
//!
//! ```text
//! cargo build --release -p benches --bin embed_bench
//! CTXPLANE_MODEL_DIR=vendor/model target/release/embed_bench --tree PATH [--chunks 1024]
//! ```

use std::path::{Path, PathBuf};

type Res<T> = Result<T, String>;

fn main() {
    if let Err(e) = run() {
        eprintln!("embed_bench: {e}");
        std::process::exit(1);
    }
}

fn cpu_ms() -> f64 {
    benches::cpu_ms(false)
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| benches::arg(&args, name);
    let tree = PathBuf::from(arg("--tree").ok_or("--tree PATH is required")?);
    let want: usize =
        arg("--chunks").map_or(Ok(1024), |s| s.parse().map_err(|_| "--chunks needs a number"))?;
    let dir = benches::model_dir()?;
    let embedder = indexer::embed::Embedder::load_with(&dir, 1, 1).map_err(|e| e.to_string())?;

    let mut paths = Vec::new();
    files(&tree, &mut paths);
    let mut chunks: Vec<String> = Vec::new();
    for p in paths {
        let rel = p.strip_prefix(&tree).unwrap_or(&p).to_string_lossy().to_string();
        let language = indexer::chunk::language_of(&rel);
        if language == "text" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        chunks.extend(indexer::chunk::chunk(&text, language).into_iter().map(|c| c.text));
        if chunks.len() >= want {
            break;
        }
    }
    chunks.truncate(want);
    if chunks.is_empty() {
        return Err(format!("no chunks under {}", tree.display()));
    }
    let (mut unsorted_ms, mut sorted_ms, mut worst) = (0.0, 0.0, 1.0f32);
    for (i, group) in chunks.chunks(64).enumerate() {
        let texts: Vec<&str> = group.iter().map(String::as_str).collect();
        let time = |sorted: bool| -> Res<(f64, Vec<Vec<f32>>)> {
            let t = cpu_ms();
            let v = if sorted {
                embedder.embed(&texts)
            } else {
                embedder.embed_unsorted(&texts)
            }
            .map_err(|e| e.to_string())?;
            Ok((cpu_ms() - t, v))
        };
        let ((a_ms, a), (b_ms, b)) = if i % 2 == 0 {
            let a = time(false)?;
            (a, time(true)?)
        } else {
            let b = time(true)?;
            (time(false)?, b)
        };
        unsorted_ms += a_ms;
        sorted_ms += b_ms;
        for (x, y) in a.iter().zip(&b) {
            worst = worst.min(x.iter().zip(y).map(|(p, q)| p * q).sum());
        }
    }
    let (mut whole_ms, mut long) = (0.0, 0usize);
    for group in chunks.chunks(64) {
        let texts: Vec<&str> = group.iter().map(String::as_str).collect();
        for t in &texts {
            if embedder.windows(t).map_err(|e| e.to_string())?.len() > 1 {
                long += 1;
            }
        }
        let t = cpu_ms();
        embedder.embed_documents(&texts).map_err(|e| e.to_string())?;
        whole_ms += cpu_ms() - t;
    }
    let n = chunks.len() as f64;
    println!(
        "embedded whole (windows of at most {} tokens): {:.1} CPU-ms/chunk; {:.1}% of chunks exceed the window",
        indexer::embed::WINDOW_TOKENS,
        whole_ms / n,
        long as f64 * 100.0 / n
    );
    println!(
        "{} chunks from {} in groups of 64, one thread: input order {:.1} CPU-ms/chunk, sorted by length {:.1} CPU-ms/chunk ({:+.1}%); lowest cosine between the two ways {:.6}",
        chunks.len(),
        tree.display(),
        unsorted_ms / n,
        sorted_ms / n,
        (sorted_ms / unsorted_ms - 1.0) * 100.0,
        worst
    );
    Ok(())
}
