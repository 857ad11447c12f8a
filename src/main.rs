//! The ctxplane binary: adapters only. It parses the command line (`cli`),
//! runs one command per file (`cmd/`), serves HTTP (`http/`) and MCP
//! (`mcp`), follows file changes (`watch`); every decision is the plane's.

mod cli;
mod cmd;
mod http;
mod mcp;
mod print;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use plane::{Overrides, Settings};
use registry::{RegistryStore, SystemClock};

use crate::cli::{Cli, Command};

/// Exit codes: 0 success, 1 a check failed or an operation was refused,
/// 2 bad usage or configuration (clap uses 2 for usage errors too).
fn main() -> ExitCode {
    bound_native_heap();
    let cli = Cli::parse();
    // Servers log their requests and passes; one-shot commands print their
    // own results and log only warnings unless RUST_LOG says otherwise.
    let serving = matches!(cli.command, Command::Serve(_) | Command::Mcp(_));
    init_logging(&cli.log_format, if serving { "info" } else { "warn" });
    let json = cli.command.wants_json();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let plane_err = e.downcast_ref::<plane::Error>();
            // Input past a limit is bad usage at the CLI.
            let config_error = matches!(
                plane_err,
                Some(plane::Error::Config(_) | plane::Error::TooLarge(_))
            ) || e.downcast_ref::<plane::ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<registry::RegistryError>(),
                    Some(registry::RegistryError::Invalid { .. } | registry::RegistryError::NotFound { .. })
                );
            if json {
                let kind =
                    plane_err.map_or(if config_error { "config" } else { "error" }, plane::Error::kind);
                println!("{}", serde_json::json!({"error": format!("{e:#}"), "kind": kind}));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// Logs go to standard error (standard output carries results and, for
/// `mcp`, the protocol): levels from RUST_LOG (else `default`), text or
/// JSON lines.
fn init_logging(format: &str, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if !matches!(cli.log_format.as_str(), "text" | "json") {
        return Err(plane::ConfigError(format!(
            "--log-format must be text or json, not {:?}",
            cli.log_format
        ))
        .into());
    }
    match &cli.command {
        Command::Redact(args) => return cmd::registry::redact(args),
        Command::Completions { shell } => return cmd::docs::completions(*shell),
        Command::Manpage => return cmd::docs::manpage(),
        _ => {}
    }
    let settings = Settings::resolve(Overrides {
        config: cli.config,
        registry: cli.registry,
        data_dir: cli.data_dir,
        actor: cli.actor,
    })?;
    // Reading and verifying the log need no secret; anything that may
    // append does.
    if !matches!(
        cli.command,
        Command::Audit(
            crate::cli::AuditCmd::Verify { .. }
                | crate::cli::AuditCmd::Tail { .. }
                | crate::cli::AuditCmd::Keygen { .. }
        )
    ) {
        settings.require_audit_signer()?;
    }
    let store = RegistryStore::new(&settings.registry, &settings.data_dir, Arc::new(SystemClock))
        .with_audit_signer(settings.audit_signer.clone());
    // A read-only replica appends to a chain of its own, and its exit
    // checkpoint covers that chain.
    let store = match &cli.command {
        Command::Serve(a) if a.read_only => store.with_audit_process(&plane::replica_process_id())?,
        _ => store,
    };
    // What this process appended to the audit log is covered by a signed
    // checkpoint when it exits (servers at shutdown), whatever the outcome;
    // a process that appended nothing signs nothing.
    let checkpoint = settings.audit_signer.as_ref().map(|_| store.audit());
    let outcome = command(cli.command, settings, store);
    if let Some(log) = checkpoint.filter(|l| l.appended_here())
        && let Err(e) = log.checkpoint(jiff::Timestamp::now())
    {
        tracing::error!(error = %e, "could not sign an audit checkpoint at exit");
    }
    outcome
}

fn command(command: Command, settings: Settings, store: RegistryStore) -> anyhow::Result<ExitCode> {
    match command {
        Command::Registry(c) => cmd::registry::registry(c, &settings, &store),
        Command::Audit(c) => cmd::registry::audit(c, &store),
        Command::Policy(c) => cmd::registry::policy(c, &settings, &store),
        Command::Index(args) => cmd::index::index(args, settings, store),
        Command::Check(args) => cmd::check::check(args, &cmd::query::reader(settings, store, false)?),
        Command::Freshness(args) => cmd::index::freshness(args, &cmd::query::reader(settings, store, false)?),
        Command::Packages(c) => cmd::packages::packages(c, &cmd::query::reader(settings, store, true)?),
        Command::Demo(args) => cmd::demo::demo(args, &settings, store),
        Command::Mcp(args) => mcp::mcp(args, &settings, store),
        Command::Serve(args) => cmd::serve::serve(args, &settings, store),
        Command::Query(args) => {
            let model = args.mode != "lexical";
            cmd::query::query(args, &cmd::query::reader(settings, store, model)?)
        }
        Command::Provenance(args) => {
            cmd::query::provenance(args, &cmd::query::reader(settings, store, false)?)
        }
        Command::Status(args) => cmd::query::status(args, &cmd::query::reader(settings, store, true)?),
        Command::Redact(_) | Command::Completions { .. } | Command::Manpage => {
            unreachable!("handled before settings are resolved")
        }
    }
}

/// Keeps the C heap that onnxruntime allocates from (glibc's malloc) from
/// holding on to what it frees. Embedding a batch of long texts needs tens
/// of MB of attention scratch per run; glibc raises its mmap threshold
/// after such a block is freed, so later blocks come from the per-thread
/// arenas and stay there, fragmented: a 15-minute serve soak under a
/// watcher re-embedding five edits a second climbed to ~1 GB and kept
/// rising. A fixed 256 KiB threshold returns large blocks to the OS when
/// they are freed (`serve_load --soak` shows the figures). The number of
/// arenas is left alone: two arenas made passes ~20% slower (contention).
/// Called first in `main`, before any thread exists.
fn bound_native_heap() {
    // The one call into C outside the vector kernels (see ARCHITECTURE.md).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only sets an allocator parameter and has no
    // memory-safety preconditions; a refused setting (return 0) leaves
    // glibc's default in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}
