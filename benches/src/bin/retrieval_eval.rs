//! Retrieval quality on the shared evaluation sets, through the code path
//! the service uses (indexer pass + vector sync, then `Retriever::query`
//! as the operator): BM25 only, dense only and hybrid.
//!
//! * SciFact (BEIR, test): nDCG@10 over 300 claims, 5,183 abstracts, each
//!   abstract a Markdown file (`# title` + text).
//! * CoSQA (test-500, and dev-500 with `--tune`): MRR and nDCG@10, each of
//!   the 6,267 functions a Python file.
//!
//! Also: hybrid query latency (p50/p99, query embedding included) on an
//! index of both corpora copied `--latency-copies N` times (default 4:
//! ~59,000 chunks; copies get their vectors from the cache); embedding
//! throughput of the pipeline vs the model called directly on the same
//! texts; and a re-index of an unchanged corpus embedding nothing.
//! With `--qdrant URL`, the same sets again through the shared tier of a
//! scale-out replica (both engines on a Qdrant collection synced from the
//! same index), with each mode's nDCG@10 difference from the embedded
//! default.
//!
//! ```text
//! bash scripts/setup-model.sh
//! cargo run --release -p benches --bin retrieval_eval [-- --tune] [--latency-copies N] [--qdrant URL]
//! ```
//! Indexes are kept under target/eval-data/ so reruns do not re-embed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use benches::ranking::{ndcg_at, percentile, reciprocal_rank};
use indexer::embed::Embedder;
use indexer::vector::VectorStore;
use indexer::vector::embedded::EmbeddedStore;
use indexer::{Indexer, PassOptions};
use registry::{Clock, FixedClock, Registry};
use retriever::{Caller, Fusion, Mode, Options, Retriever};

fn main() {
    if let Err(e) = run() {
        eprintln!("retrieval_eval: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

struct Dataset {
    name: &'static str,
    /// (query id, text)
    queries: Vec<(String, String)>,
    /// query id -> doc id -> grade
    qrels: HashMap<String, HashMap<String, u32>>,
}

fn eval_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval");
    if root.exists() {
        root
    } else {
        PathBuf::from("../shared/eval")
    }
}

/// Writes the corpus as files under `dir/corpus` (once) and returns the
/// registry text.
fn write_org(dir: &Path, files: &mut dyn Iterator<Item = (String, String)>) -> Res<()> {
    let corpus = dir.join("corpus");
    if corpus.join(".complete").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(&corpus).map_err(e)?;
    for (name, text) in files {
        let p = corpus.join(&name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(e)?;
        }
        std::fs::write(p, text).map_err(e)?;
    }
    std::fs::write(
        dir.join("registry.toml"),
        "version = 1\n\n[[sources]]\nid = \"corpus\"\nkind = \"dir\"\nlocation = \"corpus\"\nowner = \"eval\"\ntier = 1\nstatus = \"approved\"\n",
    )
    .map_err(e)?;
    std::fs::write(corpus.join(".complete"), "").map_err(e)?;
    Ok(())
}

fn scifact(work: &Path) -> Res<Dataset> {
    let root = eval_dir().join("scifact");
    let corpus = std::fs::read_to_string(root.join("corpus.jsonl")).map_err(e)?;
    let mut docs = corpus.lines().map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
        (
            format!("{}.md", v["_id"].as_str().unwrap_or("")),
            format!(
                "# {}\n\n{}\n",
                v["title"].as_str().unwrap_or(""),
                v["text"].as_str().unwrap_or("")
            ),
        )
    });
    write_org(&work.join("scifact"), &mut docs)?;
    let mut qrels: HashMap<String, HashMap<String, u32>> = HashMap::new();
    for l in std::fs::read_to_string(root.join("qrels/test.tsv"))
        .map_err(e)?
        .lines()
        .skip(1)
    {
        let f: Vec<&str> = l.split('\t').collect();
        if f.len() == 3 {
            qrels
                .entry(f[0].to_string())
                .or_default()
                .insert(f[1].to_string(), f[2].parse().unwrap_or(1));
        }
    }
    let queries = std::fs::read_to_string(root.join("queries.jsonl"))
        .map_err(e)?
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let id = v["_id"].as_str()?.to_string();
            qrels
                .contains_key(&id)
                .then(|| (id, v["text"].as_str().unwrap_or("").to_string()))
        })
        .collect();
    Ok(Dataset {
        name: "scifact",
        queries,
        qrels,
    })
}

