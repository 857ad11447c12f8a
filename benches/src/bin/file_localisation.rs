//! File localisation from history: which files does a change touch?
//!
//! For each repository in `benches/data/file-localisation/repos.txt`
//! (pinned commits, fetched by `scripts/fetch-bench-repos.sh` into
//! `target/bench-repos/`), the most recent first-parent, non-merge commits
//! whose message (title + body) has at least 80 characters and that modify
//! one to five non-test source files become queries: the message is the
//! query, the non-test source files it modified are the gold (not gold:
//! what the retriever's default answer rules class as tests, vendored or
//! generated, and code under `docs/`, `example(s)/` or `bench(es)/`).
//! Each query is asked against the repository as it was at the commit's
//! parent (the parent's tree extracted with `git archive`, indexed
//! incrementally by the real indexer, one data dir per repository,
//! commits oldest first).
//! Queries are split dev/test by a hash of the commit id.
//!
//! Files are ranked for ctxplane two ways: by their best chunk among the
//! 100 chunks an answer returns (rows `lexical`, `dense`, `hybrid`), and
//! as its file-level answer ranks them (`group_by = "file"`, 20 files;
//! rows ending `/f`); dense and hybrid with `--dense`, hybrid also with
//! the weighted reciprocal-rank fusion it used before calibrated scores
//! (rows ending `-rrf`). For comparison, a
//! plain file-level BM25 implemented here (whole files, path tokens counted
//! three times). Reported per repository and split: file Acc@1/5/10, MRR
//! and nDCG@10.
//!
//! ```text
//! bash scripts/fetch-bench-repos.sh
//! cargo run --release -p benches --bin file_localisation -- [--split dev|test|all] [--per-repo N]
//!     [--dense REPO,REPO|all] [--repos REPO,REPO] [--json FILE] [--dump FILE] [--list]
//! ```
//!
//! `--list` prints the chosen queries (repository, commit, split, gold,
//! title) as JSON lines and stops, without indexing anything.
//!
//! `--dump FILE` writes one JSON line per query with vectors: its gold,
//! its shape, the fusion weights the retriever chose, and both engines'
//! raw candidate lists (score, path, language, chunk id), for studying
//! fusion away from the indexing.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use benches::ranking::{hit_at, ndcg_at, reciprocal_rank};
use indexer::embed::Embedder;
use indexer::vector::VectorStore;
use indexer::vector::embedded::EmbeddedStore;
use indexer::{Indexer, PassOptions};
use registry::{Clock, FixedClock, Registry};
use retriever::{Caller, GroupBy, Mode, Options, Retriever};

type Res<T> = Result<T, String>;

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

fn main() {
    if let Err(err) = run() {
        eprintln!("file_localisation: {err}");
        std::process::exit(1);
    }
}

/// Shortest query (title + body, whitespace collapsed), in characters.
const MIN_MESSAGE_CHARS: usize = 80;
/// Most gold files a query may have.
const MAX_GOLD: usize = 5;
/// Chunks asked of ctxplane per query.
const CHUNKS: usize = 100;
/// Files asked of ctxplane per query in its file-level answer.
const FILES: usize = 20;

struct Repo {
    name: String,
    commit: String,
    git_dir: PathBuf,
}

struct Query {
    commit: String,
    parent: String,
    time: i64,
    text: String,
    gold: Vec<String>,
    test_split: bool,
}

impl Query {
    /// Whether the query belongs to `split` (`dev`, `test` or `all`).
    fn in_split(&self, split: &str) -> bool {
        split == "all" || self.test_split == (split == "test")
    }
}

/// Source files by extension (what a fix changes), tests excluded.
const SOURCE_EXTENSIONS: &[&str] = &["py", "rs", "js", "mjs", "cjs", "ts", "tsx", "jsx", "go"];

/// Directories of documentation sites, examples and benchmarks: code
/// there (a Sphinx `conf.py`, an example app) is not the product's source.
/// `doc/` is not among them: the only code under a `doc/` in the pinned
/// repositories is cobra's `doc` package (its man page and Markdown
/// generators), which is part of the library.
const NON_SOURCE_DIRS: &[&str] = &["docs", "examples", "example", "benches", "bench"];

