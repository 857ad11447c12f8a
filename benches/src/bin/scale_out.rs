//! The scale-out layout measured: a Qdrant collection of N synthetic
//! chunks (random unit vectors for the dense side; for the lexical side,
//! BM25 term vectors made by ctxplane's own tokenizers from synthetic text
//! drawn from a Zipf-distributed vocabulary, as the indexer makes them),
//! then
//!
//! 1. indexing throughput into Qdrant (points/s, until the server has
//!    finished optimising);
//! 2. store-level query latency, one client: dense (k=50, scope filtered
//!    in Qdrant), lexical (the sparse BM25 query) and both, on this
//!    Qdrant target, and with `--embedded` the same queries on the
//!    embedded default (the exact int8 vector scan and tantivy) at N;
//! 3. `ctxplane serve --read-only` replicas with no local index (the
//!    release binary) answering `/v1/context` in hybrid mode through one
//!    replica and through two (clients round robin), p50/p99 as the
//!    client sees them, and each replica's peak resident memory.
//!
//! ```text
//! target/release/scale_out --qdrant http://127.0.0.1:6334 [--points 100000]
//!     [--shards 1] [--replication 1] [--clients 8] [--seconds 10]
//!     [--embedded] [--bin target/release/ctxplane] [--keep]
//! ```
//! The collection is dropped at the end unless `--keep`. Query text for
//! the replicas is drawn from the same vocabulary (so BM25 finds matches);
//! the model embeds it for real, against random vectors: the cost is a
//! real query's, the dense ranking meaningless.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indexer::lexical::{ChunkDoc, ChunkIndex, Evidence, Filter, QUERY_FIELDS, QueryPart};
use indexer::vector::qdrant::{QdrantStore, QdrantTarget};
use indexer::vector::{Point, PointText, VectorFilter, VectorStore};

type Res<T> = Result<T, String>;
/// A query: its vector and its BM25 parts.
type Q = (Vec<f32>, Vec<QueryPart>);

const TOKEN: &str = "demo-agent-platform-token";
/// Approved sources of the example organisation the agent may read.
const SOURCES: [(&str, u8); 3] = [("payments-api", 2), ("platform-docs", 1), ("ledger-worker", 2)];
const VOCABULARY: usize = 20_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("scale_out: {e}");
        std::process::exit(1);
    }
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A word index, Zipf-like (rank r with probability ~ 1/r).
    fn word(&mut self) -> usize {
        let x = self.unit();
        ((VOCABULARY as f64).powf(x) as usize).clamp(1, VOCABULARY) - 1
    }

    fn vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..indexer::embed::DIM)
            .map(|_| (self.unit() * 2.0 - 1.0) as f32)
            .collect();
        indexer::embed::normalize(&mut v);
        v
    }
}

/// Pronounceable synthetic words: `w` plus the index in base 26.
fn word(i: usize) -> String {
    let mut s = String::from("w");
    let mut n = i;
    loop {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
        if n == 0 {
            break;
        }
    }
    s
}

fn chunk(i: usize, rng: &mut Rng) -> ChunkDoc {
    let (source, tier) = SOURCES[i % SOURCES.len()];
    let len = 30 + (rng.next() % 90) as usize;
    let words: Vec<String> = (0..len).map(|_| word(rng.word())).collect();
    let content = words.join(" ");
    ChunkDoc {
        chunk_id: format!("syn-{i}"),
        source: source.into(),
        tier,
        // Ten chunks a file, as in real code.
        path: format!("syn/{}/{}_{}.rs", i / 10_000, word(i / 10 % 500), i / 10),
        language: "rust".into(),
        symbol: None,
        kind: "window".into(),
        start_line: (i % 10) as u32 * 20 + 1,
        end_line: (i % 10) as u32 * 20 + 1 + len as u32 / 10,
        chunk_hash: blake3::hash(content.as_bytes()).to_hex().to_string(),
        content,
        file_hash: "synthetic".into(),
        commit: None,
        ingested_at: 1_790_000_000,
    }
}

fn percentiles(mut lat: Vec<f64>) -> (f64, f64) {
    lat.sort_by(f64::total_cmp);
    (benches::percentile(&lat, 50.0), benches::percentile(&lat, 99.0))
}

