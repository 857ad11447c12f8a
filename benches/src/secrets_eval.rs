//! Scoring redaction against the shared secret corpora
//! (`../shared/eval/secrets`), used by the `redaction_eval` program and the
//! redaction quality test.

pub mod adversarial;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indexer::redact::Redactor;
use serde_json::Value;

/// `../shared/eval/secrets` from the workspace root, or `CTXPLANE_EVAL_DIR/secrets`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("CTXPLANE_EVAL_DIR") {
        Some(d) => PathBuf::from(d).join("secrets"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/eval/secrets"),
    }
}

#[derive(Debug)]
pub struct Example {
    pub group: String,
    pub positive: bool,
    pub text: String,
    pub secret: Option<String>,
}

pub fn load(path: &Path, group_key: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("jsonl line");
            Example {
                group: v[group_key].as_str().unwrap_or("?").to_string(),
                positive: v["label"] == "tp",
                text: v["text"].as_str().unwrap_or_default().to_string(),
                secret: v["secret"].as_str().map(String::from),
            }
        })
        .collect()
}

#[derive(Debug)]
pub struct Score {
    pub recall: f64,
    pub fpr: f64,
    /// FPR over negatives whose exact text the corpus does not also label positive.
    pub fpr_consistent: f64,
    /// (changed, total) over negatives the reference rule set leaves unchanged.
    pub fpr_vs_reference: Option<(usize, usize)>,
    pub positives: usize,
    pub negatives: usize,
    pub misses: BTreeMap<String, usize>,
    pub false_positives: BTreeMap<String, usize>,
    pub mb_per_s: f64,
}

pub fn score(redactor: &Redactor, examples: &[Example]) -> Score {
    score_against(redactor, examples, None)
}

/// With `reference`, also counts false positives only among negatives the
/// reference redactor leaves unchanged: like-for-like against another full
/// rule set run the same way.
pub fn score_against(redactor: &Redactor, examples: &[Example], reference: Option<&Redactor>) -> Score {
    let mut reference_clean = 0usize;
    let mut reference_clean_changed = 0usize;
    let positive_texts: std::collections::HashSet<&str> = examples
        .iter()
        .filter(|e| e.positive)
        .map(|e| e.text.as_str())
        .collect();
    let mut consistent_negatives = 0;
    let mut consistent_changed = 0;
    let mut caught = 0;
    let mut positives = 0;
    let mut changed = 0;
    let mut negatives = 0;
    let mut misses = BTreeMap::new();
    let mut false_positives = BTreeMap::new();
    let mut bytes = 0usize;
    let start = Instant::now();
    for ex in examples {
        bytes += ex.text.len();
        let out = redactor.redact(&ex.text, None).text;
        if ex.positive {
            positives += 1;
            let gone = match &ex.secret {
                Some(s) => !out.contains(s.as_str()),
                None => out != ex.text,
            };
            if gone {
                caught += 1;
            } else {
                if std::env::var_os("DUMP_MISS").is_some() {
                    println!("MISS {}: {:?}", ex.group, &ex.text[..ex.text.len().min(160)]);
                }
                *misses.entry(ex.group.clone()).or_insert(0) += 1;
            }
        } else {
            negatives += 1;
            let consistent = !positive_texts.contains(ex.text.as_str());
            consistent_negatives += usize::from(consistent);
            let clean = reference.is_some_and(|r| r.redact(&ex.text, None).text == ex.text);
            reference_clean += usize::from(clean);
            if out != ex.text {
                if std::env::var_os("DUMP_FP").is_some() && consistent {
                    println!(
                        "FP {}: {:?}\n   -> {:?}",
                        ex.group,
                        &ex.text[..ex.text.len().min(160)],
                        &out[..out.len().min(160)]
                    );
                }
                changed += 1;
                consistent_changed += usize::from(consistent);
                reference_clean_changed += usize::from(clean);
                *false_positives.entry(ex.group.clone()).or_insert(0) += 1;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Score {
        recall: caught as f64 / positives.max(1) as f64,
        fpr: changed as f64 / negatives.max(1) as f64,
        fpr_consistent: consistent_changed as f64 / consistent_negatives.max(1) as f64,
        fpr_vs_reference: reference.map(|_| (reference_clean_changed, reference_clean)),
        positives,
        negatives,
        misses,
        false_positives,
        mb_per_s: bytes as f64 / 1e6 / secs,
    }
}

/// Redaction over a real source tree: how often rules fire on ordinary code
/// (each finding there is a false positive unless it is a real secret) and
/// how fast text is redacted.
#[derive(Debug, Default)]
pub struct TreeScan {
    pub files: usize,
    pub lines: usize,
    pub bytes: usize,
    pub secs: f64,
    /// (path relative to the root, 1-based line, rule id, the redacted text).
    pub findings: Vec<(String, u32, String, String)>,
}

impl TreeScan {
    pub fn per_1000_lines(&self) -> f64 {
        self.findings.len() as f64 * 1000.0 / self.lines.max(1) as f64
    }

    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.secs.max(1e-9)
    }
}

/// Redacts every UTF-8 text file under `root` (skipping `.git` and paths
/// `skip` refuses) and collects the findings.
pub fn scan_tree(redactor: &Redactor, root: &Path, skip: &dyn Fn(&str) -> bool) -> TreeScan {
    let mut files = Vec::new();
    collect_files(root, root, &mut files);
    files.sort();
    let mut scan = TreeScan::default();
    for (rel, path) in files {
        if skip(&rel) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if bytes.contains(&0) {
            continue;
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let start = Instant::now();
        let out = redactor.redact(&text, Some(&rel));
        scan.secs += start.elapsed().as_secs_f64();
        scan.files += 1;
        scan.lines += text.lines().count();
        scan.bytes += text.len();
        for f in out.findings {
            let value = text.get(f.span.clone()).unwrap_or_default();
            scan.findings
                .push((rel.clone(), f.line, f.rule_id, value.to_string()));
        }
    }
    scan
}

pub(crate) fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() && e.file_name() != ".git" {
            collect_files(root, &path, out);
        } else if kind.is_file() {
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push((rel.to_string_lossy().replace('\\', "/"), path));
        }
    }
}
