//! The ctxplane binary: CLI today; HTTP and MCP servers later. Thin: it
//! parses, calls the library crates, and prints.

mod checking;
mod cli;
mod commands;
mod config;
mod demo;
mod indexing;
mod mcp;
mod openapi;
mod querying;
mod serve;
mod topics;
mod views;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use registry::{RegistryError, RegistryStore, SystemClock};

use crate::cli::{Cli, Command};
use crate::config::{Overrides, Settings};

/// Exit codes: 0 success, 1 a check failed or an operation was refused,
/// 2 bad usage or configuration (clap uses 2 for usage errors too).
fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            let config_error = matches!(
                e.downcast_ref::<RegistryError>(),
                Some(RegistryError::Invalid { .. } | RegistryError::NotFound { .. })
            ) || e.downcast_ref::<config::ConfigError>().is_some();
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::Redact(args) = &cli.command {
        // Needs no registry or data directory.
        return commands::redact(args);
    }
    let settings = Settings::resolve(Overrides {
        config: cli.config,
        registry: cli.registry,
        data_dir: cli.data_dir,
        actor: cli.actor,
    })?;
    let store = RegistryStore::new(&settings.registry, &settings.data_dir, Arc::new(SystemClock));
    match cli.command {
        Command::Registry(cmd) => commands::registry(cmd, &settings, &store),
        Command::Audit(cmd) => commands::audit(cmd, &store),
        Command::Policy(cmd) => commands::policy(cmd, &settings, &store),
        Command::Index(args) => indexing::index(args, &settings, &store),
        Command::Check(args) => checking::check(args, &settings, &store),
        Command::Freshness(args) => indexing::freshness(args, &settings, &store),
        Command::Packages(cmd) => topics::packages(cmd, &settings, &store),
        Command::Demo(args) => demo::demo(args, &settings, store),
        Command::Mcp(args) => mcp::mcp(args, &settings, store),
        Command::Serve(args) => serve::serve(args, &settings, store),
        Command::Query(args) => querying::query(args, &settings, &store),
        Command::Provenance(args) => querying::provenance(args, &settings, &store),
        Command::Status(args) => querying::status(args, &settings, &store),
        Command::Redact(_) => unreachable!("handled before settings are resolved"),
    }
}
