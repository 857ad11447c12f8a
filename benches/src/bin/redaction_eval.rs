//! Redaction quality on the shared secret corpora.
//!
//! ```sh
//! cargo run --release -p benches --bin redaction_eval [-- --eval-dir ../shared/eval/secrets] [--misses N]
//! cargo run --release -p benches --bin redaction_eval -- --tree DIR [--skip-tests] [--show N]
//! ```
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
    while let Some(a) = args.next() {
        match a.as_str() {
            "--eval-dir" => dir = PathBuf::from(args.next().expect("--eval-dir DIR")),
            "--misses" | "--show" => show = args.next().and_then(|n| n.parse().ok()).expect("--show N"),
            "--tree" => trees.push(PathBuf::from(args.next().expect("--tree DIR"))),
            "--skip-tests" => skip_tests = true,
            other => panic!("unknown argument {other:?}"),
        }
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
