//! Lookups, each within the caller's scope: the provenance chain of a
//! result, the sources, freshness, and the plane's status.

use std::io::BufRead;
use std::path::Path;

use registry::audit::Event;
use registry::{Registry, SourceId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::query::Asker;
use crate::{Plane, Who, topics};

/// Longest result id looked up (longer ones are the same 404 as unknown ones).
pub const MAX_RESULT_ID_BYTES: usize = 200;

fn no_such_result() -> Error {
    Error::NotFound("no such result".into())
}

impl Plane {
    /// The whole chain behind a result id (`c-…` a chunk, `topic:<id>` a
    /// topic package): the content, its provenance tag, the registry entry
    /// and its history, the audited pass that ingested it, the redactions
    /// applied (never values), whether the chunk and the file on disk still
    /// match their hashes, and what the policy decides now. A result the
    /// asker may not read is the same 404 as one that does not exist.
    /// Audited.
    pub fn provenance(&self, asker: &Asker, id: &str) -> Result<Value> {
        if id.is_empty() || id.len() > MAX_RESULT_ID_BYTES {
            return Err(no_such_result());
        }
        // An answer's snapshot, pasted as `ctxplane:snap-…` or bare.
        let snap = id.strip_prefix(crate::snapshots::CITE_PREFIX).unwrap_or(id);
        if snap.starts_with("snap-") {
            let r = self.snapshot(asker, snap)?;
            return serde_json::to_value(r).map_err(Error::internal);
        }
        let (reg, scope, actor) = match asker {
            Asker::Principal(who) => (
                who.registry.clone(),
                Some(who.scope(self)),
                who.name().to_string(),
            ),
            Asker::Operator => (self.registry()?, None, self.settings().actor.clone()),
        };
        let out = match id.strip_prefix("topic:") {
            Some(pkg) => self.package_provenance(&reg, scope.as_ref(), pkg)?,
            None => self.chunk_provenance(&reg, scope.as_ref(), id)?,
        };
        let subject = out["provenance"]["source"].as_str().map(str::to_string);
        let mut ev = Event::new(&actor, "provenance", id);
        if let Some(s) = subject {
            ev = ev.detail("source", s);
        }
        self.record(vec![ev])?;
        Ok(out)
    }

    fn chunk_provenance(&self, reg: &Registry, scope: Option<&registry::Scope>, id: &str) -> Result<Value> {
        let retriever = self.retriever()?;
        let doc = retriever.chunk(id)?.ok_or_else(no_such_result)?;
        if let Some(sc) = scope {
            let readable = SourceId::new(doc.source.clone())
                .is_ok_and(|sid| registry::Tier::new(doc.tier).is_ok_and(|t| sc.permits(&sid, t)));
            // What the registry denies now is not served, by id either.
            if !readable || retriever.denied_now(reg, &doc.source, &doc.path).is_some() {
                return Err(no_such_result());
            }
        }
        let policy = reg.policy(self.store().clock());
        let source_id = SourceId::new(doc.source.clone()).map_err(Error::internal_msg)?;
        let source = reg.source(&source_id);
        let manifest = retriever.manifest(&doc.source);
        let entry = manifest.as_ref().and_then(|m| m.files.get(&doc.path));
        let audit = self.store().audit().tail_entries(usize::MAX)?;
        let source_history: Vec<_> = audit
            .iter()
            .filter(|e| e.subject == doc.source && e.action.starts_with("source."))
            .map(|e| json!({"seq": e.seq, "at": e.ts, "actor": e.actor, "action": e.action, "details": e.details}))
            .collect();
        // The pass that ingested this content: the first index event at or
        // after the ingest time that indexed files of the source.
        let ingest_event = entry.and_then(|en| {
            audit.iter().find(|e| {
                (e.action == "index.pass" || e.action == "index.update")
                    && e.ts >= en.ingested_at
                    && e.details[format!("source:{}", doc.source)]["indexed"]
                        .as_u64()
                        .is_some_and(|n| n > 0)
            })
        });
        let redactions: Vec<Value> = entry
            .map(|en| read_redactions(self.store().data_dir(), &doc.source, &doc.path, en.ingested_at))
            .transpose()?
            .unwrap_or_default()
            .into_iter()
            .map(|mut r| {
                let line = r["line"].as_u64().unwrap_or(0);
                r["in_this_result"] =
                    (line >= u64::from(doc.start_line) && line <= u64::from(doc.end_line)).into();
                r
            })
            .collect();
        let chunk_intact = blake3::hash(doc.content.as_bytes()).to_hex().as_str() == doc.chunk_hash;
        let (disk, disk_matches) = match source {
            Some(src) => {
                let file = src.root(&reg.base_dir).join(&doc.path);
                match std::fs::symlink_metadata(&file) {
                    Ok(m) if m.is_file() => {
                        // Opened only if still a regular file (never blocking
                        // on one swapped in), hashed as a stream.
                        let mut hasher = blake3::Hasher::new();
                        match indexer::walk::open_regular(&file) {
                            Ok(f) => {
                                hasher.update_reader(f)?;
                                let hash = hasher.finalize().to_hex().to_string();
                                let same = hash == doc.file_hash;
                                (json!({"exists": true, "size": m.len(), "hash": hash}), Some(same))
                            }
                            Err(skip) => (
                                json!({"exists": false, "note": format!("not readable ({})", skip.code())}),
                                Some(false),
                            ),
                        }
                    }
                    Ok(_) => (
                        json!({"exists": false, "note": "not a regular file"}),
                        Some(false),
                    ),
                    Err(_) => (json!({"exists": false}), Some(false)),
                }
            }
            None => (
                json!({"exists": null, "note": "source is no longer in the registry"}),
                None,
            ),
        };
        let decision_now = policy.decide_ingest(&doc.source, &doc.path);
        let provenance = retriever.provenance_of(reg, &doc);
        Ok(json!({
            "result_id": doc.chunk_id,
            "provenance": provenance,
            // Text the registry denies now is not shown, to anyone; the
            // operator still sees where it is and why (`policy_now`).
            "content": decision_now.is_allowed().then_some(&doc.content),
            "source": source.map(|s| json!({
                "id": s.id.as_str(), "kind": s.kind.as_str(), "location": s.location, "owner": s.owner,
                "tier": s.tier.get(), "status": s.status.as_str(), "description": s.description,
                "last_change": s.last_change.as_ref().map(|c| json!({"by": c.by, "at": c.at, "reason": c.reason})),
                "max_age_days": reg.freshness.max_age_days(s),
            })),
            "source_history": source_history,
            "ingest": {
                "ingested_at": entry.map(|e| e.ingested_at),
                "content_since": entry.map(|e| e.content_since()),
                "commit": doc.commit,
                "decision_id": entry.map(|e| e.decision_id.clone()),
                "audit_event": ingest_event.map(|e| json!({"seq": e.seq, "at": e.ts, "action": e.action, "actor": e.actor})),
            },
            "redactions": redactions,
            "checks": {
                "chunk_matches_its_hash": chunk_intact,
                "file_on_disk_matches_ingested_hash": disk_matches,
                "disk_now": disk,
                "policy_now": {
                    "allowed": decision_now.is_allowed(),
                    "decision_id": decision_now.id,
                    "reason": decision_now.deny_reason().map(|r| r.code()),
                },
            },
            "registry_version_now": reg.version.to_hex(),
        }))
    }

    /// A topic package as retrieval would serve it (citations verified
    /// against the index), the same check against the checkout, and its
    /// review history. Principals see only packages whose every cited
    /// source they may read, and never drafts.
    fn package_provenance(&self, reg: &Registry, scope: Option<&registry::Scope>, id: &str) -> Result<Value> {
        let retriever = self.retriever()?;
        let (prov, content) = retriever
            .package_lookup(reg, scope, id)
            .ok_or_else(no_such_result)?;
        if scope.is_some() && prov.status == "draft" {
            return Err(no_such_result());
        }
        let s = self.settings();
        let policy = reg.policy(self.store().clock());
        let loaded = topics::load_dir(&s.topics_dir)?;
        let on_disk = match loaded
            .iter()
            .find_map(|l| l.parsed.as_ref().ok().filter(|p| p.id == id))
        {
            Some(p) => {
                let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
                let mut reader = topics::DiskReader::new(reg, &policy, s)?;
                Some(topics::verify_on_disk(reg, &mut reader, p, today))
            }
            None => None,
        };
        let history: Vec<_> = self
            .store()
            .audit()
            .tail_entries(usize::MAX)?
            .iter()
            .filter(|e| e.subject == id && e.action.starts_with("topic."))
            .map(|e| json!({"seq": e.seq, "at": e.ts, "actor": e.actor, "action": e.action, "details": e.details}))
            .collect();
        Ok(json!({
            "result_id": format!("topic:{id}"),
            "package": prov,
            "content": content,
            "checks": {
                "index": {"status": prov.status, "reasons": prov.stale_reasons},
                "checkout": on_disk.as_ref().map(|v| json!({
                    "status": topics::status_name(v.status),
                    "reasons": v.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
                })),
            },
            "history": history,
            "registry_version_now": reg.version.to_hex(),
        }))
    }

    /// Sources: stewards see the registry; everyone else the sources in
    /// their scope (id, owner, tier, description).
    pub fn sources(&self, who: &Who) -> Value {
        let reg = &who.registry;
        let scope = who.scope(self);
        if scope.oversees_registry() {
            let all: Vec<_> = reg
                .sources
                .values()
                .map(|x| crate::views::SourceView::new(x, &reg.base_dir))
                .collect();
            return json!({"registry_version": reg.version.to_hex(), "sources": all});
        }
        let visible: Vec<Value> = reg
            .sources
            .values()
            .filter(|x| scope.permits(&x.id, x.tier))
            .map(|x| json!({"id": x.id.as_str(), "owner": x.owner, "tier": x.tier.get(), "description": x.description}))
            .collect();
        json!({"sources": visible})
    }

    /// Freshness per source (stewards and the operator: every source;
    /// others: the sources in scope). `only` narrows to one source; one the
    /// caller may not see is the same 404 as an unknown one.
    pub fn freshness(&self, who: Option<&Who>, only: Option<&str>) -> Result<FreshnessReport> {
        let reg = match who {
            Some(w) => w.registry.clone(),
            None => self.registry()?,
        };
        let scope = who.map(|w| w.scope(self));
        let visible = |id: &str, tier: u8| {
            scope.as_ref().is_none_or(|sc| {
                SourceId::new(id.to_string())
                    .is_ok_and(|sid| registry::Tier::new(tier).is_ok_and(|t| sc.may_oversee(&sid, t)))
            })
        };
        if let Some(o) = only
            && !reg
                .sources
                .values()
                .any(|x| x.id.as_str() == o && visible(o, x.tier.get()))
        {
            return Err(Error::NotFound("no such source".into()));
        }
        let policy = reg.policy(self.store().clock());
        let report = match self.retriever() {
            Ok(r) => indexer::freshness_of(
                self.store().data_dir(),
                r.lexical(),
                &reg,
                &policy,
                policy.now(),
                self.path_redactor()?,
            )?,
            // No index yet: the indexer creates an empty one (every source
            // is then `never_indexed`).
            Err(Error::Config(_)) => match self.ingest()?.as_ref() {
                Some(ing) => ing.indexer.freshness(&reg, &policy, policy.now())?,
                None => Vec::new(),
            },
            Err(e) => return Err(e),
        };
        let rows: Vec<_> = report
            .into_iter()
            .filter(|f| visible(&f.source, f.tier))
            .filter(|f| only.is_none_or(|o| o == f.source))
            .collect();
        let needs_attention = rows.iter().filter(|f| f.status.needs_attention()).count();
        Ok(FreshnessReport {
            at: policy.now(),
            sources: rows,
            needs_attention,
        })
    }

    /// The plane's state for operators: registry, index, vectors, sources
    /// needing attention, and whether the audit chain is intact (`ok`).
    pub fn status(&self) -> Result<Value> {
        let reg = self.registry()?;
        let approved = reg
            .sources
            .values()
            .filter(|x| x.status == registry::Status::Approved)
            .count();
        let audit = self.store().audit().verify();
        let index = match self.retriever() {
            Ok(r) => {
                let fresh = self.freshness(None, None)?;
                let dense = r.dense_status();
                let attention: Vec<Value> = fresh
                    .sources
                    .iter()
                    .filter(|f| f.status.needs_attention())
                    .map(|f| json!({"source": f.source, "status": f.status.as_str()}))
                    .collect();
                json!({
                    "chunks": r.lexical().total_chunks()?,
                    "served_by": if dense.available { "hybrid" } else { "lexical" },
                    "dense": dense,
                    "sources_needing_attention": attention,
                })
            }
            Err(e) => json!({"error": e.to_string(), "served_by": "none"}),
        };
        let ok = audit.as_ref().is_ok_and(|r| r.intact) && index.get("error").is_none();
        let (days, bytes) = self.snapshot_usage();
        Ok(json!({
            "ok": ok,
            "snapshots": {"days": days, "bytes": bytes, "retention_days": self.settings().snapshot_retention_days},
            "registry": {"path": self.store().registry_path(), "version": reg.version.to_hex(), "sources": reg.sources.len(), "approved": approved, "principals": reg.principals.len()},
            "index": index,
            "audit": match &audit {
                Ok(r) => json!({"entries": r.entries, "intact": r.intact, "first_bad": r.first_bad, "notes": r.notes}),
                Err(e) => json!({"error": e.to_string()}),
            },
        }))
    }
}

/// Freshness per source at one instant.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
pub struct FreshnessReport {
    pub at: jiff::Timestamp,
    pub sources: Vec<indexer::freshness::SourceFreshness>,
    pub needs_attention: usize,
}

fn read_redactions(data_dir: &Path, source: &str, path: &str, at: jiff::Timestamp) -> Result<Vec<Value>> {
    let file = data_dir.join("index/redactions.jsonl");
    let f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v["source"] == source
            && v["path"] == path
            && v["at"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) == Some(at)
        {
            out.push(json!({
                "rule_id": v["rule_id"], "line": v["line"], "column": v["column"], "keyed_hash": v["keyed_hash"],
            }));
        }
    }
    Ok(out)
}
