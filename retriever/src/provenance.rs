//! The provenance tag every result carries: where the text came from (source,
//! owner, path, lines, symbol, commit, content hash), when and under which
//! decision it was ingested, what was redacted, whether it is still fresh,
//! and which tier of the retriever served it.

use jiff::Timestamp;
use registry::Registry;
use serde::Serialize;

use crate::Retriever;
use indexer::lexical::ChunkDoc;

#[derive(Clone, Debug, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Freshness {
    /// `fresh`; `modified_on_disk` or `deleted_on_disk` (the index is behind);
    /// `superseded` (the file was re-indexed and this chunk is going);
    /// `stale` (unchanged for longer than `max_age_days`); `unknown`.
    pub status: String,
    /// Since when the index has held this file's content.
    pub content_since: Option<Timestamp>,
    pub max_age_days: Option<u32>,
    pub checked_at: Timestamp,
}

/// A reference to lines of a file at a version, to paste beside what was
/// taken from them: `source:path#Lx-Ly@<commit>` for a git source, else
/// `@b3:<file hash>` (both shortened to 12 hex digits).
pub fn citation(
    source: &str,
    path: &str,
    start: u32,
    end: u32,
    commit: Option<&str>,
    file_hash: &str,
) -> String {
    let at = match commit {
        Some(c) if !c.is_empty() => c.chars().take(12).collect::<String>(),
        _ => format!("b3:{}", file_hash.chars().take(12).collect::<String>()),
    };
    format!("{source}:{path}#L{start}-L{end}@{at}")
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Provenance {
    pub result_id: String,
    /// `source:path#Lx-Ly@commit-or-hash`, to cite this result by.
    pub citation: String,
    pub source: String,
    pub owner: Option<String>,
    pub tier: u8,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub symbol: Option<String>,
    pub kind: String,
    pub language: String,
    /// HEAD of a git source when this content was ingested.
    pub commit: Option<String>,
    /// blake3 of the chunk's (redacted) text.
    pub content_hash: String,
    /// blake3 of the file as read.
    pub file_hash: String,
    pub ingested_at: Option<Timestamp>,
    pub freshness: Freshness,
    /// Secrets redacted inside this chunk, and in its whole file.
    pub redactions: u32,
    pub file_redactions: Option<u32>,
    /// The policy decision that let the file in.
    pub decision_id: Option<String>,
    /// The registry version the query was scoped by.
    pub registry_version: String,
    /// `hybrid`, `lexical`, `dense` (tier 2) or `package` (tier 1).
    pub served_by: String,
    pub lexical_rank: Option<usize>,
    pub dense_rank: Option<usize>,
    /// Dependency versions this text claims that the source's lockfiles
    /// contradict (docs only).
    pub drift: Vec<indexer::alignment::DriftNote>,
    /// The dependencies this result refers to, resolved against the
    /// source's lockfiles: for code, the imports it uses (`tokio 1.41.1
    /// (Cargo.lock:275)`); for docs, every version it claims and whether
    /// the pins match it.
    pub versions: Vec<indexer::alignment::VersionRef>,
}

static EMPTY: std::sync::LazyLock<packages::lockfile::DependencyMap> =
    std::sync::LazyLock::new(Default::default);

impl Retriever {
    /// The provenance of a chunk looked up by id (not served by a query).
    pub fn provenance_of(&self, registry: &Registry, doc: &ChunkDoc) -> Provenance {
        self.provenance(registry, doc, "lookup", None, None)
    }

    pub(crate) fn provenance(
        &self,
        registry: &Registry,
        doc: &ChunkDoc,
        served_by: &str,
        lexical_rank: Option<usize>,
        dense_rank: Option<usize>,
    ) -> Provenance {
        let source = registry.source_named(&doc.source).cloned();
        let manifest = self.manifest(&doc.source);
        let entry = manifest.as_ref().and_then(|m| m.files.get(&doc.path));
        let now = self.now();
        let max_age_days = source.as_ref().map(|s| registry.freshness.max_age_days(s));
        let status = match (&source, entry) {
            (Some(s), Some(e)) => {
                let on_disk = std::fs::symlink_metadata(s.root(&registry.base_dir).join(&doc.path));
                if !e.chunk_ids.iter().any(|c| c == &doc.chunk_id) {
                    "superseded"
                } else if !self.checks_disk() {
                    // A replica has no checkout: the indexer's watcher
                    // keeps the index in step with the files.
                    if now.duration_since(e.content_since()) > registry.freshness.max_age(s) {
                        "stale"
                    } else {
                        "fresh"
                    }
                } else {
                    match on_disk {
                        Err(_) => "deleted_on_disk",
                        Ok(m) => {
                            let mtime = m
                                .modified()
                                .ok()
                                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                                .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
                            if m.len() != e.size || mtime != e.mtime_ns {
                                "modified_on_disk"
                            } else if now.duration_since(e.content_since()) > registry.freshness.max_age(s) {
                                "stale"
                            } else {
                                "fresh"
                            }
                        }
                    }
                }
            }
            _ => "unknown",
        };
        // The pins only for code and docs, from the manifest read above.
        let reads_imports = indexer::chunk::imports::reads_imports(&doc.language);
        let is_doc = indexer::alignment::is_doc(&doc.language);
        let deps = (reads_imports || is_doc)
            .then(|| manifest.clone().and_then(|m| self.dependencies_of(m)))
            .flatten();
        let versions = if reads_imports {
            let all = self.file_imports(doc);
            let used = indexer::chunk::imports::used_by(&all, &doc.content, doc.start_line, doc.end_line);
            indexer::alignment::import_versions(&doc.language, &used, deps.as_deref().unwrap_or(&EMPTY))
        } else if is_doc {
            deps.as_deref()
                .map(|d| indexer::alignment::claim_versions(&doc.path, &doc.content, doc.start_line, d))
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        Provenance {
            versions,
            result_id: doc.chunk_id.clone(),
            citation: citation(
                &doc.source,
                &doc.path,
                doc.start_line,
                doc.end_line,
                doc.commit.as_deref(),
                &doc.file_hash,
            ),
            source: doc.source.clone(),
            owner: source.as_ref().map(|s| s.owner.clone()),
            tier: doc.tier,
            path: doc.path.clone(),
            start_line: doc.start_line,
            end_line: doc.end_line,
            symbol: doc.symbol.clone(),
            kind: doc.kind.clone(),
            language: doc.language.clone(),
            commit: doc.commit.clone(),
            content_hash: doc.chunk_hash.clone(),
            file_hash: doc.file_hash.clone(),
            ingested_at: entry
                .map(|e| e.ingested_at)
                .or_else(|| Timestamp::from_second(doc.ingested_at).ok()),
            freshness: Freshness {
                status: status.to_string(),
                content_since: entry.map(|e| e.content_since()),
                max_age_days,
                checked_at: now,
            },
            redactions: doc.content.matches("[REDACTED:").count() as u32,
            file_redactions: entry.map(|e| e.redactions),
            decision_id: entry.map(|e| e.decision_id.clone()),
            registry_version: registry.version.to_hex(),
            served_by: served_by.to_string(),
            lexical_rank,
            dense_rank,
            drift: if is_doc {
                deps.as_deref()
                    .map(|deps| {
                        indexer::alignment::chunk_drift(&doc.path, &doc.content, doc.start_line, deps)
                    })
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }
}
