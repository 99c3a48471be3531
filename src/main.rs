//! `offpath`: the launcher. Parses configuration, starts telemetry and hands over to the
//! service crates; it holds no service logic of its own.

mod bench;
mod cli;
mod errors;
mod services;
mod supervise;
mod tools;
mod up;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

/// EX_USAGE from sysexits.h: the configuration was wrong.
const EX_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) if !err.use_stderr() => {
            // --help and --version: print and succeed.
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(EX_USAGE);
        }
    };
    let Cli { log, command } = cli;
    cli::init_tracing(&log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Up(args) => up::run(args).await,
            Command::Moderator(args) => services::moderator(args).await,
            Command::Transport(args) => services::transport(args).await,
            Command::Topology(args) => services::topology(args).await,
            Command::Doctor => tools::doctor(),
            // Replaces this process; returns only when that fails.
            Command::Bench(args) => Err(bench::exec(&args.args, &log)),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&errors::one_line(&err));
            if err.is::<cli::Usage>() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints a fatal error; a closed stderr is ignored rather than turned into a panic.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr(), "offpath: {message}");
}