fn query_words(rng: &mut Rng) -> String {
    (0..4)
        .map(|_| word(rng.word() % 2_000))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| benches::arg(&args, name);
    let flag = |name: &str| args.iter().any(|a| a == name);
    let url = arg("--qdrant").ok_or("--qdrant URL (gRPC, e.g. http://127.0.0.1:6334) is required")?;
    let n = benches::arg_count(&args, "--points", 100_000)?;
    let shards = benches::arg_count(&args, "--shards", 1)? as u32;
    let replication = benches::arg_count(&args, "--replication", 1)? as u32;
    let clients = benches::arg_count(&args, "--clients", 8)?;
    let secs = benches::arg_count(&args, "--seconds", 10)? as u64;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = arg("--bin").map_or_else(|| root.join("target/release/ctxplane"), PathBuf::from);
    let model_dir = benches::model_dir()?;
    let model_id = indexer::embed::Embedder::load(&model_dir, 1)
        .map_err(|e| e.to_string())?
        .model_id()
        .to_string();
    let prefix = format!("bench{}", std::process::id());
    let deployment = "bench";
    let target = QdrantTarget {
        url: &url,
        api_key: None,
        prefix: &prefix,
        model_id: &model_id,
        deployment,
        shards,
        replication,
    };
    let mut store = QdrantStore::connect(&target, true).map_err(|e| e.to_string())?;
    println!(
        "{n} points into {} ({shards} shard(s), {replication} cop(ies)) at {url}",
        store.collection()
    );

    // 1. Indexing throughput.
    let avg = {
        let mut a = [0.0f32; QUERY_FIELDS.len()];
        a[0] = 75.0;
        a[1] = 75.0;
        a[3] = 6.0;
        a[4] = 3.0;
        a
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let started = Instant::now();
    let batch = 2_000;
    let mut docs_for_embedded: Vec<(ChunkDoc, Vec<f32>)> = Vec::new();
    for start in (0..n).step_by(batch) {
        let mut points = Vec::with_capacity(batch);
        for i in start..(start + batch).min(n) {
            let doc = chunk(i, &mut rng);
            let vector = rng.vector();
            if flag("--embedded") {
                docs_for_embedded.push((doc.clone(), vector.clone()));
            }
            points.push(Point {
                chunk_id: doc.chunk_id.clone(),
                source: doc.source.clone(),
                path: doc.path.clone(),
                tier: doc.tier,
                vector,
                text: Some(Box::new(PointText {
                    terms: indexer::terms::document(&doc, &Evidence::default(), &avg),
                    doc,
                })),
            });
        }
        store.upsert(points).map_err(|e| e.to_string())?;
        store.commit().map_err(|e| e.to_string())?;
    }
    let written = started.elapsed().as_secs_f64();
    let settled = store
        .wait_optimized(Duration::from_secs(3_600))
        .map_err(|e| e.to_string())?;
    let total = started.elapsed().as_secs_f64();
    println!(
        "indexing: {:.0} points/s written ({written:.1} s), {:.0} points/s until optimised ({total:.1} s{})",
        n as f64 / written,
        n as f64 / total,
        if settled {
            ""
        } else {
            ", not settled after an hour"
        }
    );

    // 2. Store-level latency.
    let scope = VectorFilter {
        sources: SOURCES.iter().map(|(s, _)| s.to_string()).collect(),
        max_tier: 2,
        path_prefix: None,
    };
    let lex_scope = Filter {
        sources: SOURCES.iter().map(|(s, _)| s.to_string()).collect(),
        max_tier: 2,
    };
    let mut qrng = Rng(42);
    let queries: Vec<Q> = (0..300)
        .map(|_| (qrng.vector(), vec![QueryPart::new(query_words(&mut qrng), 1.0)]))
        .collect();
    let measure = |name: &str, f: &dyn Fn(&Q) -> Res<usize>| -> Res<()> {
        for q in queries.iter().take(20) {
            f(q)?;
        }
        let mut lat = Vec::new();
        let mut hits = 0;
        for q in &queries {
            let t = Instant::now();
            hits += f(q)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p99) = percentiles(lat);
        println!(
            "  {name:<28} p50 {p50:6.2} ms  p99 {p99:6.2} ms  ({:.0} results/query)",
            hits as f64 / queries.len() as f64
        );
        Ok(())
    };
    println!("store-level queries, one client, k=50:");
    let dense = |q: &Q| -> Res<usize> {
        store
            .search(&q.0, &scope, 50)
            .map(|r| r.len())
            .map_err(|e| e.to_string())
    };
    let sparse = |q: &Q| -> Res<usize> {
        ChunkIndex::search_parts(&store, &q.1, &lex_scope, 50)
            .map(|r| r.len())
            .map_err(|e| e.to_string())
    };
    measure("qdrant dense", &dense)?;
    measure("qdrant lexical (sparse)", &sparse)?;
    measure("qdrant both", &|q| Ok(dense(q)? + sparse(q)?))?;
    if flag("--embedded") {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut emb = indexer::vector::embedded::EmbeddedStore::open(&tmp.path().join("vectors"), &model_id)
            .map_err(|e| e.to_string())?;
        let lx = indexer::lexical::Lexical::open(&tmp.path().join("lexical")).map_err(|e| e.to_string())?;
        let mut w = lx.writer().map_err(|e| e.to_string())?;
        for (doc, vector) in docs_for_embedded.drain(..) {
            lx.add(&w, &doc).map_err(|e| e.to_string())?;
            emb.upsert(vec![Point {
                chunk_id: doc.chunk_id,
                source: doc.source,
                path: doc.path,
                tier: doc.tier,
                vector,
                text: None,
            }])
            .map_err(|e| e.to_string())?;
        }
        lx.commit(&mut w).map_err(|e| e.to_string())?;
        emb.commit().map_err(|e| e.to_string())?;
        let edense = |q: &Q| -> Res<usize> {
            emb.search(&q.0, &scope, 50)
                .map(|r| r.len())
                .map_err(|e| e.to_string())
        };
        let elex = |q: &Q| -> Res<usize> {
            lx.search_parts(&q.1, &lex_scope, 50)
                .map(|r| r.len())
                .map_err(|e| e.to_string())
        };
        measure("embedded dense (exact)", &edense)?;
        measure("embedded lexical (tantivy)", &elex)?;
        measure("embedded both", &|q| Ok(edense(q)? + elex(q)?))?;
    }

    // 3. Replicas over HTTP.
    if !bin.exists() {
        println!("replicas: skipped, no binary at {} (--bin)", bin.display());
    } else {
        let org = tempfile::tempdir().map_err(|e| e.to_string())?;
        benches::copy_tree(&root.join("examples/acme"), org.path()).map_err(|e| e.to_string())?;
        std::fs::write(
            org.path().join("ctxplane.toml"),
            format!(
                "vector_store = \"qdrant\"\nqdrant_url = \"{url}\"\nqdrant_collection = \"{prefix}\"\ndeployment_id = \"{deployment}\"\nembed_threads = 1\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let mut replicas = Vec::new();
        for _ in 0..2 {
            let mut cmd = std::process::Command::new(&bin);
            cmd.current_dir(org.path())
                .env("CTXPLANE_MODEL_DIR", &model_dir)
                .args(["serve", "--read-only", "--listen", "127.0.0.1:0"]);
            let (child, addr, log) = benches::start_serve(cmd)?;
            std::thread::spawn(move || for _ in log {});
            replicas.push((child, addr));
        }
        let mut hrng = Rng(7);
        let texts: Arc<Vec<String>> = Arc::new((0..500).map(|_| query_words(&mut hrng)).collect());
        for (used, clients) in [(1usize, 1usize), (1, clients), (2, clients)] {
            let addrs: Arc<Vec<String>> = Arc::new(replicas[..used].iter().map(|(_, a)| a.clone()).collect());
            let pids: Vec<u32> = replicas[..used].iter().map(|(c, _)| c.id()).collect();
            let stop = Arc::new(AtomicBool::new(false));
            let handles: Vec<_> = (0..clients)
                .map(|c| {
                    let (addrs, texts, stop) = (addrs.clone(), texts.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, c * 13);
                        while !stop.load(Ordering::Relaxed) {
                            let body = serde_json::json!({"query": texts[i % texts.len()], "packages": false, "max_tokens": 2000}).to_string();
                            let addr = &addrs[i % addrs.len()];
                            i += 1;
                            let t = Instant::now();
                            match benches::post_context(addr, TOKEN, &body) {
                                Ok(200) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                                _ => errors += 1,
                            }
                        }
                        (lat, errors)
                    })
                })
                .collect();
            let t = Instant::now();
            let mut peak = vec![0.0f64; used];
            while t.elapsed() < Duration::from_secs(secs) {
                for (k, pid) in pids.iter().enumerate() {
                    peak[k] = peak[k].max(rss_mb(*pid));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            stop.store(true, Ordering::Relaxed);
            let (mut lat, mut errors) = (Vec::new(), 0);
            for h in handles {
                let (l, e) = h.join().map_err(|_| "client panicked")?;
                lat.extend(l);
                errors += e;
            }
            let elapsed = t.elapsed().as_secs_f64();
            let count = lat.len();
            let (p50, p99) = percentiles(lat);
            println!(
                "through {used} replica(s), {clients} clients, hybrid: {:.0} q/s  p50 {p50:.1} ms  p99 {p99:.1} ms  errors {errors}  replica RSS peak {} MB",
                count as f64 / elapsed,
                peak.iter()
                    .map(|m| format!("{m:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        for (mut c, _) in replicas {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    if !flag("--keep") {
        store.drop_collection().map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
