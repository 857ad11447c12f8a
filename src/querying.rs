//! `ctxplane query`, `ctxplane provenance` and `ctxplane status`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use registry::audit::Event;
use registry::{ContentHash, Registry, RegistryStore, SourceId};
use retriever::{Answer, Caller, Mode, Options, Retriever};
use serde_json::json;

use crate::cli::{HealthArgs, ProvenanceArgs, QueryArgs};
use crate::commands::print_json;
use crate::config::Settings;
use crate::indexing::Dense;

/// The retriever with the model and vectors when they are there.
pub(crate) fn open_retriever(s: &Settings, data_dir: &Path) -> anyhow::Result<Retriever> {
    let dense = Dense::open(s, data_dir, false).map(|d| (d.embedder, d.store));
    Ok(Retriever::open(data_dir, dense)?.with_topics(&s.topics_dir, s.topic_grace_days))
}

/// The caller a principal name stands for; an unknown name gets an empty
/// scope, exactly like a principal with no sources.
pub(crate) fn caller<'a>(
    reg: &'a Registry,
    principal: Option<&str>,
    policy: &registry::Policy<'_>,
) -> Caller<'a> {
    match principal {
        None => Caller::operator(reg),
        Some(name) => Caller {
            registry: reg,
            scope: match reg.principal(name) {
                Some(p) => policy.scope_for(p),
                None => registry::Scope {
                    principal: name.to_string(),
                    role: registry::Role::Agent,
                    tier_ceiling: registry::Tier::MIN,
                    sources: Default::default(),
                },
            },
        },
    }
}

fn audit_event(s: &Settings, principal: Option<&str>, a: &Answer) -> Event {
    Event::new(&s.actor, "query", principal.unwrap_or("(operator)"))
        .detail("query_hash", ContentHash::of(a.query.as_bytes()).short())
        .detail("served_by", a.served_by.clone())
        .detail("results", a.results.len() + usize::from(a.package.is_some()))
        .detail(
            "result_ids",
            a.package
                .iter()
                .map(|p| p.id.as_str())
                .chain(a.results.iter().map(|h| h.id.as_str()))
                .collect::<Vec<_>>(),
        )
        .detail("tokens", a.tokens)
}

pub(crate) fn print_answer(a: &Answer) {
    if let Some(p) = &a.package {
        let v = &p.provenance;
        println!(
            "{:>7.4}  topic package {} ({})  [{}{} · tier {} · reviewed {} by {} · {}]",
            p.score,
            v.package_id,
            v.file,
            v.status,
            if v.stale {
                format!(": {}", v.stale_reasons.join("; "))
            } else {
                String::new()
            },
            v.tier,
            v.reviewed_at.as_deref().unwrap_or("-"),
            v.reviewed_by.as_deref().unwrap_or("-"),
            p.id
        );
        println!();
        for l in p.content.lines() {
            println!("    {l}");
        }
        println!();
        for c in &v.citations {
            println!(
                "    [{}] {}  {}  chunks {}",
                c.n,
                c.reference,
                c.status,
                c.chunk_ids.join(", ")
            );
        }
        println!(
            "served by topic_package; {} of {} tokens; {:.1} ms",
            a.tokens, a.max_tokens, a.took_ms
        );
        return;
    }
    if let Some(t) = &a.topic
        && let Some(c) = &t.candidate
    {
        println!(
            "(topic package {c} not served: {}, score {:.3} vs threshold {:.3})",
            t.outcome,
            t.scores.as_ref().map_or(0.0, |x| x.score),
            t.threshold
        );
    }
    for h in &a.results {
        let p = &h.provenance;
        println!(
            "{:>7.4}  {}:{}#L{}-L{}  {}  [{} · tier {} · {} · {}]",
            h.score,
            p.source,
            p.path,
            p.start_line,
            p.end_line,
            p.symbol.as_deref().unwrap_or(""),
            p.freshness.status,
            p.tier,
            p.served_by,
            h.id
        );
    }
    if a.results.is_empty() {
        println!("no results");
    }
    let dense = match &a.dense.reason {
        Some(r) => format!("lexical only: {r}"),
        None => format!("vector coverage {:.1}%", a.dense.coverage * 100.0),
    };
    println!(
        "{} results, {} of {} tokens ({} over budget); served by {}; {dense}; {:.1} ms",
        a.results.len(),
        a.tokens,
        a.max_tokens,
        a.over_budget,
        a.served_by,
        a.took_ms
    );
}