fn cosqa(work: &Path, split: &str) -> Res<Dataset> {
    let root = eval_dir().join("cosqa");
    let map: HashMap<String, u64> =
        serde_json::from_str(&std::fs::read_to_string(root.join("code_idx_map.txt")).map_err(e)?)
            .map_err(e)?;
    let mut docs = map
        .iter()
        .map(|(code, idx)| (format!("{idx}.py"), format!("{code}\n")));
    write_org(&work.join("cosqa"), &mut docs)?;
    let items: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(root.join(format!("cosqa-retrieval-{split}-500.json"))).map_err(e)?,
    )
    .map_err(e)?;
    let mut queries = Vec::new();
    let mut qrels = HashMap::new();
    for (i, it) in items.iter().enumerate() {
        let id = format!("{split}-{i}");
        let gold = it["retrieval_idx"].as_u64().ok_or("retrieval_idx missing")?;
        queries.push((id.clone(), it["doc"].as_str().unwrap_or("").to_string()));
        qrels.insert(id, HashMap::from([(gold.to_string(), 1)]));
    }
    Ok(Dataset {
        name: if split == "dev" { "cosqa-dev" } else { "cosqa" },
        queries,
        qrels,
    })
}

/// Indexes `dir` (lexical pass + vectors) with the real indexer.
fn build(dir: &Path, embedder: &Embedder) -> Res<(Registry, serde_json::Value)> {
    let reg = Registry::load(&dir.join("registry.toml")).map_err(e)?;
    let data = dir.join("data");
    let indexer =
        Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default()).map_err(e)?;
    let clock = FixedClock(jiff::Timestamp::now());
    let policy = reg.policy(&clock);
    let t = Instant::now();
    let pass = indexer
        .run_pass(&reg, &policy, clock.now(), &mut |_, _, _| {})
        .map_err(e)?;
    let pass_s = t.elapsed().as_secs_f64();
    let mut store = EmbeddedStore::open(&Indexer::vectors_dir(&data), embedder.model_id()).map_err(e)?;
    let t = Instant::now();
    let mut last = Instant::now();
    let sync = indexer
        .sync_vectors(&mut store, embedder, &mut |done, total| {
            if last.elapsed().as_secs() >= 10 {
                eprintln!("  embedding {}: {done}/{total}", dir.display());
                last = Instant::now();
            }
        })
        .map_err(e)?;
    Ok((
        reg,
        serde_json::json!({
            "chunks": pass.total_chunks, "pass_s": pass_s, "embedded": sync.embedded, "from_cache": sync.from_cache,
            "vectors": sync.vectors, "embed_s": t.elapsed().as_secs_f64(), "embed_ms_model": sync.embed_ms,
        }),
    ))
}

fn open_retriever(dir: &Path, embedder: &Arc<Embedder>) -> Res<Retriever> {
    let data = dir.join("data");
    let store = EmbeddedStore::open_read(&Indexer::vectors_dir(&data), embedder.model_id())
        .map_err(e)?
        .ok_or("no vectors")?;
    Retriever::open(
        &data,
        Ok((embedder.clone(), Box::new(store) as Box<dyn VectorStore>)),
    )
    .map_err(e)
}

/// Ranked doc ids for a query (a doc's rank is its best chunk's).
fn ranked(r: &Retriever, reg: &Registry, q: &str, mode: Mode) -> Res<(Vec<String>, f64)> {
    let opts = Options {
        mode,
        limit: 100,
        max_tokens: 1_000_000,
        packages: false,
        ..Options::default()
    };
    let a = r.query(&Caller::operator(reg), q, &opts).map_err(e)?;
    let mut seen = BTreeSet::new();
    let docs = a
        .results
        .iter()
        .map(|h| {
            let p = &h.provenance.path;
            p.rsplit_once('.').map_or(p.as_str(), |(s, _)| s).to_string()
        })
        .filter(|d| seen.insert(d.clone()))
        .collect();
    Ok((docs, a.took_ms))
}

