//! Context snapshots: every answer is named by a content-addressed id and
//! recorded durably, so whoever holds the citation line an agent pasted
//! (`ctxplane:snap-…`) can later see what the answer was grounded in, who
//! asked, under which registry, and whether each part still holds.
//!
//! A snapshot records, per result, where it came from (source, path, lines,
//! commit, file and content hashes, tier, policy decision) and a short hash
//! of each served line, never the text: that is enough to tell unchanged,
//! moved (same lines elsewhere) and changed (which lines) apart later. The
//! query is kept as a hash unless `snapshot_store_query` is set (then
//! redacted, as everything stored is).
//!
//! Records are appended to one JSON-lines file per UTC day under
//! `<data_dir>/snapshots/` in the audit log's group commit (a sidecar,
//! synced before the group's audit entries; concurrent answers share both
//! syncs; none is returned before it is durable), and the audit record of
//! the query carries the snapshot id and the blake3 of its line, so the
//! hash-chained audit log vouches for every snapshot. The id is
//! `snap-<yyyymmdd>-<24 hex of blake3 over the record>`: content-addressed,
//! and the day says which file holds it. Days older than the retention
//! (`snapshot_retention_days`, default 90) are pruned with an audit entry.

use std::collections::{BTreeSet, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use jiff::Timestamp;
use jiff::civil::Date;
use registry::audit::Event;
use registry::{Registry, SourceId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::query::{Asker, Delivered, Via};
use crate::{Plane, Who};

/// What an agent pastes to cite an answer: `ctxplane:snap-…`.
pub const CITE_PREFIX: &str = "ctxplane:";
/// Hex digits of a line's hash (24 bits: enough to tell lines apart
/// within a span, small enough that a snapshot stays a few KB).
const LINE_HASH_HEX: usize = 6;
/// The longest file read back to resolve a snapshot.
const MAX_RESOLVE_BYTES: u64 = 16 << 20;

/// The snapshot an answer was recorded under.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct SnapshotRef {
    /// `snap-<yyyymmdd>-<24 hex>`.
    pub id: String,
    /// The line to paste beside the answer: `ctxplane:snap-…`.
    pub cite: String,
}

impl SnapshotRef {
    /// A stand-in of the same size, for sizing an answer before its
    /// snapshot is made.
    pub(crate) fn placeholder() -> SnapshotRef {
        SnapshotRef::of(format!("snap-00000000-{}", "0".repeat(24)))
    }

    fn of(id: String) -> SnapshotRef {
        SnapshotRef {
            cite: format!("{CITE_PREFIX}{id}"),
            id,
        }
    }
}

/// Per answer, what its audit entry carries: the snapshot id and the
/// blake3 of the snapshot's record.
pub(crate) type Vouchers = Vec<(String, String)>;

/// One served result as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SnapResult {
    /// The result id (`c-…`), or `topic:<package>#<n>` for a package's
    /// n-th citation.
    pub id: String,
    pub source: String,
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub tier: u8,
    /// blake3 of the served text (a chunk), or of the cited span.
    pub content_hash: Option<String>,
    /// blake3 of the file as ingested.
    pub file_hash: Option<String>,
    pub commit: Option<String>,
    /// The policy decision that let the file in.
    pub decision_id: Option<String>,
    /// `source:path#Lx-Ly@commit-or-hash`.
    pub citation: String,
    /// A short hash of each served line, concatenated.
    pub lines: String,
}

/// The topic package that served an answer (tier 1).
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SnapPackage {
    pub id: String,
    pub file_hash: String,
    pub reviewed_at: Option<String>,
}

/// One answer, as recorded.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SnapshotRecord {
    pub id: String,
    pub at: Timestamp,
    /// The principal who asked, or `(operator)` at the CLI.
    pub principal: String,
    /// cli, http or mcp.
    pub via: String,
    /// blake3 of the query text.
    pub query_hash: String,
    /// The query text (redacted), only when `snapshot_store_query` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    pub registry_version: String,
    /// `topic_package` (tier 1) or `hybrid`, `lexical`, `dense` (tier 2).
    pub served_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<SnapPackage>,
    pub results: Vec<SnapResult>,
}

