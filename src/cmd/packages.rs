//! `ctxplane packages`: topic packages on disk: list, verify, rehash (the
//! steward's re-review), draft.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use packages::topic::{parse, rehash};
use plane::Plane;
use plane::query::Asker;
use plane::topics::{DiskReader, Loaded, load_dir, owner_problem, shown, status_name, verify_on_disk};
use registry::audit::Event;
use registry::{Policy, Registry, SourceId};
use serde_json::json;

use crate::cli::{DraftArgs, PackagesCmd};
use crate::print::print_json;
use plane::ConfigError;

pub fn packages(cmd: PackagesCmd, plane: &Plane) -> anyhow::Result<ExitCode> {
    let s = plane.settings();
    let store = plane.store();
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    let today = policy.now().to_zoned(jiff::tz::TimeZone::UTC).date();
    match cmd {
        PackagesCmd::List(out) => {
            let loaded = load_dir(&s.topics_dir)?;
            let mut reader = DiskReader::new(&reg, &policy, s)?;
            let mut rows = Vec::new();
            for l in &loaded {
                rows.push(match &l.parsed {
                    Ok(p) => {
                        let v = verify_on_disk(&reg, &mut reader, p, today);
                        let status = if owner_problem(&reg, p).is_some() {
                            "invalid".to_string()
                        } else {
                            status_name(v.status).to_string()
                        };
                        json!({
                            "id": p.id, "title": p.title, "owner": p.owner, "status": status,
                            "reviewed_at": p.reviewed_at.map(|d| d.to_string()),
                            "expires_on": v.expires_on.map(|d| d.to_string()),
                            "citations": p.citations.len(), "questions": p.questions.len(),
                            "file": shown(&l.file),
                        })
                    }
                    Err(problems) => json!({
                        "id": stem(&l.file), "status": "invalid", "file": shown(&l.file),
                        "problems": problems,
                    }),
                });
            }
            if out.json {
                print_json(&json!({"topics_dir": s.topics_dir, "packages": rows}))?;
            } else if rows.is_empty() {
                println!("no topic packages in {}", s.topics_dir.display());
            } else {
                println!(
                    "{:<28} {:<8} {:<20} {:<11} {:>5}  TITLE",
                    "ID", "STATUS", "OWNER", "REVIEWED", "CITES"
                );
                for r in &rows {
                    let txt = |k: &str| r[k].as_str().unwrap_or("-").to_string();
                    if let Some(first) = r["problems"].as_array().and_then(|p| p.first()) {
                        println!(
                            "{:<28} {:<8} {}:{}: {}",
                            txt("id"),
                            "invalid",
                            txt("file"),
                            first["line"],
                            first["message"].as_str().unwrap_or("")
                        );
                        continue;
                    }
                    println!(
                        "{:<28} {:<8} {:<20} {:<11} {:>5}  {}",
                        txt("id"),
                        txt("status"),
                        txt("owner"),
                        txt("reviewed_at"),
                        r["citations"],
                        txt("title")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PackagesCmd::Verify { ids, out } => {
            let loaded = load_dir(&s.topics_dir)?;
            check_ids(&loaded, &ids)?;
            let mut reader = DiskReader::new(&reg, &policy, s)?;
            let mut reports = Vec::new();
            let mut failed = 0;
            for l in &loaded {
                match &l.parsed {
                    Ok(p) if !ids.is_empty() && !ids.contains(&p.id) => {}
                    Ok(p) => {
                        let v = verify_on_disk(&reg, &mut reader, p, today);
                        let mut problems = v.reasons.clone();
                        problems.extend(owner_problem(&reg, p));
                        let status = if problems.iter().any(|x| x.code == "unknown_owner") {
                            "invalid"
                        } else {
                            status_name(v.status)
                        };
                        if matches!(status, "stale" | "invalid") {
                            failed += 1;
                        }
                        if !out.json {
                            println!("{} {} ({})", status, p.id, shown(&l.file));
                            for c in &v.citations {
                                println!("    {:<9} {}", ser(&c.status), c.reference);
                            }
                            for x in problems.iter().chain(&v.notes) {
                                println!("    {}:{}: [{}] {}", shown(&l.file), x.line, x.code, x.message);
                            }
                        }
                        reports.push(json!({"id": p.id, "file": shown(&l.file), "status": status, "verification": v, "problems": problems}));
                    }
                    Err(problems) if ids.is_empty() => {
                        failed += 1;
                        if !out.json {
                            println!("invalid {}", shown(&l.file));
                            for x in problems {
                                println!("    {}:{}: [{}] {}", shown(&l.file), x.line, x.code, x.message);
                            }
                        }
                        reports
                            .push(json!({"file": shown(&l.file), "status": "invalid", "problems": problems}));
                    }
                    Err(_) => {}
                }
            }
            if out.json {
                print_json(&json!({"ok": failed == 0, "failed": failed, "packages": reports}))?;
            } else {
                println!("{} package(s) verified, {failed} stale or invalid", reports.len());
            }
            Ok(if failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        PackagesCmd::Rehash { ids, all, out } => {
            if ids.is_empty() && !all {
                return Err(ConfigError("name the packages to rehash, or pass --all".into()).into());
            }
            let loaded = load_dir(&s.topics_dir)?;
            check_ids(&loaded, &ids)?;
            let mut reader = DiskReader::new(&reg, &policy, s)?;
            let mut done = Vec::new();
            let mut refused = Vec::new();
            let mut events = Vec::new();
            for l in &loaded {
                // A package that only lacks its review fields is what rehash
                // is for; it is known by its file name until it parses.
                let id = match &l.parsed {
                    Ok(p) => p.id.clone(),
                    Err(_) => stem(&l.file),
                };
                if !all && !ids.contains(&id) {
                    continue;
                }
                if let Ok(p) = &l.parsed
                    && let Some(x) = owner_problem(&reg, p)
                {
                    refused.push(json!({"id": id, "file": shown(&l.file), "problems": [x]}));
                    continue;
                }
                match rehash(&l.text, today, &s.actor, &mut |c| reader.read(c)) {
                    Ok(new_text) => {
                        registry::fsutil::write_atomic(&l.file, new_text.as_bytes())
                            .with_context(|| format!("writing {}", l.file.display()))?;
                        let citations = parse(&new_text).map(|p| p.citations.len()).unwrap_or(0);
                        events.push(
                            Event::new(&s.actor, "topic.rehash", &id)
                                .detail("file", shown(&l.file))
                                .detail("citations", citations)
                                .detail(
                                    "file_hash",
                                    blake3::hash(new_text.as_bytes()).to_hex().to_string(),
                                )
                                .detail("reviewed_at", today.to_string()),
                        );
                        done.push(json!({"id": id, "file": shown(&l.file), "citations": citations}));
                    }
                    Err(problems) => {
                        refused.push(json!({"id": id, "file": shown(&l.file), "problems": problems}));
                    }
                }
            }
            if !events.is_empty() {
                store.record(events)?;
            }
            if out.json {
                print_json(&json!({"rehashed": done, "refused": refused}))?;
            } else {
                for d in &done {
                    println!(
                        "reviewed {} ({} citations) as {} on {today}",
                        d["id"].as_str().unwrap_or(""),
                        d["citations"],
                        s.actor
                    );
                }
                for r in &refused {
                    println!(
                        "refused {}:",
                        r["id"].as_str().or(r["file"].as_str()).unwrap_or("")
                    );
                    for p in r["problems"].as_array().into_iter().flatten() {
                        println!(
                            "    line {}: [{}] {}",
                            p["line"],
                            p["code"].as_str().unwrap_or(""),
                            p["message"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            Ok(if refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PackagesCmd::Draft(args) => draft(args, plane, &reg, &policy),
    }
}

fn draft(args: DraftArgs, plane: &Plane, reg: &Registry, _policy: &Policy<'_>) -> anyhow::Result<ExitCode> {
    let s = plane.settings();
    let topic = args.topic.trim();
    if topic.is_empty() || topic.chars().count() > 300 {
        return Err(ConfigError("the topic is 1 to 300 characters".into()).into());
    }
    let id = args.id.clone().unwrap_or_else(|| packages::draft::slug(topic));
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError(format!(
            "--id {id:?} may hold only letters, digits, '-', '_' and '.'"
        ))
        .into());
    }
    let asker = match args.principal.as_deref() {
        Some(name) => Asker::Principal(plane.principal_named(name)?),
        None => Asker::Operator,
    };
    let hits = plane.search_for_draft(&asker, topic, args.chunks.clamp(1, 50))?;
    let chunks: Vec<packages::draft::DraftChunk> = hits
        .iter()
        .map(|h| packages::draft::DraftChunk {
            source: h.provenance.source.clone(),
            path: h.provenance.path.clone(),
            language: h.provenance.language.clone(),
            start_line: h.provenance.start_line,
            content: h.content.clone(),
        })
        .collect();
    let sentences = packages::draft::extract(topic, &chunks, args.sentences.clamp(1, 40));
    if sentences.is_empty() {
        anyhow::bail!(
            "found nothing to extract about {topic:?} in the index (searched {} chunks)",
            chunks.len()
        );
    }
    let owner = args.owner.clone().unwrap_or_else(|| {
        SourceId::new(sentences[0].source.clone())
            .ok()
            .and_then(|sid| reg.source(&sid))
            .map(|x| x.owner.clone())
            .unwrap_or_default()
    });
    let text = packages::draft::render(&id, topic, &owner, &sentences);
    let dest = match args.out.as_deref() {
        Some(p) if p == Path::new("-") => None,
        Some(p) => Some(p.to_path_buf()),
        None => Some(s.topics_dir.join(format!("{id}.md"))),
    };
    let cited: BTreeSet<String> = sentences
        .iter()
        .map(|x| format!("{}:{}", x.source, x.path))
        .collect();
    match &dest {
        None => print!("{text}"),
        Some(path) => {
            if path.exists() && !args.force {
                anyhow::bail!("{} exists; pass --force to replace it", path.display());
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            registry::fsutil::write_atomic(path, text.as_bytes())?;
        }
    }
    plane.store().record(vec![
        Event::new(&s.actor, "topic.draft", &id)
            .detail("topic_hash", registry::ContentHash::of(topic.as_bytes()).short())
            .detail("sentences", sentences.len())
            .detail("files", cited.iter().cloned().collect::<Vec<_>>())
            .detail(
                "scope",
                match &asker {
                    Asker::Principal(w) => w.name().to_string(),
                    Asker::Operator => "(operator)".to_string(),
                },
            ),
    ])?;
    if let Some(path) = &dest {
        eprintln!(
            "drafted {} with {} cited sentence(s) from {} file(s): {}\nedit it, then `ctxplane packages rehash {id}` to review it",
            id,
            sentences.len(),
            cited.len(),
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn stem(file: &Path) -> String {
    file.file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn check_ids(loaded: &[Loaded], ids: &[String]) -> anyhow::Result<()> {
    let stems: Vec<String> = loaded.iter().map(|l| stem(&l.file)).collect();
    let known: BTreeSet<&str> = loaded
        .iter()
        .zip(&stems)
        .map(|(l, st)| l.parsed.as_ref().map_or(st.as_str(), |p| p.id.as_str()))
        .collect();
    for id in ids {
        if !known.contains(id.as_str()) {
            return Err(ConfigError(format!("no topic package {id:?}")).into());
        }
    }
    Ok(())
}

fn ser<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|x| x.as_str().map(str::to_string))
        .unwrap_or_default()
}