/// Paths that are not gold: whatever the retriever's default answer rules
/// class as tests, vendored, generated or lockfiles
/// (`indexer::chunk::answer_class`: one definition of a test path for both
/// sides), and the directories of [`NON_SOURCE_DIRS`].
fn is_non_source(path: &str) -> bool {
    indexer::chunk::answer_class(path, indexer::chunk::language_of(path)).is_some()
        || path
            .to_ascii_lowercase()
            .split('/')
            .rev()
            .skip(1)
            .any(|d| NON_SOURCE_DIRS.contains(&d))
}

fn is_gold_candidate(path: &str) -> bool {
    path.rsplit_once('.')
        .is_some_and(|(_, ext)| SOURCE_EXTENSIONS.contains(&ext))
        && !is_non_source(path)
}

fn git(dir: &Path, args: &[&str]) -> Res<String> {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|err| format!("git: {err}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether the commit is a dependency bump, release or merge by its title.
fn is_bookkeeping(title: &str) -> bool {
    let t = title.to_ascii_lowercase();
    [
        "bump ",
        "merge ",
        "release ",
        "build(deps",
        "chore(deps",
        "chore(release",
        "update dependency",
    ]
    .iter()
    .any(|p| t.starts_with(p))
}

fn queries(repo: &Repo, per_repo: usize) -> Res<Vec<Query>> {
    let log = git(
        &repo.git_dir,
        &[
            "log",
            "--no-merges",
            "--first-parent",
            "--no-renames",
            "--format=%x00%H %P %ct%x01%B%x01",
            "--name-status",
            &repo.commit,
        ],
    )?;
    let mut out = Vec::new();
    for record in log.split('\0').skip(1) {
        let mut fields = record.split('\u{1}');
        let (Some(head), Some(message), Some(changes)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let head: Vec<&str> = head.split_whitespace().collect();
        let [commit, parent, time] = head[..] else {
            continue;
        };
        let text = message.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.chars().count() < MIN_MESSAGE_CHARS || is_bookkeeping(&text) {
            continue;
        }
        // Gold: modified source files (they exist at the parent); a commit
        // that only adds or deletes source files is left out.
        let mut gold = Vec::new();
        let mut other_source = false;
        for line in changes.lines().filter(|l| !l.trim().is_empty()) {
            let Some((status, path)) = line.split_once('\t') else {
                continue;
            };
            if !is_gold_candidate(path) {
                continue;
            }
            if status == "M" {
                gold.push(path.to_string());
            } else {
                other_source = true;
            }
        }
        if gold.is_empty() || gold.len() > MAX_GOLD || other_source {
            continue;
        }
        let test_split = blake3::hash(commit.as_bytes()).as_bytes()[0] & 1 == 1;
        out.push(Query {
            commit: commit.to_string(),
            parent: parent.to_string(),
            time: time.parse().unwrap_or(0),
            text: message.trim().to_string(),
            gold,
            test_split,
        });
        if out.len() >= per_repo {
            break;
        }
    }
    // Oldest first: the index moves forward through history.
    out.sort_by_key(|q| q.time);
    Ok(out)
}

/// Replaces `dest` with the tree of `commit`.
fn materialise(repo: &Repo, commit: &str, dest: &Path) -> Res<()> {
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(e)?;
    }
    std::fs::create_dir_all(dest).map_err(e)?;
    let archive = Command::new("git")
        .arg("--git-dir")
        .arg(&repo.git_dir)
        .args(["archive", "--format=tar", commit])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(e)?;
    let status = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(archive.stdout.ok_or("no archive output")?)
        .status()
        .map_err(e)?;
    if !status.success() {
        return Err(format!("extracting {commit} failed"));
    }
    Ok(())
}

/// A plain file-level BM25: whole files, words split on anything that is
/// not a letter or digit, lower-cased, path words counted three times,
/// English stop words dropped; k1 = 1.2, b = 0.75.
/// A file's term frequencies (path words counted three times) and length.
type FileTerms = Arc<(HashMap<String, u32>, u32)>;

#[derive(Default)]
struct FileBm25 {
    /// (path, file hash) -> term frequencies and length.
    cache: HashMap<(String, String), FileTerms>,
}

const STOP: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no",
    "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to",
    "was", "will", "with",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && w.len() <= 40)
        .map(str::to_lowercase)
        .filter(|w| !STOP.contains(&w.as_str()))
}