impl SnapshotRecord {
    /// The content address: blake3 over the record with an empty id.
    fn address(&self) -> String {
        let mut r = self.clone();
        r.id = String::new();
        let bytes = serde_json::to_vec(&r).unwrap_or_default();
        let day = self.at.to_zoned(jiff::tz::TimeZone::UTC).date();
        let hex = blake3::hash(&bytes).to_hex();
        format!("snap-{}-{}", day.strftime("%Y%m%d"), &hex[..24])
    }
}

/// Short hashes of each line (`\r` dropped), as recorded.
pub(crate) fn line_hashes<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for l in lines {
        let l = l.strip_suffix('\r').unwrap_or(l);
        out.push_str(&blake3::hash(l.as_bytes()).to_hex()[..LINE_HASH_HEX]);
    }
    out
}

fn split_hashes(s: &str) -> Vec<&str> {
    (0..s.len() / LINE_HASH_HEX)
        .map(|i| &s[i * LINE_HASH_HEX..(i + 1) * LINE_HASH_HEX])
        .collect()
}

/// The day files: where records go, lookups, pruning. A process with an
/// audit chain of its own (a replica sharing the data dir) writes its own
/// day files under `snapshots/<process>/`; lookups and pruning cover
/// every process's.
pub(crate) struct Store {
    dir: PathBuf,
    /// Where this process's day files go (`dir`, or a subdirectory).
    own: PathBuf,
    /// The last day old files were pruned on.
    pruned_on: Mutex<Option<Date>>,
    /// Line hashes of cited spans, by citation (file hash and lines): a
    /// package's citations change only when their files do.
    cited: Mutex<HashMap<String, String>>,
}

impl Store {
    pub(crate) fn new(data_dir: &Path, process: Option<&str>) -> Store {
        let dir = data_dir.join("snapshots");
        Store {
            own: process.map_or_else(|| dir.clone(), |p| dir.join(p)),
            dir,
            pruned_on: Mutex::new(None),
            cited: Mutex::new(HashMap::new()),
        }
    }

