//! Command handlers: convert arguments, call the library, print the result.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use registry::Outcome;
use registry::audit::Entry;
use registry::edit::{Edit, NewException, NewPrincipal, NewSource, render};
use registry::{ContentHash, Permit, Registry, RegistryStore, Role, SourceId, SourceKind, Status, Tier};
use serde_json::json;

use plane::Settings;
use plane::views::{ExceptionView, PrincipalView, SourceView};

use crate::cli::*;
use crate::print::{print_json, table};

fn registry_dir(store: &RegistryStore) -> &Path {
    match store.registry_path().parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

pub fn registry(cmd: RegistryCmd, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    match cmd {
        RegistryCmd::Init(out) => {
            let empty = Registry::parse("", Path::new(".")).map_err(|_| anyhow::anyhow!("empty registry"))?;
            let text = render(
                &empty,
                "ctxplane source registry: what may be ingested, by whom it may be read.\n\
                 Edit with `ctxplane registry ...` (atomic, audited) or by hand in git.\n\
                 Tiers: 1 (least sensitive) to 4 (most); a principal reads up to its tier_ceiling.",
            );
            let reg = store.init(&s.actor, &text)?;
            if out.json {
                print_json(&json!({"registry": store.registry_path(), "registry_version": reg.version}))?;
            } else {
                println!(
                    "created {} (version {})",
                    store.registry_path().display(),
                    reg.version.short()
                );
            }
        }
        RegistryCmd::List(out) => {
            let reg = store.load(&s.actor)?;
            let dir = registry_dir(store);
            if out.json {
                let sources: Vec<_> = reg.sources.values().map(|x| SourceView::new(x, dir)).collect();
                print_json(&json!({
                    "registry": store.registry_path(),
                    "registry_version": reg.version,
                    "sources": sources,
                }))?;
            } else {
                let rows: Vec<Vec<String>> = reg
                    .sources
                    .values()
                    .map(|x| {
                        vec![
                            x.id.to_string(),
                            x.kind.as_str().into(),
                            x.tier.to_string(),
                            x.status.to_string(),
                            x.owner.clone(),
                            x.location.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["ID", "KIND", "TIER", "STATUS", "OWNER", "LOCATION"], &rows)
                );
                let approved = reg
                    .sources
                    .values()
                    .filter(|x| x.status == Status::Approved)
                    .count();
                println!(
                    "\n{} source(s), {approved} approved; {} principal(s); {} exception(s). registry {} version {}",
                    reg.sources.len(),
                    reg.principals.len(),
                    reg.exceptions.len(),
                    store.registry_path().display(),
                    reg.version.short()
                );
            }
        }
        RegistryCmd::Validate(out) => {
            // Validation reads only; it must work where the data dir is not writable.
            let reg = Registry::load(store.registry_path())?;
            if out.json {
                print_json(
                    &json!({"valid": true, "registry_version": reg.version, "sources": reg.sources.len()}),
                )?;
            } else {
                println!(
                    "{} is valid (version {})",
                    store.registry_path().display(),
                    reg.version.short()
                );
            }
        }
        RegistryCmd::Add(a) => {
            let edit = Edit::AddSource(NewSource {
                id: SourceId::new(a.id).map_err(anyhow::Error::msg)?,
                kind: match a.kind {
                    KindArg::Dir => SourceKind::Dir,
                    KindArg::Git => SourceKind::Git,
                },
                location: a.location,
                owner: a.owner,
                tier: a.tier.parse::<Tier>().map_err(anyhow::Error::msg)?,
                description: a.description,
                include: a.include,
                exclude: a.exclude,
                never_ingest: a.never_ingest,
            });
            let applied = store.apply(&s.actor, edit)?;
            if let Some(src) = applied
                .registry
                .sources
                .values()
                .find(|x| x.id.as_str() == applied.entry.subject)
                && !src.root(registry_dir(store)).exists()
            {
                eprintln!(
                    "warning: {} does not exist on this machine",
                    src.root(registry_dir(store)).display()
                );
            }
            report_edit(&applied.entry, a.out.json, "proposed")?;
        }
        RegistryCmd::Approve(a) => set_status(store, s, a, Status::Approved)?,
        RegistryCmd::Deny(a) => set_status(store, s, a, Status::Denied)?,
        RegistryCmd::Revoke(a) => set_status(store, s, a, Status::Revoked)?,
        RegistryCmd::Exception(ExceptionCmd::Grant(g)) => {
            // Whole seconds, as the registry file stores them.
            let now = store.clock().now();
            let now = Timestamp::from_second(now.as_second()).unwrap_or(now);
            let expires_at = match (&g.expires_at, &g.duration) {
                (Some(t), _) => t
                    .parse::<Timestamp>()
                    .with_context(|| format!("--expires-at {t:?} is not an RFC 3339 time"))?,
                (None, Some(d)) => now
                    .checked_add(parse_duration(d)?)
                    .context("--for reaches past the end of time")?,
                (None, None) => bail!("give --expires-at or --for"),
            };
            let source = SourceId::new(g.source).map_err(anyhow::Error::msg)?;
            let id = match g.id {
                Some(id) => id,
                None => {
                    let h = ContentHash::of(format!("{source}\0{}\0{now}", g.path).as_bytes());
                    format!("exc-{}", &h.to_hex()[..10])
                }
            };
            let edit = Edit::GrantException(NewException {
                id,
                source,
                path: g.path,
                permits: g
                    .permits
                    .iter()
                    .map(|p| match p {
                        PermitArg::NeverIngest => Permit::NeverIngest,
                    })
                    .collect(),
                approver: g.approver.unwrap_or_else(|| s.actor.clone()),
                reason: g.reason,
                granted_at: now,
                expires_at,
            });
            let applied = store.apply(&s.actor, edit)?;
            report_edit(&applied.entry, g.out.json, "granted")?;
        }
        RegistryCmd::Exception(ExceptionCmd::List(out)) => {
            let reg = store.load(&s.actor)?;
            let now = store.clock().now();
            let views: Vec<_> = reg
                .exceptions
                .iter()
                .map(|x| ExceptionView::new(x, now))
                .collect();
            if out.json {
                print_json(&json!({"now": now, "exceptions": views}))?;
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.id.into(),
                            v.source.into(),
                            v.path.into(),
                            format!("{:?}", v.window).to_lowercase(),
                            v.expires_at.to_string(),
                            v.approver.into(),
                            v.reason.into(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["ID", "SOURCE", "PATH", "WINDOW", "EXPIRES", "APPROVER", "REASON"],
                        &rows
                    )
                );
            }
        }
        RegistryCmd::Principal(PrincipalCmd::Add(a)) => {
            let token = plane::overview::new_token()?;
            let mut sources = Vec::new();
            for id in a.sources {
                sources.push(SourceId::new(id).map_err(anyhow::Error::msg)?);
            }
            let edit = Edit::AddPrincipal(NewPrincipal {
                name: a.name,
                role: match a.role {
                    RoleArg::Agent => Role::Agent,
                    RoleArg::Steward => Role::Steward,
                    RoleArg::Ci => Role::Ci,
                    RoleArg::Developer => Role::Developer,
                },
                token_hash: ContentHash::of(token.as_bytes()),
                tier_ceiling: a.tier_ceiling.parse::<Tier>().map_err(anyhow::Error::msg)?,
                sources,
                all_sources: a.all_sources,
                description: a.description,
                limits: registry::Limits {
                    requests_per_minute: a.requests_per_minute,
                    tokens_per_day: a.tokens_per_day,
                },
            });
            let applied = store.apply(&s.actor, edit)?;
            if a.out.json {
                print_json(
                    &json!({"principal": applied.entry.subject, "token": token, "audit_seq": applied.entry.seq}),
                )?;
            } else {
                println!(
                    "principal {} added (audit #{})",
                    applied.entry.subject, applied.entry.seq
                );
                println!("token (shown once, store it now): {token}");
            }
        }
        RegistryCmd::Principal(PrincipalCmd::List(out)) => {
            let reg = store.load(&s.actor)?;
            let views: Vec<_> = reg.principals.iter().map(PrincipalView::new).collect();
            if out.json {
                print_json(&json!({"principals": views}))?;
            } else {
                let rows: Vec<Vec<String>> = views
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.into(),
                            v.role.into(),
                            v.tier_ceiling.to_string(),
                            v.sources.join(","),
                            v.token_hash_prefix.clone(),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(&["NAME", "ROLE", "CEILING", "SOURCES", "TOKEN HASH"], &rows)
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Approve, deny or revoke through the plane: a revocation purges every
/// store at once and proves it, exactly as over HTTP.
fn set_status(store: &RegistryStore, s: &Settings, a: StatusArgs, status: Status) -> anyhow::Result<()> {
    let embedding = if status == Status::Revoked {
        plane::Embedding::On { bulk_threads: 1 }
    } else {
        plane::Embedding::Off("not needed".into())
    };
    let store = RegistryStore::new(store.registry_path(), store.data_dir(), store.clock_handle())
        .with_audit_signer(store.audit_signer().cloned());
    let plane = plane::Plane::open(s.clone(), store, plane::Profile::reader(embedding))?;
    let out = plane.set_status(&s.actor, &a.id, status, a.reason)?;
    if a.out.json {
        print_json(&out)
    } else {
        println!("{} {} (audit #{})", out.source, out.status, out.audit_seq);
        if let Some(r) = &out.remaining {
            println!(
                "purged: {} chunks, {} vectors, manifest {}, {} deleted documents, {} dead vector records and {} orphan cached vectors remain; verified {}",
                r.chunks,
                r.vectors,
                if r.manifest { "present" } else { "gone" },
                r.deleted_in_index,
                r.dead_vectors,
                r.cached_vectors,
                out.purge_verified.unwrap_or(false)
            );
        }
        Ok(())
    }
}

fn report_edit(entry: &Entry, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        print_json(&json!({
            "action": entry.action,
            "subject": entry.subject,
            "audit_seq": entry.seq,
            "audit_hash": entry.hash,
            "registry_version": entry.details.get("registry_version"),
        }))
    } else {
        println!(
            "{} {verb} (audit #{} {})",
            entry.subject,
            entry.seq,
            &entry.hash[..12]
        );
        Ok(())
    }
}

/// `90m`, `12h`, `30d`, `2w`.
pub fn parse_duration(s: &str) -> anyhow::Result<SignedDuration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .with_context(|| format!("duration {s:?} must look like 90m, 12h, 30d or 2w"))?;
    let minutes = match unit {
        "m" => 1,
        "h" => 60,
        "d" => 60 * 24,
        "w" => 60 * 24 * 7,
        _ => bail!("duration {s:?} must look like 90m, 12h, 30d or 2w"),
    };
    if n <= 0 {
        bail!("duration {s:?} must be positive");
    }
    n.checked_mul(minutes)
        .and_then(|m| m.checked_mul(60))
        .map(SignedDuration::from_secs)
        .context("duration too long")
}

pub fn audit(cmd: AuditCmd, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let log = store.audit();
    match cmd {
        AuditCmd::Tail { lines, out } => {
            let entries = log.tail_entries(lines)?;
            if out.json {
                print_json(&entries)?;
            } else {
                for e in &entries {
                    println!(
                        "#{:<5} {}  {:<10} {:<28} {}  {}",
                        e.seq, e.ts, e.actor, e.action, e.subject, e.details
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Keygen { out } => {
            keygen(&out, store.data_dir())?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Checkpoint(out) => {
            if store.audit_signer().is_none() {
                bail!(
                    "no audit signing key: set audit_key_file in the config, CTXPLANE_AUDIT_KEY_FILE or CTXPLANE_AUDIT_KEY"
                );
            }
            let cp = log.checkpoint(store.clock().now())?;
            if out.json {
                print_json(&cp)?;
            } else {
                match cp {
                    Some(cp) => println!("signed checkpoint of entry {} ({})", cp.seq, &cp.hash[..12]),
                    None => println!("the last checkpoint already covers the head"),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { keys, copies, out } => {
            let report = if keys.is_empty() {
                log.verify()?
            } else {
                let keys = keys
                    .iter()
                    .map(|k| registry::checkpoint::verifying_key(k))
                    .collect::<Result<Vec<_>, _>>()?;
                log.verify_signed(&keys, &copies)?
            };
            if out.json {
                print_json(&report)?;
            } else if report.intact {
                println!(
                    "audit log intact: {} entries, head {}{}",
                    report.entries,
                    report.last_hash.as_deref().map_or("-", |h| &h[..12]),
                    report
                        .signed_through
                        .map(|s| format!(", signed through entry {s}"))
                        .unwrap_or_default()
                );
            } else if let Some(bad) = &report.first_bad {
                eprintln!(
                    "audit log TAMPERED: {}:{}: {} ({} entries verified before it)",
                    report.path.display(),
                    bad.line,
                    bad.reason,
                    report.entries
                );
            }
            for n in &report.notes {
                eprintln!("note: {n}");
            }
            if !out.json {
                for c in &report.chains {
                    let r = &c.report;
                    let state = match &r.first_bad {
                        None => "intact".to_string(),
                        Some(b) => format!("TAMPERED at line {}: {}", b.line, b.reason),
                    };
                    println!(
                        "  chain {}: {} entries, {state}{}",
                        c.process,
                        r.entries,
                        r.signed_through
                            .map(|s| format!(", signed through entry {s}"))
                            .unwrap_or_default()
                    );
                    for n in &r.notes {
                        eprintln!("note: chain {}: {n}", c.process);
                    }
                }
            }
            Ok(if report.intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Writes a new signing key to `out` and prints its public key.
fn keygen(out: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let public = registry::checkpoint::AuditSigner::create_key_file(out, data_dir)?;
    println!("{public}");
    eprintln!(
        "secret key written to {}; verify with `ctxplane audit verify --key {public}`",
        out.display()
    );
    Ok(())
}

pub fn policy(cmd: PolicyCmd, s: &Settings, store: &RegistryStore) -> anyhow::Result<ExitCode> {
    let reg = store.load(&s.actor)?;
    let policy = reg.policy(store.clock());
    match cmd {
        PolicyCmd::Decide { source, paths, out } => {
            let decisions = plane::overview::decide(store, &reg, &s.actor, &source, &paths)?;
            if out.json {
                print_json(&decisions)?;
            } else {
                for d in &decisions {
                    match &d.outcome {
                        Outcome::Allow { exception: None } => println!("allow  {}  {}", d.path, d.id),
                        Outcome::Allow { exception: Some(x) } => {
                            println!("allow  {}  {}  (via exception {x})", d.path, d.id)
                        }
                        Outcome::Deny(r) => println!("deny   {}  {}  ({r})", d.path, d.id),
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCmd::Scope { principal, out } => {
            let p = reg
                .principal(&principal)
                .with_context(|| format!("no principal {principal:?}"))?;
            let scope = policy.scope_for(p);
            if out.json {
                print_json(&scope)?;
            } else {
                println!(
                    "{} ({}) reads tiers 1-{} of: {}",
                    scope.principal,
                    scope.role,
                    scope.tier_ceiling,
                    if scope.sources.is_empty() {
                        "nothing".to_string()
                    } else {
                        scope
                            .sources
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Largest input `ctxplane redact` accepts.
const MAX_REDACT_BYTES: u64 = 64 << 20;

pub fn redact(args: &RedactArgs) -> anyhow::Result<ExitCode> {
    use indexer::redact::Redactor;
    use std::io::{Read, Write};

    let rules = plane::ingest::load_rules(args.rules.as_deref(), !args.no_builtin)?;
    if !args.files.is_empty() {
        return redact_files(args, Redactor::new(rules, [0u8; 32]));
    }
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_REDACT_BYTES + 1)
        .read_to_end(&mut input)
        .context("reading standard input")?;
    if input.len() as u64 > MAX_REDACT_BYTES {
        bail!("standard input is larger than {} MiB", MAX_REDACT_BYTES >> 20);
    }
    let text = String::from_utf8(input).map_err(|e| {
        anyhow::anyhow!(
            "standard input is not valid UTF-8 (first bad byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })?;
    // No findings log is kept here, so a fixed key is fine: the hash only
    // lets a reader see that two findings are the same value.
    let redacted = Redactor::new(rules, [0u8; 32]).redact(&text, args.path.as_deref());
    std::io::stdout().write_all(redacted.text.as_bytes())?;
    print_findings(args.json, None, &redacted.findings)?;
    Ok(ExitCode::SUCCESS)
}

fn print_findings(
    json: bool,
    file: Option<&str>,
    findings: &[indexer::redact::Finding],
) -> anyhow::Result<()> {
    for f in findings {
        match (json, file) {
            (true, None) => eprintln!("{}", serde_json::to_string(f)?),
            (true, Some(file)) => eprintln!("{}", serde_json::json!({ "file": file, "finding": f })),
            (false, None) => eprintln!("redacted {} at {}:{}", f.rule_id, f.line, f.column),
            (false, Some(file)) => eprintln!("redacted {} at {file}:{}:{}", f.rule_id, f.line, f.column),
        }
    }
    Ok(())
}

/// `ctxplane redact FILE...`: every file read first, so a value found in
/// any of them is known (as a keyed hash) when each is redacted.
fn redact_files(args: &RedactArgs, redactor: indexer::redact::Redactor) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let mut texts = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid UTF-8 (first bad byte at offset {})",
                file.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        texts.push((file.to_string_lossy().replace('\\', "/"), text));
    }
    let mut known = indexer::redact::KnownSecrets::default();
    for (name, text) in &texts {
        redactor.redact_remembering(text, Some(name), &mut known);
    }
    let mut out = std::io::stdout().lock();
    for (name, text) in &texts {
        let redacted = redactor.redact_remembering(text, Some(name), &mut known);
        out.write_all(redacted.text.as_bytes())?;
        print_findings(args.json, Some(name), &redacted.findings)?;
    }
    Ok(ExitCode::SUCCESS)
}
