//! How current the index is, per source, without reading file contents:
//! what changed on disk since the last pass (by size and mtime against the
//! manifest), and which indexed content is older than its tier allows.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use registry::{Policy, Registry, Status};
use serde::Serialize;

use crate::manifest::Manifests;
use crate::pass::Tally;
use crate::walk;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FreshnessStatus {
    /// Everything on disk is indexed and no content is past its max age.
    Fresh,
    /// Files changed, appeared or disappeared since the last pass.
    Behind,
    /// Indexed content is older than the source's max age.
    Stale,
    /// Docs name dependency versions the lockfiles contradict.
    Drifted,
    /// Approved but never indexed.
    NeverIndexed,
    /// The source cannot be walked (missing, not a directory, unreadable).
    Unavailable,
    /// Not approved any more; its content goes at the next pass.
    PendingPurge,
}

impl FreshnessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FreshnessStatus::Fresh => "fresh",
            FreshnessStatus::Behind => "behind",
            FreshnessStatus::Stale => "stale",
            FreshnessStatus::Drifted => "drifted",
            FreshnessStatus::NeverIndexed => "never_indexed",
            FreshnessStatus::Unavailable => "unavailable",
            FreshnessStatus::PendingPurge => "pending_purge",
        }
    }

    /// Whether a CI check should fail on this status.
    pub fn needs_attention(self) -> bool {
        self != FreshnessStatus::Fresh
    }
}

#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SourceFreshness {
    pub source: String,
    pub tier: u8,
    pub owner: String,
    pub status: FreshnessStatus,
    pub max_age_days: u32,
    /// The last pass that walked this source.
    pub last_pass: Option<Timestamp>,
    /// The most recent time any of its files was ingested.
    pub last_ingest: Option<Timestamp>,
    pub files_indexed: u64,
    /// Indexed files whose size or mtime differ from what was ingested.
    pub modified: Tally,
    /// Files the policy allows that are not indexed yet.
    pub added: Tally,
    /// Indexed files no longer on disk (or no longer allowed).
    pub removed: Tally,
    /// Indexed files whose content is older than `max_age_days`.
    pub stale: Tally,
    pub oldest_content: Option<Timestamp>,
    /// Version claims in the source's docs that its lockfiles contradict.
    pub drift: Vec<crate::alignment::DriftNote>,
    pub error: Option<String>,
}

impl SourceFreshness {
    /// Files that differ between disk and index.
    pub fn changed(&self) -> u64 {
        self.modified.count + self.added.count + self.removed.count
    }
}

pub(crate) fn report(
    lexical: &dyn crate::lexical::ChunkIndex,
    manifests: &Manifests,
    passes: &BTreeMap<String, Timestamp>,
    registry: &Registry,
    policy: &Policy<'_>,
    now: Timestamp,
    redactor: &crate::redact::Redactor,
) -> crate::Result<Vec<SourceFreshness>> {
    let mut out = Vec::new();
    let with_manifest: BTreeSet<String> = manifests.sources()?.into_iter().collect();
    for source in registry.sources.values() {
        let id = source.id.as_str();
        let approved = source.status == Status::Approved;
        if !approved && !with_manifest.contains(id) {
            continue;
        }
        let manifest = manifests.load(id)?;
        let max_age = registry.freshness.max_age(source);
        let mut f = SourceFreshness {
            source: id.to_string(),
            tier: source.tier.get(),
            owner: source.owner.clone(),
            status: FreshnessStatus::Fresh,
            max_age_days: registry.freshness.max_age_days(source),
            last_pass: passes.get(id).copied(),
            last_ingest: manifest.files.values().map(|e| e.ingested_at).max(),
            files_indexed: manifest.files.len() as u64,
            modified: Tally::default(),
            added: Tally::default(),
            removed: Tally::default(),
            stale: Tally::default(),
            oldest_content: manifest.files.values().map(|e| e.content_since()).min(),
            drift: crate::alignment::source_drift(lexical, &manifest)?,
            error: None,
        };
        for (path, e) in &manifest.files {
            if now.duration_since(e.content_since()) > max_age {
                f.stale.add(path);
            }
        }
        if !approved {
            f.status = FreshnessStatus::PendingPurge;
            out.push(f);
            continue;
        }
        let files = match walk::list(&source.root(&registry.base_dir)) {
            Ok(files) => files,
            Err(e) => {
                f.error = Some(format!("cannot walk {}: {e}", source.location));
                f.status = FreshnessStatus::Unavailable;
                out.push(f);
                continue;
            }
        };
        let mut seen = BTreeSet::new();
        for found in &files {
            // Never indexed and never named: a path holding a secret.
            if !policy.decide_ingest(id, &found.rel).is_allowed()
                || redactor.redact_path(&found.rel).is_some()
            {
                continue;
            }
            seen.insert(found.rel.as_str());
            let mtime_ns = i64::try_from(found.mtime_ns).unwrap_or(i64::MAX);
            if let Some(e) = manifest.files.get(&found.rel) {
                if e.size != found.size || e.mtime_ns != mtime_ns {
                    f.modified.add(&found.rel);
                }
            } else if let Some(s) = manifest.skipped.get(&found.rel) {
                if s.size != found.size || s.mtime_ns != mtime_ns {
                    f.modified.add(&found.rel);
                }
            } else if !found.is_symlink && found.is_regular {
                f.added.add(&found.rel);
            }
        }
        for path in manifest.files.keys() {
            if !seen.contains(path.as_str()) {
                f.removed.add(path);
            }
        }
        f.status = if f.last_pass.is_none() && manifest.files.is_empty() {
            FreshnessStatus::NeverIndexed
        } else if f.changed() > 0 {
            FreshnessStatus::Behind
        } else if f.stale.count > 0 {
            FreshnessStatus::Stale
        } else if !f.drift.is_empty() {
            FreshnessStatus::Drifted
        } else {
            FreshnessStatus::Fresh
        };
        out.push(f);
    }
    Ok(out)
}
