//! Tier 1 (topic packages) against tier 2 (hybrid search), through
//! `Retriever::query` as the service calls it.
//!
//! Corpus: Django 5.1.4's `docs/topics` and `docs/howto` (the PyPI sdist
//! that `scripts/bench-index.sh` fetches). Packages and the labelled query
//! set: `benches/data/topics-django/` (14 packages citing those docs; 84
//! paraphrased questions, 6 per package, and 40 that no package answers).
//!
//! 1. Calibrates on the `dev` half: for each embedding weight, the least
//!    score threshold whose dev precision is at least 0.95, keeping the one
//!    that serves most correct answers; the same for term overlap alone
//!    (no model).
//! 2. Reports on the `test` half: precision of tier-1 hits, share of all
//!    queries tier 1 serves, recall on the answerable ones, wrong serves
//!    on the unanswerable ones; tokens and latency per answer against
//!    tier 2 answering the same queries.
//!
//! ```text
//! bash scripts/bench-topics.sh     # fetches Django, builds, runs this
//! ```
//! The index is kept under target/eval-data/topics so reruns do not re-embed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indexer::embed::Embedder;
use indexer::vector::VectorStore;
use indexer::vector::embedded::EmbeddedStore;
use indexer::{Indexer, PassOptions};
use registry::{Clock, FixedClock, Registry};
use retriever::{Caller, Mode, Options, Retriever, TopicMatch};