    /// The line hashes of a cited span, computed once per file version.
    fn cited_lines(&self, c: &retriever::CitationProvenance, compute: impl FnOnce() -> String) -> String {
        let key = format!(
            "{}:{}#{}-{}@{}",
            c.source,
            c.path,
            c.start_line,
            c.end_line,
            c.file_hash.as_deref().unwrap_or("")
        );
        if let Some(hit) = self
            .cited
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return hit.clone();
        }
        let lines = compute();
        let mut cache = self.cited.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= 10_000 {
            cache.clear();
        }
        cache.insert(key, lines.clone());
        lines
    }

    pub(crate) fn file_of(&self, day: Date) -> PathBuf {
        self.own.join(day_name(day))
    }

    /// Every directory holding day files: the main one, then each
    /// process's.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = vec![self.dir.clone()];
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut subs: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            subs.sort();
            out.extend(subs);
        }
        out
    }

    /// The record with `id` and the blake3 of its line, if kept.
    fn find(&self, id: &str) -> Result<Option<(SnapshotRecord, String)>> {
        let Some(day) = day_of(id) else {
            return Ok(None);
        };
        let needle = format!("{{\"id\":\"{id}\"");
        // This process's own file first (the usual case), then every
        // other process's, each once.
        let own = self.file_of(day);
        let mut files = vec![own.clone()];
        files.extend(
            self.dirs()
                .into_iter()
                .map(|d| d.join(day_name(day)))
                .filter(|f| *f != own),
        );
        for path in files {
            let f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for line in std::io::BufReader::new(f).lines() {
                let Ok(line) = line else { continue };
                if !line.starts_with(&needle) {
                    continue;
                }
                if let Ok(rec) = serde_json::from_str::<SnapshotRecord>(&line) {
                    let hash = blake3::hash(format!("{line}\n").as_bytes()).to_hex().to_string();
                    return Ok(Some((rec, hash)));
                }
            }
        }
        Ok(None)
    }

    /// Deletes the day files older than `keep_days` before `today`, at most
    /// once a day; what was pruned, if anything.
    fn prune(&self, today: Date, keep_days: u32) -> Result<Option<Pruned>> {
        {
            let mut last = self.pruned_on.lock().unwrap_or_else(PoisonError::into_inner);
            if *last == Some(today) {
                return Ok(None);
            }
            *last = Some(today);
        }
        let cutoff = today
            .checked_sub(jiff::Span::new().days(i64::from(keep_days)))
            .map_err(Error::internal)?;
        if !self.dir.exists() {
            return Ok(None);
        }
        let mut pruned = Pruned {
            before: cutoff,
            days: Vec::new(),
            snapshots: 0,
            bytes: 0,
        };
        for dir in self.dirs() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let mut removed = false;
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let Some(day) = name.strip_suffix(".jsonl").and_then(|d| d.parse::<Date>().ok()) else {
                    continue;
                };
                if day >= cutoff {
                    continue;
                }
                let text = std::fs::read(e.path())?;
                pruned.snapshots += text.iter().filter(|b| **b == b'\n').count() as u64;
                pruned.bytes += text.len() as u64;
                std::fs::remove_file(e.path())?;
                removed = true;
                pruned.days.push(day.to_string());
            }
            if removed {
                registry::fsutil::fsync_dir(&dir)?;
            }
        }
        if pruned.days.is_empty() {
            return Ok(None);
        }
        pruned.days.sort();
        pruned.days.dedup();
        Ok(Some(pruned))
    }

    /// Day files kept and their bytes (metadata only: cheap for status).
    pub(crate) fn usage(&self) -> (u64, u64) {
        let mut files = 0;
        let mut bytes = 0;
        for dir in self.dirs() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for m in entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                {
                    files += 1;
                    bytes += m.len();
                }
            }
        }
        (files, bytes)
    }
}

struct Pruned {
    before: Date,
    days: Vec<String>,
    snapshots: u64,
    bytes: u64,
}

/// A day file's name.
fn day_name(day: Date) -> String {
    format!("{}.jsonl", day.strftime("%Y-%m-%d"))
}

/// The day a snapshot id names.
fn day_of(id: &str) -> Option<Date> {
    let rest = id.strip_prefix("snap-")?;
    let (day, hash) = rest.split_once('-')?;
    if day.len() != 8 || hash.len() != 24 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Date::strptime("%Y%m%d", day).ok()
}

/// Whether `id` is shaped like a snapshot id.
pub fn is_snapshot_id(id: &str) -> bool {
    day_of(id).is_some()
}