fn ndcg10(docs: &[String], rel: &HashMap<String, u32>) -> f64 {
    ndcg_at(docs, rel, 10)
}

struct Scores {
    ndcg: f64,
    mrr: f64,
    lat: Vec<f64>,
}

fn score(r: &Retriever, reg: &Registry, ds: &Dataset, mode: Mode) -> Res<Scores> {
    let (mut n, mut m, mut lat) = (0.0, 0.0, Vec::new());
    for (id, q) in &ds.queries {
        let (docs, ms) = ranked(r, reg, q, mode)?;
        let rel = &ds.qrels[id];
        n += ndcg10(&docs, rel);
        m += reciprocal_rank(&docs, rel);
        lat.push(ms);
    }
    let k = ds.queries.len().max(1) as f64;
    lat.sort_by(f64::total_cmp);
    Ok(Scores {
        ndcg: n / k,
        mrr: m / k,
        lat,
    })
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let tune = args.iter().any(|a| a == "--tune" || a == "--tune-weights");
    // --quick: quality tables only (no throughput or latency runs).
    let quick = args.iter().any(|a| a == "--quick");
    let copies: usize = args
        .iter()
        .position(|a| a == "--latency-copies")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(4), |n| {
            n.parse().map_err(|_| "--latency-copies needs a number")
        })?;
    let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/eval-data");
    std::fs::create_dir_all(&work).map_err(e)?;
    let model = benches::model_dir()?;
    let embedder = Arc::new(Embedder::load(&model, 2).map_err(e)?);
    println!("model {} from {}", embedder.model_id(), model.display());

    let mut sets = vec![scifact(&work)?, cosqa(&work, "test")?];
    if tune {
        sets.push(cosqa(&work, "dev")?);
    }
    let mut built: BTreeMap<&str, (Registry, Retriever)> = BTreeMap::new();
    for ds in &sets {
        let dir = work.join(if ds.name == "scifact" { "scifact" } else { "cosqa" });
        if built.contains_key(dir.file_name().and_then(|f| f.to_str()).unwrap_or("")) {
            continue;
        }
        let (reg, b) = build(&dir, &embedder)?;
        println!("{}: indexed {b}", dir.display());
        let r = open_retriever(&dir, &embedder)?;
        built.insert(if ds.name == "scifact" { "scifact" } else { "cosqa" }, (reg, r));
    }

    if tune {
        let ds = sets.iter().find(|d| d.name == "cosqa-dev").ok_or("no dev set")?;
        let (reg, r) = built.get_mut("cosqa").ok_or("no cosqa")?;
        let mut best = (0.0, Fusion::default());
        let ks: &[f32] = if args.iter().any(|a| a == "--tune-weights") {
            &[]
        } else {
            &[10.0, 30.0, 60.0]
        };
        for &k in ks {
            for lw in [0.2, 0.3, 0.5, 0.7, 1.0] {
                let mut f = Fusion {
                    k,
                    lexical_weight: lw,
                    ..Fusion::default()
                };
                r.fusion = f.clone();
                let s = score(r, reg, ds, Mode::Hybrid)?;
                println!(
                    "tune cosqa-dev k={k} lexical_weight={lw}: nDCG@10 {:.4} MRR {:.4}",
                    s.ndcg, s.mrr
                );
                if s.ndcg > best.0 {
                    f.candidates = r.fusion.candidates;
                    best = (s.ndcg, f);
                }
            }
        }
        println!("best on cosqa-dev: {:?} (nDCG@10 {:.4})", best.1, best.0);
        r.fusion = Fusion::default();
        // The BM25 weight for questions answered by code, the length from
        // which BM25 counts fully, and the share of code among the nearest
        // chunks from which a short question is fused by rank (above 1:
        // never): CoSQA's dev split, with SciFact shown beside it (SciFact
        // has no dev split; it is reported, not tuned on).
        for (lw, long, from) in [
            (0.1, 30, 1.1),
            (0.2, 30, 1.1),
            (0.3, 30, 1.1),
            (0.1, 30, 1.0),
            (0.2, 30, 1.0),
            (0.3, 30, 1.0),
            (0.3, 30, 0.8),
            (0.3, 20, 1.0),
            (0.3, 40, 1.0),
        ] {
            let f = Fusion {
                lexical_weight: lw,
                long_words: long,
                rank_fusion_from: from,
                ..Fusion::default()
            };
            let mut out = Vec::new();
            for (name, set) in [("cosqa", ds), ("scifact", &sets[0])] {
                let (reg, r) = built.get_mut(name).ok_or("index missing")?;
                r.fusion = f.clone();
                out.push(score(r, reg, set, Mode::Hybrid)?.ndcg);
                r.fusion = Fusion::default();
            }
            println!(
                "tune code-target weight {lw}, full weight from {long} words, ranks from code share {from}: cosqa-dev nDCG@10 {:.4}; scifact nDCG@10 {:.4}",
                out[0], out[1]
            );
        }
        let mut out = Vec::new();
        for (name, set) in [("cosqa", ds), ("scifact", &sets[0])] {
            let (reg, r) = built.get_mut(name).ok_or("index missing")?;
            r.fusion = Fusion::rrf();
            out.push(score(r, reg, set, Mode::Hybrid)?.ndcg);
            r.fusion = Fusion::default();
        }
        println!(
            "reciprocal-rank fusion throughout: cosqa-dev nDCG@10 {:.4}; scifact nDCG@10 {:.4}",
            out[0], out[1]
        );
    }

    // --rrf: the tables below with weighted reciprocal-rank fusion (as
    // before calibrated scores) instead of the default.
    if args.iter().any(|a| a == "--rrf") {
        for (_, r) in built.values_mut() {
            r.fusion = Fusion::rrf();
        }
    }
    // --fusion "WEIGHT WEIGHT_LONG LONG_WORDS": the tables below with these
    // fusion settings instead of the defaults.
    if let Some(spec) = args
        .iter()
        .position(|a| a == "--fusion")
        .and_then(|i| args.get(i + 1))
    {
        let n: Vec<f32> = spec
            .split_whitespace()
            .map(|x| {
                x.parse::<f32>()
                    .map_err(|_| format!("--fusion: {x:?} is not a number"))
            })
            .collect::<Res<_>>()?;
        let [w, wl, long] = n[..] else {
            return Err("--fusion takes three numbers".into());
        };
        for (_, r) in built.values_mut() {
            r.fusion = Fusion {
                lexical_weight: w,
                lexical_weight_long: wl,
                long_words: long as usize,
                ..r.fusion.clone()
            };
        }
        println!("fusion {:?}", built.values().next().map(|(_, r)| &r.fusion));
    }
    println!(
        "\n{:<10} {:<8} {:>8} {:>8} {:>9} {:>9}",
        "dataset", "mode", "nDCG@10", "MRR", "p50 ms", "p99 ms"
    );
    for ds in sets.iter().filter(|d| d.name != "cosqa-dev") {
        let (reg, r) = &built[if ds.name == "scifact" { "scifact" } else { "cosqa" }];
        for (mode, name) in [
            (Mode::Lexical, "bm25"),
            (Mode::Dense, "dense"),
            (Mode::Hybrid, "hybrid"),
        ] {
            let s = score(r, reg, ds, mode)?;
            println!(
                "{:<10} {:<8} {:>8.4} {:>8.4} {:>9.2} {:>9.2}",
                ds.name,
                name,
                s.ndcg,
                s.mrr,
                percentile(&s.lat, 50.0),
                percentile(&s.lat, 99.0)
            );
        }
    }

    // --qdrant URL: the same sets through the shared tier a scale-out
    // replica reads (chunks, BM25 term vectors and dense vectors in a
    // Qdrant collection, synced from the same index and cache), beside
    // the embedded default's figures above.
    if let Some(url) = args
        .iter()
        .position(|a| a == "--qdrant")
        .and_then(|i| args.get(i + 1))
    {
        let prefix = format!("eval{}", std::process::id());
        let mut shared: BTreeMap<&str, Retriever> = BTreeMap::new();
        let mut stores = Vec::new();
        for name in ["scifact", "cosqa"] {
            let data = work.join(name).join("data");
            let deployment = format!("{name}-eval");
            let target = |create| {
                indexer::vector::qdrant::QdrantStore::connect(
                    &indexer::vector::qdrant::QdrantTarget {
                        url,
                        api_key: None,
                        prefix: &prefix,
                        model_id: embedder.model_id(),
                        deployment: &deployment,
                        shards: 1,
                        replication: 1,
                    },
                    create,
                )
                .map_err(e)
            };
            let mut writer = target(true)?;
            let indexer = Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default())
                .map_err(e)?;
            let t = Instant::now();
            let sync = indexer
                .sync_vectors(&mut writer, &embedder, &mut |_, _| {})
                .map_err(e)?;
            println!(
                "{name}: {} points synced to Qdrant in {:.1} s ({} embedded, {} from the cache)",
                sync.vectors,
                t.elapsed().as_secs_f64(),
                sync.embedded,
                sync.from_cache
            );
            let index: Arc<dyn indexer::lexical::ChunkIndex> = Arc::new(target(false)?);
            let dense = Box::new(target(false)?) as Box<dyn VectorStore>;
            shared.insert(
                name,
                Retriever::with_index(&data, index, Ok((embedder.clone(), dense))),
            );
            stores.push(writer);
        }
        println!("\nshared tier (Qdrant at {url}):");
        println!(
            "{:<10} {:<8} {:>8} {:>8} {:>9} {:>9} {:>12}",
            "dataset", "mode", "nDCG@10", "MRR", "p50 ms", "p99 ms", "vs embedded"
        );
        for ds in sets.iter().filter(|d| d.name != "cosqa-dev") {
            let key = if ds.name == "scifact" { "scifact" } else { "cosqa" };
            let (reg, local) = &built[key];
            let r = &shared[key];
            for (mode, name) in [
                (Mode::Lexical, "bm25"),
                (Mode::Dense, "dense"),
                (Mode::Hybrid, "hybrid"),
            ] {
                let s = score(r, reg, ds, mode)?;
                let base = score(local, reg, ds, mode)?;
                println!(
                    "{:<10} {:<8} {:>8.4} {:>8.4} {:>9.2} {:>9.2} {:>+12.4}",
                    ds.name,
                    name,
                    s.ndcg,
                    s.mrr,
                    percentile(&s.lat, 50.0),
                    percentile(&s.lat, 99.0),
                    s.ndcg - base.ndcg
                );
            }
        }
        for s in stores {
            s.drop_collection().map_err(e)?;
        }
    }

    if quick {
        return Ok(());
    }
    // Embedding throughput: the pipeline vs the model on the same texts,
    // and a re-index of unchanged input embeds nothing.
    let sample = work.join("throughput");
    let _ = std::fs::remove_dir_all(&sample);
    let scifact_corpus = work.join("scifact/corpus");
    let mut files: Vec<(String, String)> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&scifact_corpus)
        .map_err(e)?
        .filter_map(|x| x.ok())
        .map(|x| x.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    for n in names.iter().take(400) {
        files.push((
            n.clone(),
            std::fs::read_to_string(scifact_corpus.join(n)).map_err(e)?,
        ));
    }
    write_org(&sample, &mut files.clone().into_iter())?;
    // A first run builds the sample's lexical index and warms the model;
    // then the model alone and the pipeline (from an empty vector store and
    // cache) embed the same chunks, each warm.
    build(&sample, &embedder)?;
    let texts: Vec<String> = {
        let data = sample.join("data");
        let lex = indexer::lexical::Lexical::open(&data.join("index/lexical")).map_err(e)?;
        let mut t = Vec::new();
        for (n, _) in &files {
            for d in lex.docs_for_file("corpus", n).map_err(e)? {
                t.push(d.content);
            }
        }
        t
    };
    let t = Instant::now();
    for group in texts.chunks(64) {
        let refs: Vec<&str> = group.iter().map(String::as_str).collect();
        embedder.embed(&refs).map_err(e)?;
    }
    let raw_s = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(sample.join("data/vectors")).map_err(e)?;
    let (_, first) = build(&sample, &embedder)?;
    let (_, second) = build(&sample, &embedder)?;
    let pipe_s = first["embed_s"].as_f64().unwrap_or(f64::NAN);
    let n = first["embedded"].as_f64().unwrap_or(0.0);
    println!(
        "\nembedding throughput on {} chunks: pipeline {:.1} chunks/s, model alone {:.1} chunks/s, ratio {:.3}",
        n,
        n / pipe_s,
        texts.len() as f64 / raw_s,
        (n / pipe_s) / (texts.len() as f64 / raw_s)
    );
    println!(
        "re-index of the unchanged corpus: {} embedded, {} vectors kept",
        second["embedded"], second["vectors"]
    );

    // Latency on >= 50,000 chunks: both corpora copied `copies` times as
    // separate sources (their vectors come from the cache: same texts), so
    // BM25 and the vector scan cover every copy.
    if copies > 0 {
        let big = work.join("latency");
        let mut reg_text = String::from("version = 1\n");
        for c in 0..copies {
            for set in ["scifact", "cosqa"] {
                let dest = big.join(format!("{set}-{c}"));
                if !dest.join(".complete").exists() {
                    benches::copy_tree(&work.join(set).join("corpus"), &dest).map_err(e)?;
                }
                reg_text.push_str(&format!(
                    "[[sources]]\nid = \"{set}-{c}\"\nkind = \"dir\"\nlocation = \"{set}-{c}\"\nowner = \"eval\"\ntier = 1\nstatus = \"approved\"\n"
                ));
            }
        }
        std::fs::write(big.join("registry.toml"), reg_text).map_err(e)?;
        // Seed the cache with the two corpora's vectors (fixed-size records
        // concatenate into a valid cache).
        let cache_dir = big.join("data/vectors/cache");
        std::fs::create_dir_all(&cache_dir).map_err(e)?;
        let name = std::fs::read_dir(work.join("scifact/data/vectors/cache"))
            .map_err(e)?
            .filter_map(|x| x.ok())
            .map(|x| x.file_name())
            .next()
            .ok_or("no cache to seed from")?;
        let seeded = cache_dir.join(&name);
        if !seeded.exists() {
            let mut bytes = std::fs::read(work.join("scifact/data/vectors/cache").join(&name)).map_err(e)?;
            bytes.extend(std::fs::read(work.join("cosqa/data/vectors/cache").join(&name)).map_err(e)?);
            std::fs::write(&seeded, bytes).map_err(e)?;
        }
        let (reg, b) = build(&big, &embedder)?;
        println!("\nlatency index ({copies} copies of both corpora): {b}");
        let r = open_retriever(&big, &embedder)?;
        let mut lat = Vec::new();
        let caller = Caller::operator(&reg);
        for ds in sets.iter().filter(|d| d.name != "cosqa-dev") {
            for (_, q) in &ds.queries {
                let a = r.query(&caller, q, &Options::default()).map_err(e)?;
                lat.push(a.took_ms);
            }
        }
        lat.sort_by(f64::total_cmp);
        println!(
            "hybrid query latency on {} chunks / {} vectors ({} queries, query embedding included): p50 {:.2} ms, p99 {:.2} ms",
            b["chunks"],
            b["vectors"],
            lat.len(),
            percentile(&lat, 50.0),
            percentile(&lat, 99.0)
        );
    }
    Ok(())
}
