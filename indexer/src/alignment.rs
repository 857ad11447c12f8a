//! Version alignment from what was ingested: a source's lockfiles and docs
//! are read back from the lexical index (their redacted text, with line
//! numbers intact), so alignment sees exactly what agents see and never
//! reads a file the policy did not let in.

use packages::drift::{Drift, doc_drift};
use packages::lockfile::{DependencyMap, is_lockfile, parse};
use serde::Serialize;

use crate::error::Result;
use crate::lexical::Lexical;
use crate::manifest::SourceManifest;

/// A file's indexed text, each chunk at its original lines.
pub fn indexed_text(lexical: &Lexical, source: &str, path: &str) -> Result<String> {
    let docs = lexical.docs_for_file(source, path)?;
    let total = docs.iter().map(|d| d.end_line as usize).max().unwrap_or(0);
    let mut lines = vec![String::new(); total];
    for d in docs {
        for (i, l) in d.content.lines().enumerate() {
            if let Some(slot) = lines.get_mut(d.start_line as usize - 1 + i) {
                *slot = l.to_string();
            }
        }
    }
    Ok(lines.join("\n"))
}

/// What the source's ingested lockfiles pin.
pub fn dependency_map(lexical: &Lexical, manifest: &SourceManifest) -> Result<DependencyMap> {
    let mut map = DependencyMap::default();
    for path in manifest.files.keys().filter(|p| is_lockfile(p)) {
        let text = indexed_text(lexical, &manifest.source, path)?;
        map.add(parse(path, &text), path);
    }
    Ok(map)
}

/// Whether a file is documentation whose version claims are checked.
pub fn is_doc(language: &str) -> bool {
    matches!(language, "markdown" | "rst" | "text")
}

/// A drifting claim, flattened for reports.
#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct DriftNote {
    pub file: String,
    pub line: usize,
    pub claim: String,
    pub dependency: String,
    pub claimed: String,
    /// `version (lockfile:line)` for each pin.
    pub pinned: Vec<String>,
}

impl From<&Drift> for DriftNote {
    fn from(d: &Drift) -> Self {
        DriftNote {
            file: d.claim.file.clone(),
            line: d.claim.line,
            claim: d.claim.text.clone(),
            dependency: d.claim.name.clone(),
            claimed: format!(
                "{}{}",
                if d.claim.op == "=" { "" } else { &d.claim.op },
                d.claim.version
            ),
            pinned: d
                .pinned
                .iter()
                .map(|p| format!("{} ({}:{})", p.version, p.file, p.line))
                .collect(),
        }
    }
}

/// Drift in every ingested doc of a source.
pub fn source_drift(lexical: &Lexical, manifest: &SourceManifest) -> Result<Vec<DriftNote>> {
    let deps = dependency_map(lexical, manifest)?;
    if deps.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (path, entry) in &manifest.files {
        if !is_doc(&entry.language) {
            continue;
        }
        let text = indexed_text(lexical, &manifest.source, path)?;
        out.extend(doc_drift(path, &text, &deps).iter().map(DriftNote::from));
    }
    Ok(out)
}

/// Drift in one chunk of text (line numbers offset to `first_line`).
pub fn chunk_drift(path: &str, text: &str, first_line: u32, deps: &DependencyMap) -> Vec<DriftNote> {
    doc_drift(path, text, deps)
        .iter()
        .map(|d| {
            let mut n = DriftNote::from(d);
            n.line += first_line as usize - 1;
            n
        })
        .collect()
}
