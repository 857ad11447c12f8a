//! `ctxplane query`, `ctxplane provenance` and `ctxplane status`: the
//! plane's answers, printed.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use plane::query::{Asker, ContextRequest, Delivered, GroupBy, Via};
use plane::{Embedding, Operation, Plane, Profile};
use retriever::Answer;
use serde_json::{Value, json};

use crate::cli::{HealthArgs, ProvenanceArgs, QueryArgs};
use crate::print::print_json;

/// The asker `--as` names (admitted like any caller: an unknown name or a
/// role that may not query is an error), or the operator.
pub(crate) fn asker(plane: &Plane, principal: Option<&str>, op: Operation) -> plane::Result<Asker> {
    Ok(match principal {
        // An unknown name is bad usage (exit 2), not an empty answer.
        Some(name) => Asker::Principal(plane.admit_named(name, op).map_err(|e| match e {
            plane::Error::NotFound(m) => plane::Error::Config(format!("--as: {m}")),
            other => other,
        })?),
        None => Asker::Operator,
    })
}

pub fn query(args: QueryArgs, plane: &Plane) -> anyhow::Result<ExitCode> {
    let mode = args
        .mode
        .parse::<plane::query::SearchMode>()
        .map_err(|e| plane::ConfigError(format!("--{e}")))?;
    let base = ContextRequest {
        query: String::new(),
        max_tokens: Some(u32::try_from(args.max_tokens).unwrap_or(u32::MAX)),
        limit: Some(u32::try_from(args.limit).unwrap_or(u32::MAX)),
        sources: None,
        mode: Some(mode),
        packages: Some(!args.no_packages),
        group_by: Some(match args.group_by.as_str() {
            "chunk" => GroupBy::Chunk,
            "file" => GroupBy::File,
            other => {
                return Err(
                    plane::ConfigError(format!("--group-by must be chunk or file, not {other:?}")).into(),
                );
            }
        }),
    };
    if let Some(batch) = &args.batch {
        return query_batch(batch, &base, &args, plane);
    }
    let Some(text) = args.query.clone() else {
        return Err(plane::Error::bad("give a query, or --batch FILE").into());
    };
    let who = asker(plane, args.principal.as_deref(), Operation::Context)?;
    let answer = plane.context(&who, ContextRequest { query: text, ..base }, Via::Cli)?;
    if args.out.json {
        print_json(&answer)?;
    } else {
        print_answer(&answer);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    id: Value,
    query: String,
    #[serde(default, rename = "as")]
    principal: Option<String>,
    max_tokens: Option<u32>,
    limit: Option<u32>,
}

/// A batch line: (line number, id, `as`, request), or the error to print.
type Pending = Result<(usize, Value, Option<String>, ContextRequest), Value>;

/// One JSON line per query out, in input order; the model and index load once.
fn query_batch(
    path: &Path,
    base: &ContextRequest,
    args: &QueryArgs,
    plane: &Plane,
) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if path == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let mut failed = 0;
    // In input order: a parsed request, or the error line for one that is not.
    let mut pending: Vec<Pending> = Vec::new();
    // Up to 100 lines at a time: the requests of each asker are answered
    // together (one audit append for all of them), then every line is
    // printed in input order.
    let flush = |pending: &mut Vec<Pending>, failed: &mut usize| -> anyhow::Result<()> {
        let mut out: Vec<Option<Value>> = vec![None; pending.len()];
        let mut by_asker: std::collections::BTreeMap<Option<String>, Vec<usize>> = Default::default();
        for (i, item) in pending.iter().enumerate() {
            match item {
                Err(line_error) => out[i] = Some(line_error.clone()),
                Ok((_, _, principal, _)) => by_asker.entry(principal.clone()).or_default().push(i),
            }
        }
        for (principal, idx) in by_asker {
            let reqs = idx
                .iter()
                .filter_map(|&i| pending[i].as_ref().ok().map(|p| p.3.clone()))
                .collect();
            let answers = asker(plane, principal.as_deref(), Operation::Context)
                .and_then(|who| plane.context_batch(&who, reqs, Via::Cli));
            for (k, &i) in idx.iter().enumerate() {
                let Ok((line, id, _, _)) = &pending[i] else {
                    continue;
                };
                out[i] = Some(match &answers {
                    Ok(a) => match &a[k] {
                        Ok(d) => json!({"id": id, "answer": d}),
                        Err(e) => json!({"id": id, "line": line, "error": e.to_string()}),
                    },
                    Err(e) => json!({"id": id, "line": line, "error": e.to_string()}),
                });
            }
        }
        for v in out.into_iter().flatten() {
            if v.get("error").is_some() {
                *failed += 1;
            }
            println!("{}", serde_json::to_string(&v)?);
        }
        pending.clear();
        Ok(())
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        pending.push(match serde_json::from_str::<BatchLine>(&line) {
            Err(e) => Err(json!({"line": n + 1, "error": format!("not a query line: {e}")})),
            Ok(q) => Ok((
                n + 1,
                q.id,
                q.principal.or_else(|| args.principal.clone()),
                ContextRequest {
                    query: q.query,
                    max_tokens: q.max_tokens.or(base.max_tokens),
                    limit: q.limit.or(base.limit),
                    ..base.clone()
                },
            )),
        });
        if pending.len() >= 100 {
            flush(&mut pending, &mut failed)?;
        }
    }
    flush(&mut pending, &mut failed)?;
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn provenance(args: ProvenanceArgs, plane: &Plane) -> anyhow::Result<ExitCode> {
    let out = match plane.provenance(&Asker::Operator, &args.result_id) {
        Err(plane::Error::NotFound(_)) if args.result_id.starts_with("topic:") => anyhow::bail!(
            "no topic package {:?} in {} (or it does not parse: see `ctxplane packages list`)",
            &args.result_id["topic:".len()..],
            plane.settings().topics_dir.display()
        ),
        Err(plane::Error::NotFound(_)) if args.result_id.contains("snap-") => anyhow::bail!(
            "no snapshot {} (unknown, or pruned after {} days)",
            args.result_id,
            plane.settings().snapshot_retention_days
        ),
        Err(plane::Error::NotFound(_)) => anyhow::bail!(
            "result {} is not in the index: its file changed or was removed since, or the id is wrong",
            args.result_id
        ),
        other => other?,
    };
    let verdict = out.get("verdict").and_then(|v| v.as_str()).map(str::to_string);
    if args.out.json {
        print_json(&out)?;
    } else if verdict.is_some() {
        print_snapshot(&out);
    } else if out.get("package").is_some() {
        print_package(&out);
    } else {
        print_provenance(&out);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn status(args: HealthArgs, plane: &Plane) -> anyhow::Result<ExitCode> {
    let out = plane.status()?;
    let ok = out["ok"] == true;
    if args.out.json {
        print_json(&out)?;
    } else {
        let i = &out["index"];
        println!(
            "registry  {} ({} sources, {} approved, {} principals)",
            &out["registry"]["version"].as_str().unwrap_or("")
                [..12.min(out["registry"]["version"].as_str().unwrap_or("").len())],
            out["registry"]["sources"],
            out["registry"]["approved"],
            out["registry"]["principals"]
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

/// Opens the plane for a one-shot reader.
pub(crate) fn reader(
    s: plane::Settings,
    store: registry::RegistryStore,
    model: bool,
) -> anyhow::Result<Plane> {
    let embedding = if model {
        Embedding::On { bulk_threads: 1 }
    } else {
        Embedding::Off("not needed".into())
    };
    Ok(Plane::open(s, store, Profile::reader(embedding))?)
}

pub(crate) fn print_answer(d: &Delivered) {
    print_tier(&d.answer);
    println!(
        "delivered ~{} tokens with provenance (budget {})",
        d.delivered_tokens, d.answer.max_tokens
    );
    println!("cite as {}", d.snapshot.cite);
}

fn print_tier(a: &Answer) {
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
    for f in &a.files {
        let spans: Vec<String> = f
            .chunks
            .iter()
            .filter_map(|id| a.results.iter().find(|h| &h.id == id))
            .map(|h| format!("L{}-L{}", h.provenance.start_line, h.provenance.end_line))
            .collect();
        println!(
            "{:>7.4}  {}:{}  ({})",
            f.score,
            f.source,
            f.path,
            spans.join(", ")
        );
    }
    if !a.files.is_empty() {
        println!("best chunks of those files:");
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
    let withheld = if a.withheld_by_policy > 0 {
        format!(", {} withheld: the policy now denies them", a.withheld_by_policy)
    } else {
        String::new()
    };
    println!(
        "{} results, {} of {} tokens ({} over budget{withheld}); served by {}; {dense}; {:.1} ms",
        a.results.len(),
        a.tokens,
        a.max_tokens,
        a.over_budget,
        a.served_by,
        a.took_ms
    );
}

fn print_snapshot(v: &serde_json::Value) {
    let s = &v["snapshot"];
    println!(
        "{}  {}  (asked by {} via {} at {}; served by {})",
        s["id"].as_str().unwrap_or(""),
        v["verdict"].as_str().unwrap_or(""),
        s["principal"].as_str().unwrap_or(""),
        s["via"].as_str().unwrap_or(""),
        s["at"].as_str().unwrap_or(""),
        s["served_by"].as_str().unwrap_or("")
    );
    if v["record_intact"] != true {
        println!("  WARNING: the record does not match its id or its audit entry");
    }
    for r in v["results"].as_array().into_iter().flatten() {
        let lines = match r["lines_now"].as_array() {
            Some(l) => format!(" (now L{}-L{})", l[0], l[1]),
            None => String::new(),
        };
        println!(
            "  {:<15} {}{lines}  {}",
            r["status"].as_str().unwrap_or(""),
            r["citation"].as_str().unwrap_or(""),
            r["detail"].as_str().unwrap_or("")
        );
        for w in r["warnings"].as_array().into_iter().flatten() {
            println!("  {:<15} {}", "", w.as_str().unwrap_or(""));
        }
    }
    for c in v["changes_since"].as_array().into_iter().flatten() {
        println!(
            "  since: #{} {} {} {} by {}",
            c["seq"],
            c["at"].as_str().unwrap_or(""),
            c["action"].as_str().unwrap_or(""),
            c["subject"].as_str().unwrap_or(""),
            c["actor"].as_str().unwrap_or("")
        );
    }
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

fn print_package(out: &Value) {
    let p = &out["package"];
    let t = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!(
        "topic package {}: {} ({})",
        t(&p["package_id"]),
        t(&p["title"]),
        t(&p["file"])
    );
    println!(
        "  owner {} · reviewed {} by {} · max age {} days · tier {}",
        t(&p["owner"]),
        t(&p["reviewed_at"]),
        t(&p["reviewed_by"]),
        t(&p["max_age_days"]),
        t(&p["tier"])
    );
    println!("  in the index: {}", t(&p["status"]));
    for r in p["stale_reasons"].as_array().into_iter().flatten() {
        println!("    {}", t(r));
    }
    if let Some(v) = out["checks"]["checkout"].as_object() {
        println!("  in the checkout: {}", v["status"].as_str().unwrap_or("-"));
        for r in v["reasons"].as_array().into_iter().flatten() {
            println!("    {}", r.as_str().unwrap_or(""));
        }
    }
    for c in p["citations"].as_array().into_iter().flatten() {
        let chunks: Vec<String> = c["chunk_ids"].as_array().into_iter().flatten().map(t).collect();
        println!(
            "  [{}] {}  {}  commit {}  chunks {}",
            t(&c["n"]),
            t(&c["reference"]),
            t(&c["status"]),
            t(&c["commit"]),
            chunks.join(", ")
        );
    }
    for h in out["history"].as_array().into_iter().flatten() {
        println!("  {} {} by {}", t(&h["at"]), t(&h["action"]), t(&h["actor"]));
    }
}
