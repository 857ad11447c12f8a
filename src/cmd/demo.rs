//! `ctxplane demo`: the main job on the example organisation. Indexes it,
//! answers a few agent questions from each tier with provenance, shows
//! freshness and drift, the CI check and the audit chain, then serves the
//! HTTP API on loopback with the demo tokens printed.

use std::sync::Arc;

use plane::query::{Asker, ContextRequest, Via};
use plane::{PassKind, Plane, Profile, Settings};
use registry::RegistryStore;

use crate::cli::{AuditCmd, DemoArgs, FreshnessArgs, Json, ServeArgs};

fn heading(text: &str) {
    println!("\n\x1b[1m== {text}\x1b[0m\n");
}

/// `| name | role | ceiling | `token` |` rows of the example's TOKENS.md.
fn demo_tokens(s: &Settings) -> Vec<(String, String, String)> {
    let path = s
        .registry
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .join("TOKENS.md");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let token = cells.get(4)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((cells[1].to_string(), cells[2].to_string(), token.to_string()))
        })
        .collect()
}

pub fn demo(args: DemoArgs, s: &Settings, store: RegistryStore) -> anyhow::Result<std::process::ExitCode> {
    heading("The registry: sources, tiers, owners, principals");
    crate::cmd::registry::registry(crate::cli::RegistryCmd::List(Json { json: false }), s, &store)?;
    crate::cmd::registry::registry(
        crate::cli::RegistryCmd::Principal(crate::cli::PrincipalCmd::List(Json { json: false })),
        s,
        &store,
    )?;

    heading("Indexing: policy on every file, secrets redacted, tree-sitter chunks, embeddings");
    let plane = Arc::new(Plane::open(s.clone(), store, Profile::server(true))?);
    let bars = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let outcome = if bars {
        plane.update(None, PassKind::Full, &mut crate::cmd::index::Bars::default())?
    } else {
        plane.update(None, PassKind::Full, &mut plane::Quiet)?
    };
    if let Some(o) = &outcome {
        crate::cmd::index::print_summary(&o.report, std::time::Duration::from_millis(o.elapsed_ms));
    }
    // As `serve` does: answer from the lexical index at once, while the
    // vectors are built behind it.
    heading("Answering before the vectors exist: lexical at once, vectors filled in behind");
    let first = plane.context(
        &Asker::Operator,
        ContextRequest {
            query: "How do we fail over the database?".into(),
            limit: Some(2),
            max_tokens: Some(3_000),
            packages: Some(false),
            ..Default::default()
        },
        Via::Cli,
    )?;
    crate::cmd::query::print_answer(&first);
    let started = std::time::Instant::now();
    while plane.fill_vectors()? > 0 {}
    let dense = plane.retriever()?.dense_status();
    println!(
        "vectors complete after {:.1} s: {} of {} chunks ({})",
        started.elapsed().as_secs_f64(),
        dense.vectors,
        dense.chunks,
        dense.reason.as_deref().unwrap_or("hybrid search from here on")
    );
    let asks = [
        (
            "coding-agent",
            "Is it safe to retry a capture?",
            "tier 1: a curated topic package, every citation verified",
        ),
        (
            "support-agent",
            "Is it safe to retry a capture?",
            "the same question from a tier-1 agent: that package cites a tier-2 source, so search within platform-docs",
        ),
        (
            "coding-agent",
            "How long after capture can we refund?",
            "tier 1 again",
        ),
        (
            "coding-agent",
            "Are reconciliation mismatches corrected automatically?",
            "a stale package (its cited code changed after review): served flagged, within the grace period",
        ),
        (
            "coding-agent",
            "Where are full card numbers kept?",
            "a package past its max age and grace: falls through to search",
        ),
        (
            "coding-agent",
            "DATABASE_URL and STRIPE_API_KEY in the env template",
            "tier 2: hybrid search; config/.env is never ingested, the template's secrets are redacted",
        ),
    ];
    for (who, q, why) in asks {
        heading(&format!("{who} asks: {q:?}  ({why})"));
        let p = plane
            .principal_named(who)
            .map_err(|_| anyhow::anyhow!("the demo needs principal {who} (examples/acme/registry.toml)"))?;
        let d = plane.context(
            &Asker::Principal(p),
            ContextRequest {
                query: q.to_string(),
                limit: Some(3),
                max_tokens: Some(2_500),
                ..Default::default()
            },
            Via::Cli,
        )?;
        crate::cmd::query::print_answer(&d);
        if let Some(h) = d.answer.results.first() {
            let pv = &h.provenance;
            println!(
                "  provenance of {}: {}:{}#L{}-L{} owner {} tier {} commit {} file blake3 {}… ingested {} decision {} redactions {}",
                h.id,
                pv.source,
                pv.path,
                pv.start_line,
                pv.end_line,
                pv.owner.as_deref().unwrap_or("-"),
                pv.tier,
                pv.commit.as_deref().unwrap_or("-"),
                &pv.file_hash[..12],
                pv.ingested_at.map(|t| t.to_string()).unwrap_or_default(),
                pv.decision_id.as_deref().unwrap_or("-"),
                pv.redactions
            );
        }
    }

    heading("Freshness and version drift");
    crate::cmd::index::freshness(
        FreshnessArgs {
            check: false,
            out: Json { json: false },
        },
        &plane,
    )?;

    heading(
        "The CI check (the example plants drift, an incomplete context package and two stale topic packages)",
    );
    crate::cmd::check::check(
        crate::cli::CheckArgs {
            source: None,
            snapshots: None,
            format: "text".into(),
            json: false,
        },
        &plane,
    )?;

    heading("The audit chain");
    crate::cmd::registry::audit(
        AuditCmd::Verify {
            keys: Vec::new(),
            copies: Vec::new(),
            out: Json { json: false },
        },
        plane.store(),
    )?;

    if args.no_serve {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let tokens = demo_tokens(s);
    let ready: Box<dyn FnOnce(std::net::SocketAddr) + Send> = Box::new(move |addr| {
        heading(&format!("Serving on http://{addr} (Ctrl-C to stop)"));
        let steward = tokens
            .iter()
            .find(|t| t.1 == "steward")
            .map_or("a steward token", |t| t.2.as_str());
        println!("  Steward console: http://{addr}/console (sign in with {steward})\n");
        for (name, role, token) in &tokens {
            println!("  {name:<14} {role:<10} {token}");
        }
        let token = tokens
            .iter()
            .find(|t| t.0 == "coding-agent")
            .map_or("TOKEN", |t| t.2.as_str());
        println!(
            "\nTry:\n  curl -s http://{addr}/v1/context -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' -d '{{\"query\": \"Is it safe to retry a capture?\"}}'"
        );
        println!("  curl -s http://{addr}/v1/openapi.json");
        println!("  curl -s http://{addr}/metrics");
    });
    crate::cmd::serve::serve_plane(
        plane,
        ServeArgs {
            listen: args.listen,
            no_watch: false,
            no_embed: false,
            read_only: false,
            max_connections: 512,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
        },
        Some(ready),
    )
}