/// Every distinct `ctxplane:snap-…` cited in `text`, in order.
pub fn cited_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("ctxplane:snap-") {
        let tail = &rest[i + CITE_PREFIX.len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(tail.len());
        let id = &tail[..end];
        // Malformed ones are kept too, so they are reported, not ignored.
        if !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Whether each part of a snapshot still holds, and why.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct Resolution {
    pub snapshot: SnapshotRecord,
    /// The record hashes to its id, and the audit log vouches for it.
    pub record_intact: bool,
    /// The audit entry that recorded the answer, if found.
    pub audit_seq: Option<u64>,
    /// `holds`, `partly_stale` or `no_longer_valid`.
    pub verdict: String,
    pub reasons: Vec<String>,
    pub results: Vec<ResultNow>,
    /// Registry and index changes since the answer that concern its sources.
    pub changes_since: Vec<ChangeSince>,
    pub registry_version_now: String,
    pub checked_at: Timestamp,
}

/// One recorded result, checked now.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ResultNow {
    pub id: String,
    pub citation: String,
    /// `unchanged`, `moved`, `changed`, `removed`, `source_revoked`,
    /// `never_ingest` or `policy_denied`.
    pub status: String,
    /// Whether what was served is still true now.
    pub holds: bool,
    /// Where the served lines are now (moved or changed).
    pub lines_now: Option<(u32, u32)>,
    /// Served lines that changed or were removed, as `[first, last]`
    /// ranges in the numbering that was served.
    pub changed_lines: Vec<(u32, u32)>,
    /// Why, in a line.
    pub detail: String,
    /// Warnings that do not change `status`: past the source's max age,
    /// version claims that drift from the pins now.
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ChangeSince {
    pub seq: u64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: String,
}

fn no_such_snapshot() -> Error {
    Error::NotFound("no such snapshot".into())
}

impl Plane {
    /// Makes a snapshot of each answer: its id goes into the answer; the
    /// records come back as a sidecar for the audit append (written and
    /// synced in the same group commit, before the entries that vouch for
    /// them), with the id and record hash each audit entry carries.
    pub(crate) fn snapshot_answers(
        &self,
        asker: &Asker,
        via: Via,
        registry_version: &str,
        answers: &mut [&mut Delivered],
    ) -> Result<(Vouchers, Vec<registry::audit::Sidecar>)> {
        if answers.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let retriever = self.retriever()?;
        let at = self.store().clock().now();
        let principal = match asker {
            Asker::Principal(who) => who.name().to_string(),
            Asker::Operator => "(operator)".to_string(),
        };
        let mut lines = Vec::new();
        let mut out = Vec::with_capacity(answers.len());
        for d in answers.iter_mut() {
            let a = &d.answer;
            let mut results: Vec<SnapResult> = a
                .results
                .iter()
                .map(|h| {
                    let p = &h.provenance;
                    SnapResult {
                        id: h.id.clone(),
                        source: p.source.clone(),
                        path: p.path.clone(),
                        start_line: p.start_line,
                        end_line: p.end_line,
                        tier: p.tier,
                        content_hash: Some(p.content_hash.clone()),
                        file_hash: Some(p.file_hash.clone()),
                        commit: p.commit.clone(),
                        decision_id: p.decision_id.clone(),
                        citation: p.citation.clone(),
                        lines: line_hashes(h.content.lines()),
                    }
                })
                .collect();
            let package = a.package.as_ref().map(|pkg| {
                for c in &pkg.provenance.citations {
                    let lines = self.snapshots.cited_lines(c, || {
                        let text = indexer::alignment::indexed_text(retriever.lexical(), &c.source, &c.path)
                            .unwrap_or_default();
                        line_hashes(
                            text.lines()
                                .skip(c.start_line.saturating_sub(1) as usize)
                                .take((c.end_line + 1).saturating_sub(c.start_line) as usize),
                        )
                    });
                    let manifest = retriever.manifest(&c.source);
                    let entry = manifest.as_ref().and_then(|m| m.files.get(&c.path));
                    results.push(SnapResult {
                        id: format!("{}#{}", pkg.id, c.n),
                        source: c.source.clone(),
                        path: c.path.clone(),
                        start_line: c.start_line,
                        end_line: c.end_line,
                        tier: c.tier,
                        content_hash: c.current_hash.clone(),
                        file_hash: c.file_hash.clone(),
                        commit: c.commit.clone(),
                        decision_id: entry.map(|e| e.decision_id.clone()),
                        citation: c.citation.clone(),
                        lines,
                    });
                }
                SnapPackage {
                    id: pkg.id.clone(),
                    file_hash: pkg.provenance.file_hash.clone(),
                    reviewed_at: pkg.provenance.reviewed_at.clone(),
                }
            });
            let mut rec = SnapshotRecord {
                id: String::new(),
                at,
                principal: principal.clone(),
                via: via.as_str().to_string(),
                query_hash: blake3::hash(a.query.as_bytes()).to_hex().to_string(),
                // Kept only when configured, and then redacted like
                // everything else that is stored (invariant 2).
                query: match self.settings().snapshot_store_query {
                    true => Some(self.path_redactor()?.redact(&a.query, None).text),
                    false => None,
                },
                registry_version: registry_version.to_string(),
                served_by: a.served_by.clone(),
                package,
                results,
            };
            rec.id = rec.address();
            let mut line = serde_json::to_vec(&rec).map_err(Error::internal)?;
            line.push(b'\n');
            let hash = blake3::hash(&line).to_hex().to_string();
            d.snapshot = SnapshotRef::of(rec.id.clone());
            out.push((rec.id, hash));
            lines.extend_from_slice(&line);
        }
        let sidecar = registry::audit::Sidecar {
            path: self
                .snapshots
                .file_of(at.to_zoned(jiff::tz::TimeZone::UTC).date()),
            bytes: lines,
        };
        Ok((out, vec![sidecar]))
    }

    /// Prunes the day files past the retention (at most once a day),
    /// audited.
    pub(crate) fn prune_snapshots(&self) -> Result<()> {
        let today = self
            .store()
            .clock()
            .now()
            .to_zoned(jiff::tz::TimeZone::UTC)
            .date();
        if let Some(p) = self
            .snapshots
            .prune(today, self.settings().snapshot_retention_days)?
        {
            self.record(vec![
                Event::new(&self.settings().actor, "snapshots.pruned", "snapshots")
                    .detail("before", p.before.to_string())
                    .detail("days", p.days)
                    .detail("snapshots", p.snapshots)
                    .detail("bytes", p.bytes)
                    .detail("retention_days", self.settings().snapshot_retention_days),
            ])?;
        }
        Ok(())
    }

    /// Snapshot day files kept and their total bytes.
    pub fn snapshot_usage(&self) -> (u64, u64) {
        self.snapshots.usage()
    }

    /// Resolves a snapshot for `asker`: stewards and the operator see every
    /// one; a principal sees its own and those whose every result it may
    /// read; anything else is the same 404 as an unknown id. Audited.
    pub fn snapshot(&self, asker: &Asker, id: &str) -> Result<Resolution> {
        let (reg, actor) = match asker {
            Asker::Principal(who) => (who.registry.clone(), who.name().to_string()),
            Asker::Operator => (self.registry()?, self.settings().actor.clone()),
        };
        let (rec, line_hash) = self.snapshots.find(id)?.ok_or_else(no_such_snapshot)?;
        if let Asker::Principal(who) = asker
            && !self.may_resolve(who, &rec)
        {
            return Err(no_such_snapshot());
        }
        let res = self.resolve(&reg, rec, &line_hash)?;
        self.record(vec![
            Event::new(&actor, "provenance", id)
                .detail("kind", "snapshot")
                .detail("verdict", res.verdict.clone()),
        ])?;
        Ok(res)
    }

    fn may_resolve(&self, who: &Who, rec: &SnapshotRecord) -> bool {
        let scope = who.scope(self);
        scope.oversees_registry()
            || rec.principal == who.name()
            || rec.results.iter().all(|r| {
                SourceId::new(r.source.clone())
                    .is_ok_and(|s| registry::Tier::new(r.tier).is_ok_and(|t| scope.permits(&s, t)))
            })
    }

    fn resolve(&self, reg: &Registry, rec: SnapshotRecord, line_hash: &str) -> Result<Resolution> {
        let retriever = self.retriever()?;
        let now = self.store().clock().now();
        // Only what was recorded from the answer on: its own entry and
        // the changes since.
        let audit = self.store().audit().entries_since(rec.at)?;
        let vouched = audit
            .iter()
            .find(|e| e.action == "query" && e.details["snapshot"] == rec.id.as_str());
        let record_intact =
            rec.address() == rec.id && vouched.is_some_and(|e| e.details["snapshot_hash"] == line_hash);
        let redactor = self.path_redactor()?;
        let mut texts: HashMap<(String, String), Option<String>> = HashMap::new();
        let mut results = Vec::with_capacity(rec.results.len());
        for r in &rec.results {
            let src = reg.source_named(&r.source);
            let now_r = match src {
                Some(s) if s.status == registry::Status::Approved => {
                    match retriever.denied_now(reg, &r.source, &r.path) {
                        Some((code, why)) => ResultNow::not_holding(
                            r,
                            if code == "never_ingest" {
                                "never_ingest"
                            } else {
                                "policy_denied"
                            },
                            format!("the policy now denies {}: {why}", r.path),
                        ),
                        None => {
                            let text = texts
                                .entry((r.source.clone(), r.path.clone()))
                                .or_insert_with(|| {
                                    read_now(&s.root(&reg.base_dir).join(&r.path))
                                        .map(|t| redactor.redact(&t, Some(&r.path)).text)
                                })
                                .clone();
                            let mut out = compare(r, text.as_deref());
                            out.warnings = self.warnings(reg, s, r, text.as_deref(), &retriever, now);
                            out
                        }
                    }
                }
                Some(s) => ResultNow::not_holding(
                    r,
                    "source_revoked",
                    format!("source {} is {} now", r.source, s.status.as_str()),
                ),
                None => ResultNow::not_holding(
                    r,
                    "source_revoked",
                    format!("source {} is no longer registered", r.source),
                ),
            };
            results.push(now_r);
        }
        let holding = results.iter().filter(|r| r.holds).count();
        let warned = results.iter().any(|r| !r.warnings.is_empty());
        let verdict = if holding == results.len() && !warned {
            "holds"
        } else if holding == 0 && !results.is_empty() {
            "no_longer_valid"
        } else {
            "partly_stale"
        };
        let mut reasons: Vec<String> = Vec::new();
        for r in &results {
            if !r.holds || r.status == "moved" {
                reasons.push(format!("{}: {} ({})", r.citation, r.status, r.detail));
            }
            for w in &r.warnings {
                reasons.push(format!("{}: {w}", r.citation));
            }
        }
        if !record_intact {
            reasons.push("the record does not match its id or its audit entry".into());
        }
        let cited: BTreeSet<&str> = rec.results.iter().map(|r| r.source.as_str()).collect();
        let changes_since = audit
            .iter()
            .filter(|e| e.ts > rec.at)
            .filter(|e| {
                let about_source = cited.contains(e.subject.as_str())
                    || cited.iter().any(|s| !e.details[format!("source:{s}")].is_null());
                let registry_wide = e.action.starts_with("registry.") || e.action.starts_with("exception.");
                (about_source
                    && (e.action.starts_with("source.")
                        || e.action.starts_with("index.")
                        || e.action.starts_with("exception.")))
                    || registry_wide
            })
            .map(|e| ChangeSince {
                seq: e.seq,
                at: e.ts,
                actor: e.actor.clone(),
                action: e.action.clone(),
                subject: e.subject.clone(),
            })
            .collect();
        Ok(Resolution {
            audit_seq: vouched.map(|e| e.seq),
            snapshot: rec,
            record_intact,
            verdict: verdict.to_string(),
            reasons,
            results,
            changes_since,
            registry_version_now: reg.version.to_hex(),
            checked_at: now,
        })
    }

    fn warnings(
        &self,
        reg: &Registry,
        src: &registry::model::Source,
        r: &SnapResult,
        text: Option<&str>,
        retriever: &retriever::Retriever,
        now: Timestamp,
    ) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(entry) = retriever
            .manifest(&r.source)
            .and_then(|m| m.files.get(&r.path).cloned())
            && now.duration_since(entry.content_since()) > reg.freshness.max_age(src)
        {
            out.push(format!(
                "past the source's max age ({} days) since {}",
                reg.freshness.max_age_days(src),
                entry.content_since()
            ));
        }
        let language = indexer::chunk::language_of(&r.path);
        if indexer::alignment::is_doc(language)
            && let (Some(text), Some(deps)) = (text, retriever.dependencies(&r.source))
        {
            for d in indexer::alignment::chunk_drift(&r.path, text, 1, &deps) {
                if d.line >= r.start_line as usize && d.line <= r.end_line as usize {
                    out.push(format!(
                        "drift: line {} claims {} {}, pinned {}",
                        d.line,
                        d.dependency,
                        d.claimed,
                        d.pinned.join(", ")
                    ));
                }
            }
        }
        out
    }
}

impl ResultNow {
    fn not_holding(r: &SnapResult, status: &str, detail: String) -> ResultNow {
        ResultNow {
            id: r.id.clone(),
            citation: r.citation.clone(),
            status: status.to_string(),
            holds: false,
            lines_now: None,
            changed_lines: Vec::new(),
            detail,
            warnings: Vec::new(),
        }
    }
}

/// A file's text now, if it is a regular file of reasonable size in UTF-8.
fn read_now(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    if !m.is_file() || m.len() > MAX_RESOLVE_BYTES {
        return None;
    }
    let mut f = indexer::walk::open_regular(path).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut bytes).ok()?;
    String::from_utf8(bytes).ok()
}

