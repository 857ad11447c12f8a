//! `ctxplane index [--watch]` and `ctxplane freshness`.

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use indexer::PassReport;
use plane::{PassKind, PassOutcome, Plane, Progress};
use serde_json::json;

use crate::cli::{FreshnessArgs, IndexArgs};
use crate::print::print_json;

/// Progress bars on a terminal.
#[derive(Default)]
pub(crate) struct Bars {
    files: Option<(String, indicatif::ProgressBar)>,
    chunks: Option<indicatif::ProgressBar>,
}

fn style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

impl Progress for Bars {
    fn files(&mut self, source: &str, done: u64, total: u64) {
        if self.files.as_ref().is_none_or(|(s, _)| s != source) {
            if let Some((_, b)) = self.files.take() {
                b.finish();
            }
            let b = indicatif::ProgressBar::new(total).with_style(style(
                "{prefix:>20} [{bar:30}] {pos}/{len} files {per_sec} eta {eta}",
            ));
            b.set_prefix(source.to_string());
            self.files = Some((source.to_string(), b));
        }
        if let Some((_, b)) = &self.files {
            b.set_position(done);
        }
    }

    fn chunks(&mut self, done: u64, total: u64) {
        let b = self.chunks.get_or_insert_with(|| {
            let b = indicatif::ProgressBar::new(total).with_style(style(
                "{prefix:>20} [{bar:30}] {pos}/{len} chunks {per_sec} eta {eta}",
            ));
            b.set_prefix("embedding");
            b
        });
        b.set_length(total);
        b.set_position(done);
    }

    fn finish(&mut self) {
        if let Some((_, b)) = self.files.take() {
            b.finish();
        }
        if let Some(b) = self.chunks.take() {
            b.finish_and_clear();
        }
    }
}