pub fn query(args: QueryArgs, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    let retriever = open_retriever(s, store.data_dir())?;
    let mode = match args.mode.as_str() {
        "hybrid" => Mode::Hybrid,
        "lexical" => Mode::Lexical,
        "dense" => Mode::Dense,
        other => bail!(crate::config::ConfigError(format!(
            "--mode must be hybrid, lexical or dense, not {other:?}"
        ))),
    };
    let base = Options {
        mode,
        limit: args.limit.clamp(1, 100),
        max_tokens: args.max_tokens.clamp(1, 200_000),
        packages: !args.no_packages,
    };
    if let Some(batch) = &args.batch {
        return query_batch(batch, &base, &args, s, store, &reg, &policy, &retriever);
    }
    let Some(text) = args.query.as_deref() else {
        bail!(crate::config::ConfigError("give a query, or --batch FILE".into()));
    };
    if text.len() > MAX_QUERY_BYTES {
        bail!(crate::config::ConfigError(format!(
            "query is {} bytes; the limit is {MAX_QUERY_BYTES}",
            text.len()
        )));
    }
    let who = caller(&reg, args.principal.as_deref(), &policy);
    let answer = retriever.query(&who, text, &base)?;
    // Acknowledged (printed) only once audited.
    store.record(vec![audit_event(s, args.principal.as_deref(), &answer)])?;
    if args.out.json {
        print_json(&answer)?;
    } else {
        print_answer(&answer);
    }
    Ok(ExitCode::SUCCESS)
}

/// Longest query accepted.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    id: serde_json::Value,
    query: String,
    #[serde(default, rename = "as")]
    principal: Option<String>,
    max_tokens: Option<usize>,
    limit: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn query_batch(
    path: &Path,
    base: &Options,
    args: &QueryArgs,
    s: &Settings,
    store: &RegistryStore,
    reg: &Registry,
    policy: &registry::Policy<'_>,
    retriever: &Retriever,
) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut failed = 0;
    let mut events = Vec::new();
    let mut lines_out = Vec::new();
    let flush = |events: &mut Vec<Event>, lines_out: &mut Vec<String>| -> anyhow::Result<()> {
        store.record(std::mem::take(events))?;
        for l in lines_out.drain(..) {
            println!("{l}");
        }
        Ok(())
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Result<BatchLine, String> = serde_json::from_str(&line).map_err(|e| e.to_string());
        let out = match parsed {
            Err(e) => {
                failed += 1;
                json!({"line": n + 1, "error": format!("not a query line: {e}")})
            }
            Ok(q) if q.query.len() > MAX_QUERY_BYTES => {
                failed += 1;
                json!({"id": q.id, "line": n + 1, "error": format!("query longer than {MAX_QUERY_BYTES} bytes")})
            }
            Ok(q) => {
                let principal = q.principal.as_deref().or(args.principal.as_deref());
                let who = caller(reg, principal, policy);
                let opts = Options {
                    mode: base.mode,
                    limit: q.limit.unwrap_or(base.limit).clamp(1, 100),
                    max_tokens: q.max_tokens.unwrap_or(base.max_tokens).clamp(1, 200_000),
                    packages: base.packages,
                };
                match retriever.query(&who, &q.query, &opts) {
                    Ok(a) => {
                        events.push(audit_event(s, principal, &a));
                        json!({"id": q.id, "answer": a})
                    }
                    Err(e) => {
                        failed += 1;
                        json!({"id": q.id, "line": n + 1, "error": e.to_string()})
                    }
                }
            }
        };
        lines_out.push(serde_json::to_string(&out)?);
        if lines_out.len() >= 100 {
            flush(&mut events, &mut lines_out)?;
        }
    }
    flush(&mut events, &mut lines_out)?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn provenance(args: ProvenanceArgs, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    let retriever = Retriever::open(store.data_dir(), Err("not needed".into()))?
        .with_topics(&s.topics_dir, s.topic_grace_days);
    if let Some(id) = args.result_id.strip_prefix("topic:") {
        return package_provenance(id, &args, s, store, &reg, &policy, &retriever);
    }
    let Some(doc) = retriever.chunk(&args.result_id)? else {
        bail!(
            "result {} is not in the index: its file changed or was removed since, or the id is wrong",
            args.result_id
        );
    };
    let source_id = SourceId::new(doc.source.clone()).map_err(anyhow::Error::msg)?;
    let source = reg.source(&source_id);
    let manifest = retriever.manifest(&doc.source);
    let entry = manifest.as_ref().and_then(|m| m.files.get(&doc.path));
    let audit = store.audit().tail_entries(usize::MAX)?;
    let source_history: Vec<_> = audit
        .iter()
        .filter(|e| e.subject == doc.source && e.action.starts_with("source."))
        .map(
            |e| json!({"seq": e.seq, "at": e.ts, "actor": e.actor, "action": e.action, "details": e.details}),
        )
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
    let redactions: Vec<serde_json::Value> = entry
        .map(|en| read_redactions(store.data_dir(), &doc.source, &doc.path, en.ingested_at))
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
                    let bytes =
                        std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                    let hash = blake3::hash(&bytes).to_hex().to_string();
                    let same = hash == doc.file_hash;
                    (json!({"exists": true, "size": m.len(), "hash": hash}), Some(same))
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
    let provenance = retriever.provenance_of(&reg, &doc);
    let out = json!({
        "result_id": doc.chunk_id,
        "provenance": provenance,
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
    });
    store.record(vec![
        Event::new(&s.actor, "provenance", &doc.chunk_id).detail("source", doc.source.clone()),
    ])?;
    if args.out.json {
        print_json(&out)?;
    } else {
        print_provenance(&out);
    }
    Ok(ExitCode::SUCCESS)
}

