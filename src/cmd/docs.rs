//! `ctxplane completions SHELL` and `ctxplane manpage`: generated from the
//! clap definitions, so they never drift from the commands.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "ctxplane", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn manpage() -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