impl FileBm25 {
    fn rank(&mut self, files: &[(String, String)], root: &Path, query: &str) -> Vec<String> {
        let docs: Vec<(String, FileTerms)> = files
            .iter()
            .map(|(path, hash)| {
                let entry = self
                    .cache
                    .entry((path.clone(), hash.clone()))
                    .or_insert_with(|| {
                        let text = std::fs::read_to_string(root.join(path)).unwrap_or_default();
                        let mut tf: HashMap<String, u32> = HashMap::new();
                        let mut len = 0;
                        for w in words(&text) {
                            *tf.entry(w).or_default() += 1;
                            len += 1;
                        }
                        for w in words(path) {
                            *tf.entry(w).or_default() += 3;
                            len += 3;
                        }
                        Arc::new((tf, len))
                    })
                    .clone();
                (path.clone(), entry)
            })
            .collect();
        let n = docs.len() as f64;
        let avg = docs.iter().map(|(_, d)| f64::from(d.1)).sum::<f64>() / n.max(1.0);
        let mut q: HashMap<String, u32> = HashMap::new();
        for w in words(query) {
            *q.entry(w).or_default() += 1;
        }
        let df: HashMap<&String, f64> = q
            .keys()
            .map(|t| (t, docs.iter().filter(|(_, o)| o.0.contains_key(t)).count() as f64))
            .collect();
        let mut scored: Vec<(f64, &String)> = docs
            .iter()
            .map(|(path, d)| {
                let mut s = 0.0;
                for (term, qtf) in &q {
                    let Some(tf) = d.0.get(term) else { continue };
                    let df = df[term];
                    let idf = ((n - df + 0.5) / (df + 0.5) + 1.0).ln();
                    let tf = f64::from(*tf);
                    s += f64::from(*qtf) * idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * f64::from(d.1) / avg));
                }
                (s, path)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        scored.into_iter().map(|(_, p)| p.clone()).collect()
    }
}

/// One query's raw evidence for `--dump`: what the retriever fuses.
fn dump_query(
    out: &mut impl std::io::Write,
    r: &Retriever,
    reg: &Registry,
    repo: &Repo,
    q: &Query,
) -> Res<()> {
    let shape = retriever::Shape::of(&q.text);
    // The lists the file-level hybrid answer fuses.
    let lists = r
        .engine_lists(&Caller::operator(reg), &q.text, &options(Mode::Hybrid, true))
        .map_err(e)?;
    let row = |score: f32, d: &indexer::lexical::ChunkDoc| {
        serde_json::json!([
            score,
            d.path,
            d.language,
            d.chunk_id,
            indexer::chunk::answer_class(&d.path, &d.language)
        ])
    };
    let (lexical, dense, w) = (&lists.lexical, &lists.dense, lists.weights);
    let line = serde_json::json!({
        "repo": repo.name, "commit": q.commit, "test": q.test_split, "gold": q.gold,
        "words": shape.words, "code_share": shape.code_share, "code_evidence": shape.has_code_evidence(),
        "w_lexical": w.lexical, "w_dense": w.dense,
        "lexical": lexical.iter().map(|(s, d)| row(*s, d)).collect::<Vec<_>>(),
        "dense": dense.iter().map(|(s, d)| row(*s, d)).collect::<Vec<_>>(),
        "lexical_f": ctxplane_files(r, reg, &q.text, Mode::Lexical, true)?,
        "hybrid_f": ctxplane_files(r, reg, &q.text, Mode::Hybrid, true)?,
    });
    writeln!(out, "{line}").map_err(e)
}

