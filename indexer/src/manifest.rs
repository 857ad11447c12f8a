//! Per-source manifests: what was ingested from each file, so unchanged
//! files cost nothing and changed or removed ones are found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SourceManifest {
    pub source: String,
    /// The chunker version and redaction rules the files were processed
    /// with; when it differs from the current pipeline every file is
    /// processed again.
    #[serde(default)]
    pub pipeline: String,
    pub files: BTreeMap<String, FileEntry>,
    /// Files left out for what they are (binary, too large, not UTF-8),
    /// remembered so an unchanged one is not read again.
    #[serde(default)]
    pub skipped: BTreeMap<String, SkippedEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEntry {
    pub size: u64,
    pub mtime_ns: i64,
    /// A [`crate::walk::Skip`] code.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// blake3 of the file's bytes as read.
    pub hash: String,
    pub size: u64,
    /// Modification time in Unix nanoseconds, for the cheap unchanged check.
    pub mtime_ns: i64,
    pub commit: Option<String>,
    pub ingested_at: Timestamp,
    pub language: String,
    pub chunk_ids: Vec<String>,
    pub redactions: u32,
    /// The policy decision that let this file in.
    pub decision_id: String,
    /// When this content (this hash) was first ingested; re-processing the
    /// same content keeps it. `None` in older manifests: use `ingested_at`.
    #[serde(default)]
    pub content_since: Option<Timestamp>,
}

impl FileEntry {
    /// Since when the index has held this exact content.
    pub fn content_since(&self) -> Timestamp {
        self.content_since.unwrap_or(self.ingested_at)
    }
}

/// A manifest's temp file ([`registry::fsutil::temp_name`] of
/// `<source>.json`) that a killed write left.
fn is_leftover(name: &str) -> bool {
    registry::fsutil::temp_target(name).is_some_and(|t| t.len() > ".json".len() && t.ends_with(".json"))
}

#[derive(Debug, Clone)]
pub struct Manifests {
    dir: PathBuf,
}

impl Manifests {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Manifests { dir: dir.into() }
    }

    /// The manifest file of `source`.
    pub fn path_of(&self, source: &str) -> PathBuf {
        self.path(source)
    }

    fn path(&self, source: &str) -> PathBuf {
        self.dir.join(format!("{source}.json"))
    }

    pub fn load(&self, source: &str) -> Result<SourceManifest> {
        let p = self.path(source);
        match std::fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| IndexError::Layout {
                path: p,
                message: format!("manifest is unreadable ({e}); delete it to re-index the source"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SourceManifest {
                source: source.to_string(),
                pipeline: String::new(),
                files: BTreeMap::new(),
                skipped: BTreeMap::new(),
            }),
            Err(e) => Err(IndexError::io(p, e)),
        }
    }

    pub fn store(&self, m: &SourceManifest) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| IndexError::io(&self.dir, e))?;
        let bytes = serde_json::to_vec_pretty(m).map_err(|e| IndexError::Layout {
            path: self.path(&m.source),
            message: e.to_string(),
        })?;
        registry::fsutil::write_atomic(&self.path(&m.source), &bytes)?;
        Ok(())
    }

    pub fn remove(&self, source: &str) -> Result<()> {
        match std::fs::remove_file(self.path(source)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IndexError::io(self.path(source), e)),
        }
    }

    /// The directory's entries; `None` before anything was stored.
    fn entries(&self) -> Result<Option<std::fs::ReadDir>> {
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => Ok(Some(rd)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(IndexError::io(&self.dir, e)),
        }
    }

    /// Removes the temp files of manifest writes that a killed process
    /// left behind (`.<source>.json.<pid>.tmp`; a large source's manifest is
    /// megabytes, and each kill mid-write leaves one). Only a pass writes
    /// manifests, and it holds the lexical index's writer lock until they
    /// are stored, so a caller that holds that lock knows none of these is
    /// being written. Returns how many were removed.
    pub fn remove_leftovers(&self) -> Result<usize> {
        let Some(rd) = self.entries()? else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in rd.flatten() {
            let name = entry.file_name();
            // Only files: a directory of such a name is no write's, and
            // failing on it would stop every pass.
            if !is_leftover(&name.to_string_lossy()) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(IndexError::io(entry.path(), e)),
            }
        }
        Ok(removed)
    }

    /// Sources that have a manifest on disk.
    pub fn sources(&self) -> Result<Vec<String>> {
        let Some(rd) = self.entries()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json") {
                out.push(id.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_of_killed_writes_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let m = Manifests::new(dir.path());
        assert_eq!(m.remove_leftovers().unwrap(), 0, "no directory yet");
        let keep = [
            "payments-api.json",
            ".payments-api.json",
            ".payments-api.json.tmp",
            ".payments-api.json.12a.tmp",
            ".payments-api.cache.123.tmp",
            "payments-api.json.123.tmp",
            ".json.123.tmp",
        ];
        let gone = [
            registry::fsutil::temp_name("payments-api.json", 123),
            registry::fsutil::temp_name("docs.v2.json", 4_194_304),
        ];
        for name in keep.iter().copied().chain(gone.iter().map(String::as_str)) {
            std::fs::write(dir.path().join(name), b"{}").unwrap();
        }
        // A directory with such a name is left alone, and is no error.
        std::fs::create_dir(dir.path().join(registry::fsutil::temp_name("x.json", 7))).unwrap();
        assert_eq!(m.remove_leftovers().unwrap(), gone.len());
        for name in keep {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
        for name in &gone {
            assert!(!dir.path().join(name).exists(), "{name} is still there");
        }
        assert!(dir.path().join(registry::fsutil::temp_name("x.json", 7)).is_dir());
    }
}