/// Compares what was served with the file's (redacted) text now.
fn compare(r: &SnapResult, text: Option<&str>) -> ResultNow {
    let Some(text) = text else {
        return ResultNow::not_holding(r, "removed", format!("{} is gone", r.path));
    };
    let old = split_hashes(&r.lines);
    let now_hashes = line_hashes(text.lines());
    let new = split_hashes(&now_hashes);
    let (s, n) = (r.start_line.max(1) as usize - 1, old.len());
    let mut out = ResultNow {
        id: r.id.clone(),
        citation: r.citation.clone(),
        status: "unchanged".into(),
        holds: true,
        lines_now: None,
        changed_lines: Vec::new(),
        detail: "the served lines are unchanged".into(),
        warnings: Vec::new(),
    };
    if n == 0 {
        return out;
    }
    if new.get(s..s + n) == Some(&old[..]) {
        return out;
    }
    // The same lines elsewhere: nearest to where they were.
    let mut best: Option<usize> = None;
    for i in 0..new.len().saturating_sub(n - 1) {
        if new[i..i + n] == old[..] && best.is_none_or(|b| i.abs_diff(s) < b.abs_diff(s)) {
            best = Some(i);
        }
    }
    if let Some(i) = best {
        out.status = "moved".into();
        out.lines_now = Some((i as u32 + 1, (i + n) as u32));
        out.detail = format!("the same text is now at lines {}-{}", i + 1, i + n);
        return out;
    }
    // Changed: align the served lines with the text around where they were.
    let lo = s.saturating_sub(n + 200).min(new.len());
    let hi = (s + 2 * n + 200).min(new.len());
    let window = &new[lo..hi];
    let matched = align(&old, window);
    let mut changed: Vec<(u32, u32)> = Vec::new();
    let mut mark = |i: usize| {
        let line = r.start_line + i as u32;
        match changed.last_mut() {
            Some((_, b)) if *b + 1 >= line => *b = (*b).max(line),
            _ => changed.push((line, line)),
        }
    };
    let mut prev: Option<usize> = None;
    for (i, m) in matched.iter().enumerate() {
        match m {
            None => mark(i),
            Some(j) => {
                // Lines inserted between two served lines change both.
                if let Some(p) = prev
                    && *j > p + 1
                    && i > 0
                    && matched[i - 1].is_some()
                {
                    mark(i - 1);
                    mark(i);
                }
                prev = Some(*j);
            }
        }
    }
    let first = matched.iter().flatten().next();
    let last = matched.iter().flatten().last();
    if let (Some(a), Some(b)) = (first, last) {
        out.lines_now = Some(((lo + a) as u32 + 1, (lo + b) as u32 + 1));
    }
    if matched.iter().all(Option::is_none) {
        out.status = "removed".into();
        out.holds = false;
        out.detail = format!("none of the served lines is in {} now", r.path);
        out.changed_lines = vec![(r.start_line, r.end_line)];
        return out;
    }
    out.status = "changed".into();
    out.holds = false;
    let count: u32 = changed.iter().map(|(a, b)| b - a + 1).sum();
    let which: Vec<String> = changed
        .iter()
        .map(|(a, b)| {
            if a == b {
                format!("L{a}")
            } else {
                format!("L{a}-L{b}")
            }
        })
        .collect();
    out.detail = format!("{count} of the {n} served lines changed: {}", which.join(", "));
    out.changed_lines = changed;
    out
}