/// What the benchmark asks ctxplane: [`CHUNKS`] chunks, or (`by_file`)
/// [`FILES`] files; no budget, no topic packages.
fn options(mode: Mode, by_file: bool) -> Options {
    Options {
        mode,
        limit: if by_file { FILES } else { CHUNKS },
        max_tokens: 10_000_000,
        packages: false,
        group_by: if by_file { GroupBy::File } else { GroupBy::Chunk },
    }
}

/// Files in the order of their best chunk among [`CHUNKS`] chunks, or
/// (`by_file`) as the file-level answer ranks them (`group_by = "file"`,
/// [`FILES`] files).
fn ctxplane_files(r: &Retriever, reg: &Registry, q: &str, mode: Mode, by_file: bool) -> Res<Vec<String>> {
    let a = r
        .query(&Caller::operator(reg), q, &options(mode, by_file))
        .map_err(e)?;
    if by_file {
        return Ok(a.files.iter().map(|f| f.path.clone()).collect());
    }
    let mut files: Vec<String> = Vec::new();
    for h in &a.results {
        if !files.contains(&h.provenance.path) {
            files.push(h.provenance.path.clone());
        }
    }
    Ok(files)
}

#[derive(Default, Clone)]
struct Tally {
    n: usize,
    acc1: f64,
    acc5: f64,
    acc10: f64,
    mrr: f64,
    ndcg10: f64,
}

impl Tally {
    fn add(&mut self, ranked: &[String], gold: &[String]) {
        let rel: HashMap<String, u32> = gold.iter().map(|g| (g.clone(), 1)).collect();
        self.n += 1;
        self.acc1 += f64::from(u8::from(hit_at(ranked, &rel, 1)));
        self.acc5 += f64::from(u8::from(hit_at(ranked, &rel, 5)));
        self.acc10 += f64::from(u8::from(hit_at(ranked, &rel, 10)));
        self.mrr += reciprocal_rank(ranked, &rel);
        self.ndcg10 += ndcg_at(ranked, &rel, 10);
    }

    fn merge(&mut self, o: &Tally) {
        self.n += o.n;
        self.acc1 += o.acc1;
        self.acc5 += o.acc5;
        self.acc10 += o.acc10;
        self.mrr += o.mrr;
        self.ndcg10 += o.ndcg10;
    }

    fn row(&self) -> String {
        let k = self.n.max(1) as f64;
        format!(
            "{:>4} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>7.3}",
            self.n,
            self.acc1 / k,
            self.acc5 / k,
            self.acc10 / k,
            self.mrr / k,
            self.ndcg10 / k
        )
    }
}

fn arg<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn repos(root: &Path, only: Option<&str>) -> Res<Vec<Repo>> {
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/file-localisation/repos.txt");
    let text = std::fs::read_to_string(&list).map_err(|err| format!("{}: {err}", list.display()))?;
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut f = line.split_whitespace();
        let (Some(name), Some(commit)) = (f.next(), f.next()) else {
            return Err(format!("{}: bad line {line:?}", list.display()));
        };
        let short = name.rsplit('/').next().unwrap_or(name);
        if only.is_some_and(|o| !o.split(',').any(|x| x == short)) {
            continue;
        }
        let git_dir = root.join(format!("{}.git", name.replace('/', "+")));
        if !git_dir.exists() {
            return Err(format!(
                "{} is missing: run scripts/fetch-bench-repos.sh first",
                git_dir.display()
            ));
        }
        out.push(Repo {
            name: short.to_string(),
            commit: commit.to_string(),
            git_dir,
        });
    }
    Ok(out)
}