pub fn index(
    args: IndexArgs,
    mut s: plane::Settings,
    store: registry::RegistryStore,
) -> anyhow::Result<ExitCode> {
    if let Some(rules) = args.rules.clone() {
        s.redaction_rules = Some(rules);
    }
    if let Some(n) = args.max_file_bytes {
        s.max_file_bytes = n;
    }
    let embedding = if args.no_embed {
        plane::Embedding::Off("skipped (--no-embed)".into())
    } else {
        plane::Embedding::On {
            bulk_threads: s.embed_threads,
        }
    };
    let plane = Plane::open(s, store, plane::Profile::reader(embedding))?;
    // Watch before the first pass, so nothing that changes during it is missed.
    let watching = if args.watch {
        let reg = plane.registry()?;
        Some(crate::watch::Watching::start(
            &reg,
            plane.store(),
            args.debounce_ms,
        )?)
    } else {
        None
    };
    let show_progress = !args.out.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = if show_progress {
        plane.update(None, PassKind::Full, &mut Bars::default())?
    } else {
        plane.update(None, PassKind::Full, &mut plane::Quiet)?
    };
    let Some(outcome) = outcome else {
        anyhow::bail!("an emergency stop is in force: no indexing until a steward resumes");
    };
    let elapsed = std::time::Duration::from_millis(outcome.elapsed_ms);
    if args.out.json && args.watch {
        println!(
            "{}",
            json!({"event": "pass", "report": outcome.report, "elapsed_ms": outcome.elapsed_ms})
        );
        println!("{}", json!({"event": "vectors", "vectors": outcome.vectors}));
    } else if args.out.json {
        print_json(&outcome)?;
    } else {
        print_summary(&outcome.report, elapsed);
        print_vectors(&outcome.vectors);
    }
    if let Some(w) = watching {
        if !args.out.json {
            eprintln!("watching the approved sources and the registry; Ctrl-C to stop");
        }
        let json = args.out.json;
        let never = AtomicBool::new(false);
        crate::watch::follow(&plane, w, &never, &mut |registry_changed, o: &PassOutcome| {
            print_update(json, registry_changed, o)
        });
        return Ok(ExitCode::SUCCESS);
    }
    let failed = outcome.report.sources.iter().any(|s| s.error.is_some());
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_update(json: bool, registry_changed: bool, o: &PassOutcome) {
    let report = &o.report;
    if json {
        println!(
            "{}",
            json!({"event": "update", "registry_reloaded": registry_changed, "report": report, "elapsed_ms": o.elapsed_ms})
        );
        if o.vectors["status"] != "not_run" {
            println!("{}", json!({"event": "vectors", "vectors": o.vectors}));
        }
    } else if report.committed || registry_changed {
        let now = jiff::Timestamp::now().strftime("%H:%M:%S");
        let elapsed = std::time::Duration::from_millis(o.elapsed_ms);
        for sr in report.sources.iter().filter(|r| r.indexed + r.removed > 0) {
            println!(
                "{now} {}: {} indexed, {} removed, {} secrets redacted ({:.0?})",
                sr.source, sr.indexed, sr.removed, sr.redactions, elapsed
            );
        }
        for id in &report.purged {
            println!("{now} {id}: purged (no longer approved)");
        }
    }
}

pub(crate) fn print_vectors(v: &serde_json::Value) {
    if v["status"] == "ready" {
        println!(
            "vectors ({}, {}): {}/{} chunks ({:.1}%); {} embedded, {} from cache, {} files' vectors removed ({} ms)",
            v["store"].as_str().unwrap_or(""),
            v["model_id"].as_str().unwrap_or(""),
            v["vectors"],
            v["chunks"],
            v["coverage"].as_f64().unwrap_or(0.0) * 100.0,
            v["embedded"],
            v["from_cache"],
            v["files_removed"],
            v["elapsed_ms"]
        );
    } else {
        println!(
            "vectors: {}; search is lexical only",
            v["reason"].as_str().unwrap_or("unavailable")
        );
    }
}

pub(crate) fn print_summary(report: &PassReport, elapsed: std::time::Duration) {
    for sr in &report.sources {
        let denied: u64 = sr.denied.values().map(|t| t.count).sum();
        let skipped: u64 = sr.skipped.values().map(|t| t.count).sum();
        println!(
            "{}: {} files, {} indexed, {} unchanged, {} removed; {} chunks added, {} removed; {} denied, {} skipped, {} secrets redacted",
            sr.source,
            sr.files_seen,
            sr.indexed,
            sr.unchanged,
            sr.removed,
            sr.chunks_added,
            sr.chunks_removed,
            denied,
            skipped,
            sr.redactions
        );
        for (kind, tallies) in [("denied ", &sr.denied), ("skipped", &sr.skipped)] {
            for (reason, t) in tallies {
                println!(
                    "    {kind} {reason:<20} {:>5}  e.g. {}",
                    t.count,
                    t.examples.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
                );
            }
        }
        if let Some(e) = &sr.error {
            println!("    error: {e}");
        }
    }
    for id in &report.purged {
        println!("{id}: purged (no longer approved)");
    }
    println!(
        "{} chunks in the index; pass took {:.2?}",
        report.total_chunks, elapsed
    );
}

pub fn freshness(args: FreshnessArgs, plane: &Plane) -> anyhow::Result<ExitCode> {
    let out = plane.freshness(None, None)?;
    let attention = out.needs_attention;
    let now = out.at;
    let report = &out.sources;
    if args.out.json {
        print_json(&out)?;
    } else {
        let ago = |t: Option<jiff::Timestamp>| match t {
            Some(t) => {
                let secs = now.duration_since(t).as_secs().max(0);
                match secs {
                    0..120 => format!("{secs}s ago"),
                    120..7_200 => format!("{}m ago", secs / 60),
                    7_200..172_800 => format!("{}h ago", secs / 3600),
                    _ => format!("{}d ago", secs / 86_400),
                }
            }
            None => "never".into(),
        };
        println!(
            "{:<20} {:>4} {:<14} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7}",
            "SOURCE",
            "TIER",
            "STATUS",
            "LAST PASS",
            "LAST INGEST",
            "FILES",
            "MODIFIED",
            "ADDED",
            "REMOVED",
            "STALE"
        );
        for f in report {
            println!(
                "{:<20} {:>4} {:<14} {:>10} {:>10} {:>7} {:>8} {:>8} {:>8} {:>7}",
                f.source,
                f.tier,
                f.status.as_str(),
                ago(f.last_pass),
                ago(f.last_ingest),
                f.files_indexed,
                f.modified.count,
                f.added.count,
                f.removed.count,
                f.stale.count
            );
            for (what, t) in [
                ("modified", &f.modified),
                ("added", &f.added),
                ("removed", &f.removed),
            ] {
                if t.count > 0 {
                    println!(
                        "    {what}: {}",
                        t.examples.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    );
                }
            }
            if f.stale.count > 0 {
                println!(
                    "    stale (content unchanged for over {} days): {}",
                    f.max_age_days,
                    f.stale
                        .examples
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            for d in &f.drift {
                println!(
                    "    drift: {}:{} says \"{}\" but the lockfiles pin {} {}",
                    d.file,
                    d.line,
                    d.claim,
                    d.dependency,
                    d.pinned.join(", ")
                );
            }
            if let Some(e) = &f.error {
                println!("    error: {e}");
            }
        }
    }
    Ok(if args.check && attention > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
