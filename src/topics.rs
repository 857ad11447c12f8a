//! `ctxplane packages`: topic packages on disk: list, verify, rehash (the
//! steward's re-review), draft. Verification here reads the cited files
//! from the checkout, through the registry's policy and the redactor, so it
//! sees what agents would; retrieval verifies against the index instead.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use indexer::redact::Redactor;
use indexer::walk::Found;
use packages::topic::{
    Citation, Cited, PackageStatus, Problem, TopicPackage, Verification, parse, rehash, verify,
};
use registry::audit::Event;
use registry::{Policy, Registry, RegistryStore, SourceId, Status};
use serde_json::json;

use crate::cli::{DraftArgs, PackagesCmd};
use crate::commands::{load_rules, print_json};
use crate::config::{ConfigError, Settings};

/// Largest topic package file read.
const MAX_PACKAGE_BYTES: u64 = 256 * 1024;

/// A package file and what parsing made of it.
pub(crate) struct Loaded {
    pub file: PathBuf,
    pub text: String,
    pub parsed: Result<TopicPackage, Vec<Problem>>,
}

/// Every `*.md` in the topics directory except README.md. A missing
/// directory holds no packages; one that is not a directory is an error.
pub(crate) fn load_dir(dir: &Path) -> anyhow::Result<Vec<Loaded>> {
    let files = packages::topic::list_dir(dir)
        .map_err(|e| ConfigError(format!("topics directory {}: {e}", dir.display())))?;
    let mut out = Vec::new();
    let mut ids: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let problem = |message: String| {
            Err(vec![Problem {
                line: 1,
                code: "malformed",
                message,
            }])
        };
        let meta = std::fs::symlink_metadata(&file)?;
        let (text, parsed) = if meta.file_type().is_symlink() {
            (
                String::new(),
                problem("a symlink; topic packages must be regular files".into()),
            )
        } else if meta.len() > MAX_PACKAGE_BYTES {
            (
                String::new(),
                problem(format!("larger than {MAX_PACKAGE_BYTES} bytes")),
            )
        } else {
            match String::from_utf8(std::fs::read(&file)?) {
                Ok(text) => {
                    let parsed = parse(&text);
                    (text, parsed)
                }
                Err(_) => (String::new(), problem("not valid UTF-8".into())),
            }
        };
        let parsed = match parsed {
            Ok(p) => match ids.get(&p.id) {
                Some(other) => Err(vec![Problem {
                    line: p.lines.id,
                    code: "malformed",
                    message: format!("id {:?} is already used by {}", p.id, other.display()),
                }]),
                None => {
                    ids.insert(p.id.clone(), file.clone());
                    Ok(p)
                }
            },
            Err(e) => Err(e),
        };
        out.push(Loaded { file, text, parsed });
    }
    Ok(out)
}

/// Reads cited files from the checkout as the indexer would: only approved
/// sources, only paths the policy lets in, no symlinks, redacted.
pub(crate) struct DiskReader<'a> {
    reg: &'a Registry,
    policy: &'a Policy<'a>,
    redactor: Redactor,
    max_bytes: u64,
    listings: HashMap<String, Result<HashMap<String, Found>, String>>,
}

impl<'a> DiskReader<'a> {
    pub fn new(reg: &'a Registry, policy: &'a Policy<'a>, s: &Settings) -> anyhow::Result<Self> {
        let rules_path = std::env::var_os("CTXPLANE_REDACTION_RULES")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        Ok(DiskReader {
            reg,
            policy,
            redactor: Redactor::new(load_rules(rules_path.as_deref(), true)?, [0u8; 32]),
            max_bytes: s.max_file_bytes,
            listings: HashMap::new(),
        })
    }

    pub fn read(&mut self, c: &Citation) -> Cited {
        let Some(src) = SourceId::new(c.source.clone())
            .ok()
            .and_then(|id| self.reg.source(&id))
        else {
            return Cited::Denied(format!("no source {:?} in the registry", c.source));
        };
        if src.status != Status::Approved {
            return Cited::Denied(format!("source {} is not approved", c.source));
        }
        let d = self.policy.decide_ingest(&c.source, &c.path);
        if let Some(why) = d.deny_reason() {
            return Cited::Denied(format!("the policy refuses this path: {why}"));
        }
        let root = src.root(&self.reg.base_dir);
        let listing = self.listings.entry(c.source.clone()).or_insert_with(|| {
            indexer::walk::list(&root)
                .map(|v| v.into_iter().map(|f| (f.rel.clone(), f)).collect())
                .map_err(|e| e.to_string())
        });
        let found = match listing {
            Err(e) => return Cited::Missing(format!("cannot read the source: {e}")),
            Ok(m) => match m.get(&c.path) {
                Some(f) => f,
                None => return Cited::Missing("no such file in the source".into()),
            },
        };
        match indexer::walk::read_text(found, self.max_bytes) {
            Ok((text, _)) => Cited::Text {
                text: self.redactor.redact(&text, Some(&c.path)).text,
                since: None,
            },
            Err(skip) => Cited::Missing(format!("not readable as text ({})", skip.code())),
        }
    }
}

/// Problems with who owns a package (the owner must be known).
pub(crate) fn owner_problem(reg: &Registry, pkg: &TopicPackage) -> Option<Problem> {
    let known = reg.sources.values().any(|s| s.owner == pkg.owner) || reg.principal(&pkg.owner).is_some();
    (!known).then(|| Problem {
        line: pkg.lines.owner,
        code: "unknown_owner",
        message: format!(
            "owner {:?} is neither a source owner nor a principal in the registry",
            pkg.owner
        ),
    })
}

pub(crate) fn verify_on_disk(
    reg: &Registry,
    reader: &mut DiskReader<'_>,
    pkg: &TopicPackage,
    today: jiff::civil::Date,
) -> Verification {
    verify(pkg, today, retriever::default_max_age(reg, pkg), &mut |c| {
        reader.read(c)
    })
}

/// A path as printed: relative to the working directory when possible.
pub(crate) fn shown(p: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let p = p.strip_prefix(&cwd).unwrap_or(p);
    p.strip_prefix(".").unwrap_or(p).display().to_string()
}

pub fn packages(cmd: PackagesCmd, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
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
        PackagesCmd::Draft(args) => draft(args, s, store, &reg, &policy),
    }
}

fn draft(
    args: DraftArgs,
    s: &Settings,
    store: &RegistryStore,
    reg: &Registry,
    policy: &Policy<'_>,
) -> anyhow::Result<ExitCode> {
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
    let retriever = crate::querying::open_retriever(s, store.data_dir())?;
    let caller = crate::querying::caller(reg, args.principal.as_deref(), policy);
    let answer = retriever.query(
        &caller,
        topic,
        &retriever::Options {
            limit: args.chunks.clamp(1, 50),
            max_tokens: 1_000_000,
            packages: false,
            ..Default::default()
        },
    )?;
    let chunks: Vec<packages::draft::DraftChunk> = answer
        .results
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
    store.record(vec![
        Event::new(&s.actor, "topic.draft", &id)
            .detail("topic_hash", registry::ContentHash::of(topic.as_bytes()).short())
            .detail("sentences", sentences.len())
            .detail("files", cited.iter().cloned().collect::<Vec<_>>())
            .detail("scope", caller.scope.principal.clone()),
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

pub(crate) fn status_name(s: PackageStatus) -> &'static str {
    match s {
        PackageStatus::Fresh => "fresh",
        PackageStatus::Stale => "stale",
        PackageStatus::Draft => "draft",
    }
}

fn ser<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|x| x.as_str().map(str::to_string))
        .unwrap_or_default()
}