fn run() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let split = arg(&args, "--split").unwrap_or("test");
    if !matches!(split, "dev" | "test" | "all") {
        return Err("--split is dev, test or all".into());
    }
    let per_repo: usize = arg(&args, "--per-repo")
        .map_or(Ok(70), str::parse)
        .map_err(|_| "--per-repo needs a number")?;
    let dense_for = arg(&args, "--dense").unwrap_or("");
    let verbose = args.iter().any(|a| a == "--verbose");
    // --long-weights W,W: hybrid file-level rows with these weights of BM25
    // for long or code-naming queries (`Fusion::lexical_weight_named`).
    let long_weights: Vec<f32> = arg(&args, "--long-weights")
        .map(|l| l.split(',').map(str::parse).collect::<Result<_, _>>())
        .transpose()
        .map_err(|_| "--long-weights takes numbers separated by commas")?
        .unwrap_or_default();
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let mirrors = std::env::var_os("BENCH_REPOS").map_or_else(|| target.join("bench-repos"), PathBuf::from);
    let work = target.join("eval-data/file-localisation");
    let repos = repos(&mirrors, arg(&args, "--repos"))?;
    if args.iter().any(|a| a == "--list") {
        // The queries alone (no indexing): to inspect or diff the data set.
        for repo in &repos {
            for q in queries(repo, per_repo)?.iter().filter(|q| q.in_split(split)) {
                let line = serde_json::json!({
                    "repo": repo.name, "commit": q.commit, "parent": q.parent,
                    "split": if q.test_split { "test" } else { "dev" },
                    "gold": q.gold, "title": q.text.lines().next().unwrap_or(""),
                });
                println!("{line}");
            }
        }
        return Ok(());
    }
    let mut dump = match arg(&args, "--dump") {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(e)?)),
        None => None,
    };
    let embedder = if dense_for.is_empty() {
        None
    } else {
        let model = benches::model_dir()?;
        Some(Arc::new(Embedder::load(&model, 2).map_err(e)?))
    };
    let mut table: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut total_queries = 0;
    for repo in &repos {
        let all = queries(repo, per_repo)?;
        let chosen: Vec<&Query> = all.iter().filter(|q| q.in_split(split)).collect();
        total_queries += chosen.len();
        let dense = embedder
            .as_ref()
            .filter(|_| dense_for == "all" || dense_for.split(',').any(|d| d == repo.name));
        eprintln!(
            "{}: {} queries ({} in split {split}){}",
            repo.name,
            all.len(),
            chosen.len(),
            if dense.is_some() { ", with vectors" } else { "" }
        );
        let dir = work.join(&repo.name);
        std::fs::create_dir_all(&dir).map_err(e)?;
        let reg_path = dir.join("registry.toml");
        std::fs::write(
            &reg_path,
            format!(
                "version = 1\n\n[[sources]]\nid = \"{}\"\nkind = \"dir\"\nlocation = \"checkout\"\nowner = \"bench\"\ntier = 1\nstatus = \"approved\"\n",
                repo.name
            ),
        )
        .map_err(e)?;
        let reg = Registry::load(&reg_path).map_err(e)?;
        let data = dir.join("data");
        let checkout = dir.join("checkout");
        let indexer =
            Indexer::open(&data, indexer::redact::RuleSet::builtin(), PassOptions::default()).map_err(e)?;
        let mut bm25 = FileBm25::default();
        let mut retriever: Option<Retriever> = None;
        for q in &chosen {
            materialise(repo, &q.parent, &checkout)?;
            let clock = FixedClock(jiff::Timestamp::now());
            indexer
                .run_pass(&reg, &reg.policy(&clock), clock.now(), &mut |_, _, _| {})
                .map_err(e)?;
            if let Some(embedder) = dense {
                let mut store =
                    EmbeddedStore::open(&Indexer::vectors_dir(&data), embedder.model_id()).map_err(e)?;
                indexer
                    .sync_vectors(&mut store, embedder, &mut |_, _| {})
                    .map_err(e)?;
            }
            let mut r = match retriever.take() {
                Some(r) => {
                    r.refresh().map_err(e)?;
                    r
                }
                None => {
                    let vectors = match dense {
                        Some(embedder) => {
                            EmbeddedStore::open_read(&Indexer::vectors_dir(&data), embedder.model_id())
                                .map_err(e)?
                                .map(|s| (embedder.clone(), Box::new(s) as Box<dyn VectorStore>))
                                .ok_or_else(|| "no vectors".to_string())
                        }
                        None => Err("lexical only".to_string()),
                    };
                    Retriever::open(&data, vectors).map_err(e)?
                }
            };
            let manifest = indexer.manifests().load(&repo.name).map_err(e)?;
            let files: Vec<(String, String)> = manifest
                .files
                .iter()
                .map(|(p, f)| (p.clone(), f.hash.clone()))
                .collect();
            table
                .entry((repo.name.clone(), "file-bm25".to_string()))
                .or_default()
                .add(&bm25.rank(&files, &checkout, &q.text), &q.gold);
            let modes: &[(Mode, bool, &'static str)] = if dense.is_some() {
                &[
                    (Mode::Lexical, false, "lexical"),
                    (Mode::Dense, false, "dense"),
                    (Mode::Hybrid, false, "hybrid"),
                    (Mode::Lexical, true, "lexical/f"),
                    (Mode::Dense, true, "dense/f"),
                    (Mode::Hybrid, true, "hybrid/f"),
                ]
            } else {
                &[
                    (Mode::Lexical, false, "lexical"),
                    (Mode::Lexical, true, "lexical/f"),
                ]
            };
            for (mode, by_file, name) in modes {
                let ranked = ctxplane_files(&r, &reg, &q.text, *mode, *by_file)?;
                table
                    .entry((repo.name.clone(), (*name).to_string()))
                    .or_default()
                    .add(&ranked, &q.gold);
            }
            if let Some(out) = dump.as_mut()
                && dense.is_some()
            {
                dump_query(out, &r, &reg, repo, q)?;
            }
            if dense.is_some() {
                // Before calibrated scores: weighted reciprocal-rank fusion.
                r.fusion = retriever::Fusion::rrf();
                for (by_file, name) in [(false, "hybrid-rrf"), (true, "hybrid/f-rrf")] {
                    let ranked = ctxplane_files(&r, &reg, &q.text, Mode::Hybrid, by_file)?;
                    table
                        .entry((repo.name.clone(), name.to_string()))
                        .or_default()
                        .add(&ranked, &q.gold);
                }
                r.fusion = retriever::Fusion::default();
                for w in &long_weights {
                    r.fusion.lexical_weight_named = *w;
                    let ranked = ctxplane_files(&r, &reg, &q.text, Mode::Hybrid, true)?;
                    table
                        .entry((repo.name.clone(), format!("hybrid/f@{w}")))
                        .or_default()
                        .add(&ranked, &q.gold);
                }
                r.fusion = retriever::Fusion::default();
            }
            if verbose {
                let lexical = ctxplane_files(&r, &reg, &q.text, Mode::Lexical, false)?;
                eprintln!(
                    "  {} gold {:?} lexical top 5 {:?}",
                    &q.commit[..12],
                    q.gold,
                    &lexical[..lexical.len().min(5)]
                );
            }
            retriever = Some(r);
        }
    }
    println!(
        "\nfile localisation, split {split}, {total_queries} queries ({} repositories)\n",
        repos.len()
    );
    println!(
        "{:<12} {:<10} {:>4} {:>6} {:>6} {:>6} {:>6} {:>7}",
        "repository", "ranker", "n", "Acc@1", "Acc@5", "Acc@10", "MRR", "nDCG@10"
    );
    let mut overall: BTreeMap<&str, Tally> = BTreeMap::new();
    for ((repo, ranker), t) in &table {
        println!("{:<12} {:<10} {}", repo, ranker, t.row());
        overall.entry(ranker.as_str()).or_default().merge(t);
    }
    for (ranker, t) in &overall {
        println!("{:<12} {:<10} {}", "(all)", ranker, t.row());
    }
    if let Some(path) = arg(&args, "--json") {
        let rows: Vec<serde_json::Value> = table
            .iter()
            .map(|((repo, ranker), t)| {
                let k = t.n.max(1) as f64;
                serde_json::json!({
                    "repository": repo, "ranker": ranker, "split": split, "n": t.n,
                    "acc1": t.acc1 / k, "acc5": t.acc5 / k, "acc10": t.acc10 / k,
                    "mrr": t.mrr / k, "ndcg10": t.ndcg10 / k,
                })
            })
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&rows).map_err(e)?).map_err(e)?;
    }
    Ok(())
}
