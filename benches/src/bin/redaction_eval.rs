//! Redaction quality on the shared secret corpora.
//!
//! ```sh
//! cargo run --release -p benches --bin redaction_eval [-- --eval-dir ../shared/eval/secrets] [--misses N]
//! cargo run --release -p benches --bin redaction_eval -- --tree DIR [--skip-tests] [--show N]
//! cargo run --release -p benches --bin redaction_eval -- --adversarial [--per-kind N] [--seed S] [--show N]
//! ```
//!
//! With `--adversarial`, generates the adversarial corpus (fresh random
//! values each run unless `--seed`) and prints recall per category and the
//! false-positive rate on its negatives (near misses and windows of the
//! tokio and Django sources when they are on the machine).
//!
//! With `--tree`, redacts every text file under DIR with the built-in rules
//! instead and prints findings per 1,000 lines (on real code, each is a false
//! positive unless it is a real secret), the first N findings and MB/s.
//!
//! Scores (as ../shared/eval/README.md defines them): recall = share of
//! positives whose secret is gone after redaction; false-positive rate =
//! share of negatives that changed. Prints figures for the built-in rules,
//! for gitleaks.toml loaded alone, and for both together, with per-rule misses.

use std::path::PathBuf;
use std::time::Instant;

use benches::secrets_eval::{Score, default_dir, load, scan_tree, score, score_against};
use indexer::redact::{Redactor, RuleSet};

fn report(name: &str, s: &Score, show: usize) {
    println!(
        "{name:<50} recall {:.4} ({} positives)  FPR {:.4} ({} negatives; {:.4} without contradictory labels)  {:.1} MB/s",
        s.recall, s.positives, s.fpr, s.negatives, s.fpr_consistent, s.mb_per_s
    );
    if let Some((changed, total)) = s.fpr_vs_reference {
        println!(
            "    FPR on negatives gitleaks.toml (full set) leaves unchanged: {changed}/{total} = {:.4}",
            changed as f64 / total.max(1) as f64
        );
    }
    if show > 0 {
        let mut misses: Vec<_> = s.misses.iter().collect();
        misses.sort_by(|a, b| b.1.cmp(a.1));
        for (group, n) in misses.iter().take(show) {
            println!("    miss  {n:>4}  {group}");
        }
        let mut fps: Vec<_> = s.false_positives.iter().collect();
        fps.sort_by(|a, b| b.1.cmp(a.1));
        for (group, n) in fps.iter().take(show) {
            println!("    fp    {n:>4}  {group}");
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = default_dir();
    let mut show = 15;
    let mut trees = Vec::new();
    let mut skip_tests = false;
    let mut adversarial = false;
    let mut per_kind = 10;
    let mut seed = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--eval-dir" => dir = PathBuf::from(args.next().expect("--eval-dir DIR")),
            "--misses" | "--show" => show = args.next().and_then(|n| n.parse().ok()).expect("--show N"),
            "--tree" => trees.push(PathBuf::from(args.next().expect("--tree DIR"))),
            "--skip-tests" => skip_tests = true,
            "--adversarial" => adversarial = true,
            "--per-kind" => per_kind = args.next().and_then(|n| n.parse().ok()).expect("--per-kind N"),
            "--seed" => seed = Some(args.next().and_then(|n| n.parse().ok()).expect("--seed S")),
            other => panic!("unknown argument {other:?}"),
        }
    }
    if adversarial {
        score_adversarial(per_kind, seed, show);
        return;
    }
    if !trees.is_empty() {
        scan_trees(&trees, skip_tests, show);
        return;
    }
    let gitleaks = load(&dir.join("gitleaks_examples.jsonl"), "rule_id");
    let detect = load(&dir.join("detect_secrets_examples.jsonl"), "source");
    let gitleaks_rules_text = std::fs::read_to_string(dir.join("gitleaks.toml")).expect("gitleaks.toml");

    let start = Instant::now();
    let builtin = RuleSet::builtin();
    println!(
        "built-in rules: {} (compiled in {:.0} ms)",
        builtin.len(),
        start.elapsed().as_secs_f64() * 1e3
    );
    let start = Instant::now();
    let imported = RuleSet::from_toml(&gitleaks_rules_text, "gitleaks.toml").expect("gitleaks.toml loads");
    println!(
        "gitleaks.toml rules: {} (compiled in {:.0} ms; {} path-only rules skipped)",
        imported.len(),
        start.elapsed().as_secs_f64() * 1e3,
        imported.skipped_path_only.len()
    );
    let key = [0u8; 32];
    // gitleaks' own measure: each negative against the rule it is a negative for.
    let (mut flagged, mut total) = (0, 0);
    for ex in gitleaks.iter().filter(|e| !e.positive) {
        total += 1;
        let one = Redactor::new(imported.subset(|id| id == ex.group), key);
        flagged += usize::from(one.redact(&ex.text, None).text != ex.text);
    }
    println!(
        "gitleaks.toml per-rule FPR (each negative against its own rule): {flagged}/{total} = {:.4}",
        flagged as f64 / total as f64
    );
    let only_builtin = std::env::var_os("ONLY_BUILTIN").is_some();
    let sets = [
        ("built-in", Redactor::new(builtin.clone(), key)),
        ("gitleaks.toml", Redactor::new(imported.clone(), key)),
        (
            "built-in + gitleaks.toml",
            Redactor::new(builtin.merged(imported), key),
        ),
    ];
    let reference = &sets[1].1;
    for (name, redactor) in sets.iter().take(if only_builtin { 1 } else { 3 }) {
        println!();
        report(
            &format!("{name} on gitleaks examples"),
            &score_against(redactor, &gitleaks, Some(reference)),
            show,
        );
        report(
            &format!("{name} on detect-secrets examples"),
            &score(redactor, &detect),
            show.min(8),
        );
    }
}