fn read_redactions(
    data_dir: &Path,
    source: &str,
    path: &str,
    at: jiff::Timestamp,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let file = data_dir.join("index/redactions.jsonl");
    let f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", file.display())),
    };
    let mut out = Vec::new();
    for line in std::io::BufReader::new(f).lines() {
        let line = line?;
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
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

fn print_provenance(v: &serde_json::Value) {
    let p = &v["provenance"];
    let s = |x: &serde_json::Value| match x {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("result {}", s(&v["result_id"]));
    println!(
        "  from      {}:{}#L{}-L{}  {} {}",
        s(&p["source"]),
        s(&p["path"]),
        s(&p["start_line"]),
        s(&p["end_line"]),
        s(&p["kind"]),
        s(&p["symbol"])
    );
    println!(
        "  hashes    chunk {}  file {}",
        s(&p["content_hash"]),
        s(&p["file_hash"])
    );
    let src = &v["source"];
    println!(
        "  source    owner {}, tier {}, status {}, location {}",
        s(&src["owner"]),
        s(&src["tier"]),
        s(&src["status"]),
        s(&src["location"])
    );
    for h in v["source_history"].as_array().into_iter().flatten() {
        println!(
            "            #{} {} {} by {}",
            s(&h["seq"]),
            s(&h["at"]),
            s(&h["action"]),
            s(&h["actor"])
        );
    }
    let i = &v["ingest"];
    println!(
        "  ingested  {} (content since {}), commit {}, decision {}",
        s(&i["ingested_at"]),
        s(&i["content_since"]),
        s(&i["commit"]),
        s(&i["decision_id"])
    );
    if !i["audit_event"].is_null() {
        println!(
            "            audit #{} {} {}",
            s(&i["audit_event"]["seq"]),
            s(&i["audit_event"]["action"]),
            s(&i["audit_event"]["at"])
        );
    }
    let reds = v["redactions"].as_array().cloned().unwrap_or_default();
    println!("  redacted  {} in the file", reds.len());
    for r in &reds {
        println!(
            "            {} at line {}:{}{}",
            s(&r["rule_id"]),
            s(&r["line"]),
            s(&r["column"]),
            if r["in_this_result"] == true {
                " (in this result)"
            } else {
                ""
            }
        );
    }
    let c = &v["checks"];
    println!(
        "  now       freshness {}; chunk matches its hash: {}; file on disk matches: {}; policy now: {}",
        s(&p["freshness"]["status"]),
        s(&c["chunk_matches_its_hash"]),
        s(&c["file_on_disk_matches_ingested_hash"]),
        if c["policy_now"]["allowed"] == true {
            "allowed".to_string()
        } else {
            format!("denied ({})", s(&c["policy_now"]["reason"]))
        }
    );
}

pub fn status(args: HealthArgs, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    let approved = reg
        .sources
        .values()
        .filter(|x| x.status == registry::Status::Approved)
        .count();
    let audit = store.audit().verify();
    let index = match open_retriever(s, store.data_dir()) {
        Ok(r) => {
            let idx = indexer::Indexer::open(
                store.data_dir(),
                indexer::redact::RuleSet::builtin(),
                indexer::PassOptions::default(),
            )?;
            let fresh = idx.freshness(&reg, &policy, policy.now())?;
            let dense = r.dense_status();
            json!({
                "chunks": r.lexical().total_chunks(),
                "served_by": if dense.available { "hybrid" } else { "lexical" },
                "dense": dense,
                "sources_needing_attention": fresh.iter().filter(|f| f.status.needs_attention()).map(|f| json!({"source": f.source, "status": f.status.as_str()})).collect::<Vec<_>>(),
            })
        }
        Err(e) => json!({"error": e.to_string(), "served_by": "none"}),
    };
    let ok = audit.as_ref().is_ok_and(|r| r.intact) && index.get("error").is_none();
    let out = json!({
        "ok": ok,
        "registry": {"path": store.registry_path(), "version": reg.version.to_hex(), "sources": reg.sources.len(), "approved": approved, "principals": reg.principals.len()},
        "index": index,
        "audit": match &audit {
            Ok(r) => json!({"entries": r.entries, "intact": r.intact, "first_bad": r.first_bad, "notes": r.notes}),
            Err(e) => json!({"error": e.to_string()}),
        },
    });
    if args.out.json {
        print_json(&out)?;
    } else {
        let i = &out["index"];
        println!(
            "registry  {} ({} sources, {} approved, {} principals)",
            reg.version.short(),
            reg.sources.len(),
            approved,
            reg.principals.len()
        );
        match i.get("error") {
            Some(e) => println!("index     {}", e.as_str().unwrap_or("")),
            None => {
                println!("index     {} chunks", i["chunks"]);
                let d = &i["dense"];
                if d["available"] == true {
                    println!(
                        "vectors   {} of {} chunks ({:.1}%), model {}; serving hybrid",
                        d["vectors"],
                        d["chunks"],
                        d["coverage"].as_f64().unwrap_or(0.0) * 100.0,
                        d["model_id"].as_str().unwrap_or("")
                    );
                } else {
                    println!(
                        "vectors   none: {}; serving lexical only",
                        d["reason"].as_str().unwrap_or("")
                    );
                }
                for f in i["sources_needing_attention"].as_array().into_iter().flatten() {
                    println!(
                        "freshness {}: {}",
                        f["source"].as_str().unwrap_or(""),
                        f["status"].as_str().unwrap_or("")
                    );
                }
            }
        }
        println!(
            "audit     {}",
            match &out["audit"]["intact"] {
                serde_json::Value::Bool(true) => format!("{} entries, chain intact", out["audit"]["entries"]),
                _ => format!("PROBLEM: {}", out["audit"]),
            }
        );
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `ctxplane provenance topic:<id>`: the package as retrieval would serve
/// it (citations verified against the index), the same check against the
/// checkout, and its review history from the audit log.
fn package_provenance(
    id: &str,
    args: &ProvenanceArgs,
    s: &Settings,
    store: &RegistryStore,
    reg: &Registry,
    policy: &registry::Policy<'_>,
    retriever: &Retriever,
) -> anyhow::Result<ExitCode> {
    let Some((prov, content)) = retriever.package_lookup(reg, None, id) else {
        bail!(
            "no topic package {id:?} in {} (or it does not parse: see `ctxplane packages list`)",
            s.topics_dir.display()
        );
    };
    let loaded = crate::topics::load_dir(&s.topics_dir)?;
    let on_disk = loaded
        .iter()
        .find_map(|l| l.parsed.as_ref().ok().filter(|p| p.id == id))
        .map(|p| {
            let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
            crate::topics::DiskReader::new(reg, policy, s)
                .map(|mut reader| crate::topics::verify_on_disk(reg, &mut reader, p, today))
        })
        .transpose()?;
    let history: Vec<_> = store
        .audit()
        .tail_entries(usize::MAX)?
        .iter()
        .filter(|e| e.subject == id && e.action.starts_with("topic."))
        .map(
            |e| json!({"seq": e.seq, "at": e.ts, "actor": e.actor, "action": e.action, "details": e.details}),
        )
        .collect();
    let out = json!({
        "result_id": format!("topic:{id}"),
        "package": prov,
        "content": content,
        "checks": {
            "index": {"status": prov.status, "reasons": prov.stale_reasons},
            "checkout": on_disk.as_ref().map(|v| json!({
                "status": crate::topics::status_name(v.status),
                "reasons": v.reasons.iter().map(|r| r.message.clone()).collect::<Vec<_>>(),
            })),
        },
        "history": history,
        "registry_version_now": reg.version.to_hex(),
    });
    store.record(vec![Event::new(&s.actor, "provenance", &format!("topic:{id}"))])?;
    if args.out.json {
        print_json(&out)?;
    } else {
        println!("topic package {id}: {} ({})", prov.title, prov.file);
        println!(
            "  owner {} · reviewed {} by {} · max age {} days · tier {}",
            prov.owner,
            prov.reviewed_at.as_deref().unwrap_or("-"),
            prov.reviewed_by.as_deref().unwrap_or("-"),
            prov.max_age_days,
            prov.tier
        );
        println!("  in the index: {}", prov.status);
        for r in &prov.stale_reasons {
            println!("    {r}");
        }
        if let Some(v) = &on_disk {
            println!("  in the checkout: {}", crate::topics::status_name(v.status));
            for r in &v.reasons {
                println!("    {}", r.message);
            }
        }
        for c in &prov.citations {
            println!(
                "  [{}] {}  {}  commit {}  chunks {}",
                c.n,
                c.reference,
                c.status,
                c.commit.as_deref().unwrap_or("-"),
                c.chunk_ids.join(", ")
            );
        }
        for h in &history {
            println!(
                "  {} {} by {}",
                h["at"].as_str().unwrap_or(""),
                h["action"].as_str().unwrap_or(""),
                h["actor"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