/// For each line of `old`, the index in `new` it aligns with (longest
/// common subsequence).
fn align(old: &[&str], new: &[&str]) -> Vec<Option<usize>> {
    let (n, m) = (old.len(), new.len());
    let mut dp = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            dp[at(i, j)] = if old[i] == new[j] {
                dp[at(i + 1, j + 1)] + 1
            } else {
                dp[at(i + 1, j)].max(dp[at(i, j + 1)])
            };
        }
    }
    let mut out = vec![None; n];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if old[i] == new[j] {
            out[i] = Some(j);
            i += 1;
            j += 1;
        } else if dp[at(i + 1, j)] >= dp[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(lines: &[&str], start: u32) -> SnapResult {
        SnapResult {
            id: "c-1".into(),
            source: "s".into(),
            path: "a.rs".into(),
            start_line: start,
            end_line: start + lines.len() as u32 - 1,
            tier: 1,
            content_hash: None,
            file_hash: None,
            commit: None,
            decision_id: None,
            citation: "s:a.rs#L1-L3@b3:x".into(),
            lines: line_hashes(lines.iter().copied()),
        }
    }

    #[test]
    fn unchanged_moved_changed_removed() {
        let r = rec(&["b", "c", "d"], 2);
        assert_eq!(compare(&r, Some("a\nb\nc\nd\ne\n")).status, "unchanged");
        let moved = compare(&r, Some("x\ny\na\nb\nc\nd\ne\n"));
        assert_eq!((moved.status.as_str(), moved.lines_now), ("moved", Some((4, 6))));
        let changed = compare(&r, Some("a\nb\nC\nd\ne\n"));
        assert_eq!(changed.status, "changed");
        assert_eq!(changed.changed_lines, vec![(3, 3)]);
        let inserted = compare(&r, Some("a\nb\nc\nnew\nd\ne\n"));
        assert_eq!(inserted.changed_lines, vec![(3, 4)]);
        assert_eq!(compare(&r, Some("q\nw\n")).status, "removed");
        assert_eq!(compare(&r, None).status, "removed");
    }

    #[test]
    fn ids_and_citations() {
        assert!(is_snapshot_id("snap-20261202-0123456789abcdef01234567"));
        assert!(!is_snapshot_id("snap-20261302-0123456789abcdef01234567"));
        assert!(!is_snapshot_id("snap-20261202-0123"));
        let text = "See ctxplane:snap-20261202-0123456789abcdef01234567. Also ctxplane:snap-bogus and \
                    ctxplane:snap-20261202-0123456789abcdef01234567 again.";
        assert_eq!(
            cited_in(text),
            vec![
                "snap-20261202-0123456789abcdef01234567".to_string(),
                "snap-bogus".to_string()
            ]
        );
    }
}