fn main() {
    if let Err(e) = run() {
        eprintln!("topic_eval: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

struct Query {
    text: String,
    package: Option<String>,
    dev: bool,
}

/// What tier 1 picked for a query with no threshold, and its score.
#[derive(Clone)]
struct Pick {
    candidate: Option<String>,
    score: f32,
}

fn load_queries(path: &Path) -> Res<Vec<Query>> {
    let text = std::fs::read_to_string(path).map_err(|x| format!("{}: {x}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).map_err(e)?;
            Ok(Query {
                text: v["query"].as_str().ok_or("query missing")?.to_string(),
                package: v["package"].as_str().map(str::to_string),
                dev: v["split"] == "dev",
            })
        })
        .collect()
}

fn opts(mode: Mode, packages: bool) -> Options {
    Options {
        mode,
        limit: 10,
        max_tokens: 4_000,
        packages,
        ..Options::default()
    }
}

/// Tier 1's best candidate per query, served whatever the score.
fn picks(r: &mut Retriever, reg: &Registry, qs: &[&Query], mode: Mode, weight: f32) -> Res<Vec<Pick>> {
    r.topic_match = TopicMatch {
        dense_weight: weight,
        threshold: f32::MIN,
        lexical_threshold: f32::MIN,
    };
    let caller = Caller::operator(reg);
    qs.iter()
        .map(|q| {
            let a = r.query(&caller, &q.text, &opts(mode, true)).map_err(e)?;
            let t = a.topic.ok_or("no topic decision: are packages loaded?")?;
            Ok(Pick {
                candidate: t.candidate,
                score: t.scores.map_or(f32::MIN, |s| s.score),
            })
        })
        .collect()
}

struct Outcome {
    threshold: f32,
    served: usize,
    correct: usize,
}

impl Outcome {
    fn precision(&self) -> f64 {
        if self.served == 0 {
            1.0
        } else {
            self.correct as f64 / self.served as f64
        }
    }
}

fn outcome(qs: &[&Query], picks: &[Pick], threshold: f32) -> Outcome {
    let mut served = 0;
    let mut correct = 0;
    for (q, p) in qs.iter().zip(picks) {
        if p.score >= threshold {
            served += 1;
            if p.candidate.is_some() && p.candidate == q.package {
                correct += 1;
            }
        }
    }
    Outcome {
        threshold,
        served,
        correct,
    }
}

/// The lowest threshold with precision >= `target` that serves the most
/// correct answers; placed halfway to the next lower score for margin.
fn calibrate(qs: &[&Query], picks: &[Pick], target: f64) -> Outcome {
    let mut scores: Vec<f32> = picks.iter().map(|p| p.score).collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let mut best = outcome(qs, picks, f32::MAX);
    for (i, &s) in scores.iter().enumerate() {
        let o = outcome(qs, picks, s);
        if o.precision() >= target && o.correct > best.correct {
            let below = scores.get(i + 1).copied().unwrap_or(s - 0.02);
            best = Outcome {
                threshold: (s + below) / 2.0,
                ..o
            };
        }
    }
    best
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let django = args
        .iter()
        .position(|a| a == "--django")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("vendor/bench/Django-5.1.4"));
    if !django.join("docs/topics").is_dir() {
        return Err(format!(
            "no Django 5.1.4 docs at {}; run scripts/bench-topics.sh (it fetches the sdist from PyPI)",
            django.display()
        ));
    }
    let django = django.canonicalize().map_err(e)?;
    let data_dir = root.join("benches/data/topics-django");
    let work = root.join("target/eval-data/topics");
    std::fs::create_dir_all(&work).map_err(e)?;
    std::fs::write(
        work.join("registry.toml"),
        format!(
            "version = 1\n\n[[sources]]\nid = \"django\"\nkind = \"dir\"\nlocation = {:?}\nowner = \"django-docs\"\ntier = 1\nstatus = \"approved\"\ninclude = [\"docs/topics/**\", \"docs/howto/**\"]\n",
            django.display().to_string()
        ),
    )
    .map_err(e)?;
    let reg = Registry::load(&work.join("registry.toml")).map_err(e)?;
    let data = work.join("data");
    let model = benches::model_dir()?;
    let embedder = Arc::new(Embedder::load(&model, 2).map_err(e)?);
    {
        let indexer =
            Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default()).map_err(e)?;
        let clock = FixedClock(jiff::Timestamp::now());
        let pass = indexer
            .run_pass(&reg, &reg.policy(&clock), clock.now(), &mut |_, _, _| {})
            .map_err(e)?;
        let mut store = EmbeddedStore::open(&Indexer::vectors_dir(&data), embedder.model_id()).map_err(e)?;
        let t = Instant::now();
        let sync = indexer
            .sync_vectors(&mut store, &embedder, &mut |_, _| {})
            .map_err(e)?;
        eprintln!(
            "index: {} chunks; {} embedded, {} from cache in {:.0} s",
            pass.total_chunks,
            sync.embedded,
            sync.from_cache,
            t.elapsed().as_secs_f64()
        );
    }
    let store = EmbeddedStore::open_read(&Indexer::vectors_dir(&data), embedder.model_id())
        .map_err(e)?
        .ok_or("no vectors")?;
    // The packages are dated; their age is not what this measures.
    let mut r = Retriever::open(
        &data,
        Ok((embedder.clone(), Box::new(store) as Box<dyn VectorStore>)),
    )
    .map_err(e)?
    .with_topics(&data_dir, 1_000_000);
    if let Some(t) = r.topics()
        && !t.problems().is_empty()
    {
        return Err(format!("package problems: {:?}", t.problems()));
    }
    let queries = load_queries(&data_dir.join("queries.jsonl"))?;
    let dev: Vec<&Query> = queries.iter().filter(|q| q.dev).collect();
    let test: Vec<&Query> = queries.iter().filter(|q| !q.dev).collect();
    let caller = Caller::operator(&reg);

    // Every package must verify fresh against this Django, or the run
    // measures staleness instead of matching.
    r.topic_match = TopicMatch {
        dense_weight: 0.7,
        threshold: f32::MIN,
        lexical_threshold: f32::MIN,
    };
    for q in queries.iter().filter(|q| q.package.is_some()) {
        let a = r.query(&caller, &q.text, &opts(Mode::Hybrid, true)).map_err(e)?;
        if let Some(p) = &a.package
            && p.provenance.stale
        {
            return Err(format!(
                "package {} is stale: {:?}",
                p.provenance.package_id, p.provenance.stale_reasons
            ));
        }
    }

    println!(
        "labelled set: {} queries ({} dev, {} test); {} answerable, {} not",
        queries.len(),
        dev.len(),
        test.len(),
        queries.iter().filter(|q| q.package.is_some()).count(),
        queries.iter().filter(|q| q.package.is_none()).count()
    );
    println!("\ncalibration on dev (precision target 0.95):");
    println!(
        "{:<18} {:>9} {:>9} {:>8} {:>8}",
        "match", "threshold", "precision", "served", "correct"
    );
    let mut best: Option<(f32, Outcome)> = None;
    for w in [0.5f32, 0.6, 0.7, 0.8, 0.9, 1.0] {
        let p = picks(&mut r, &reg, &dev, Mode::Hybrid, w)?;
        let o = calibrate(&dev, &p, 0.95);
        println!(
            "{:<18} {:>9.3} {:>9.3} {:>8} {:>8}",
            format!("dense weight {w:.1}"),
            o.threshold,
            o.precision(),
            o.served,
            o.correct
        );
        if best.as_ref().is_none_or(|(_, b)| o.correct > b.correct) {
            best = Some((w, o));
        }
    }
    let (weight, chosen) = best.ok_or("no calibration")?;
    let p = picks(&mut r, &reg, &dev, Mode::Lexical, weight)?;
    let lex = calibrate(&dev, &p, 0.95);
    println!(
        "{:<18} {:>9.3} {:>9.3} {:>8} {:>8}",
        "terms only",
        lex.threshold,
        lex.precision(),
        lex.served,
        lex.correct
    );
    let calibrated = TopicMatch {
        dense_weight: weight,
        threshold: chosen.threshold,
        lexical_threshold: lex.threshold,
    };
    let default = TopicMatch::default();
    println!(
        "chosen: dense weight {:.1}, threshold {:.3}, terms-only threshold {:.3} (built-in default: {:.1} / {:.3} / {:.3})",
        calibrated.dense_weight,
        calibrated.threshold,
        calibrated.lexical_threshold,
        default.dense_weight,
        default.threshold,
        default.lexical_threshold
    );

    // Test half, with the built-in defaults (what ships), and with the
    // calibration of this run when it differs.
    let mut runs = vec![("built-in default", default)];
    if (calibrated.threshold - default.threshold).abs() > 1e-3
        || (calibrated.dense_weight - default.dense_weight).abs() > 1e-3
        || (calibrated.lexical_threshold - default.lexical_threshold).abs() > 1e-3
    {
        runs.push(("this calibration", calibrated));
    }
    for (name, m) in runs {
        println!("\ntest half, {name}:");
        for (mode, label) in [(Mode::Hybrid, "with model"), (Mode::Lexical, "terms only")] {
            r.topic_match = m;
            let mut served = 0;
            let mut correct = 0;
            let mut wrong_on_unanswerable = 0;
            let answerable = test.iter().filter(|q| q.package.is_some()).count();
            let unanswerable = test.len() - answerable;
            let mut t1_tokens = Vec::new();
            let mut t1_ms = Vec::new();
            let mut t2_tokens = Vec::new();
            let mut t2_ms = Vec::new();
            for q in &test {
                let a = r.query(&caller, &q.text, &opts(mode, true)).map_err(e)?;
                if let Some(p) = &a.package {
                    served += 1;
                    let id = p.provenance.package_id.clone();
                    if Some(&id) == q.package.as_ref() {
                        correct += 1;
                    }
                    if q.package.is_none() {
                        wrong_on_unanswerable += 1;
                    }
                    t1_tokens.push(a.tokens as f64);
                    t1_ms.push(a.took_ms);
                    // The same query answered by tier 2.
                    let b = r.query(&caller, &q.text, &opts(mode, false)).map_err(e)?;
                    t2_tokens.push(b.tokens as f64);
                    t2_ms.push(b.took_ms);
                }
            }
            t1_ms.sort_by(f64::total_cmp);
            t2_ms.sort_by(f64::total_cmp);
            let precision = if served == 0 {
                1.0
            } else {
                correct as f64 / served as f64
            };
            println!(
                "  {label}: precision {:.3} ({correct}/{served}); serves {:.1}% of all test queries; recall {:.3} ({correct}/{answerable}); wrong serves on unanswerable {wrong_on_unanswerable}/{unanswerable}",
                precision,
                100.0 * served as f64 / test.len() as f64,
                correct as f64 / answerable.max(1) as f64,
            );
            println!(
                "    per answer, same queries: tier 1 {:.0} tokens, p50 {:.1} ms, p99 {:.1} ms | tier 2 {:.0} tokens, p50 {:.1} ms, p99 {:.1} ms",
                mean(&t1_tokens),
                pct(&t1_ms, 50.0),
                pct(&t1_ms, 99.0),
                mean(&t2_tokens),
                pct(&t2_ms, 50.0),
                pct(&t2_ms, 99.0)
            );
        }
    }
    Ok(())
}