/// Findings of the built-in rules on real trees, and redaction speed.
fn scan_trees(trees: &[PathBuf], skip_tests: bool, show: usize) {
    let redactor = Redactor::new(RuleSet::builtin(), [0u8; 32]);
    // Test suites and their fixtures hold made-up credentials on purpose.
    let is_test = |rel: &str| {
        rel.split('/')
            .any(|seg| matches!(seg, "tests" | "test" | "testdata" | "fixtures" | "test_data"))
    };
    let skip = |rel: &str| skip_tests && is_test(rel);
    for tree in trees {
        let scan = scan_tree(&redactor, tree, &skip);
        println!(
            "{}: {} files, {} lines, {:.1} MB: {} findings = {:.4} per 1,000 lines; {:.1} MB/s",
            tree.display(),
            scan.files,
            scan.lines,
            scan.bytes as f64 / 1e6,
            scan.findings.len(),
            scan.per_1000_lines(),
            scan.mb_per_s()
        );
        for (path, line, rule, text) in scan.findings.iter().take(show) {
            let text: String = text.chars().take(100).collect();
            println!("    {rule:<28} {path}:{line}  {text}");
        }
    }
}

/// The adversarial corpus, scored with the built-in rules.
fn score_adversarial(per_kind: usize, seed: Option<u64>, show: usize) {
    use benches::secrets_eval::adversarial::{Rng, corpus, score};
    let mut rng = match seed {
        Some(s) => Rng::seeded(s),
        None => Rng::fresh(),
    };
    let seed = rng.next_u64();
    let mut rng = Rng::seeded(seed);
    let roots = real_code_roots();
    let roots: Vec<&std::path::Path> = roots.iter().map(PathBuf::as_path).collect();
    let cases = corpus(&mut rng, per_kind, &roots, 60);
    let redactor = Redactor::new(RuleSet::builtin(), [0u8; 32]);
    let (by, failed) = score(&redactor, &cases);
    let (mut pos, mut pos_ok, mut neg, mut neg_bad) = (0, 0, 0, 0);
    println!("adversarial corpus: {} cases (seed {seed})", cases.len());
    for (category, (ok, n)) in &by {
        if category.starts_with("negative") {
            neg += n;
            neg_bad += n - ok;
        } else {
            pos += n;
            pos_ok += ok;
        }
        println!("    {category:<45} {ok:>4}/{n:<4}");
    }
    println!(
        "recall {:.4} ({pos} positives)  FPR {:.4} ({neg} negatives)",
        pos_ok as f64 / pos.max(1) as f64,
        neg_bad as f64 / neg.max(1) as f64
    );
    for case in failed.iter().take(show) {
        let text: String = case.text.chars().take(300).collect();
        println!("FAILED {}: {text:?}", case.category);
    }
}

/// Real code for negatives: the Django tree under vendor/bench and tokio's
/// crate sources in the cargo registry, where present.
fn real_code_roots() -> Vec<PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut out = vec![root.join("vendor/bench/Django-5.1.4/django")];
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(registry) = home.map(|h| h.join("registry/src"))
        && let Ok(indexes) = std::fs::read_dir(registry)
    {
        for index in indexes.flatten() {
            if let Ok(crates) = std::fs::read_dir(index.path()) {
                out.extend(crates.flatten().map(|c| c.path()).filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("tokio-1."))
                }));
            }
        }
    }
    out.retain(|p| p.is_dir());
    out
}
