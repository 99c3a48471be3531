//! `offpath-bench`: offpath's load scenarios, a binary of their own so that the load
//! generator (websocket clients, HDR histograms, the SVG report) stays out of the
//! production `offpath` binary. Users reach it as `offpath bench …`, which runs this
//! binary from beside itself with the same arguments.
//!
//! * `throughput` ([`throughput`]): verdicts/s and publish → verdict latency through a real
//!   nats-server and a moderator process, against raw in-process inference in the same run;
//! * `isolation` ([`isolation`]): chat delivery latency with moderation decoupled, inline
//!   and off, with healthy, slow and hung moderators; writes `bench-results/isolation.*`.
//!
//! Both start the services as the `offpath` binary found beside this one ([`stack`]).

mod cli;
mod isolation;
mod measure;
mod stack;
mod throughput;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Usage};

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
    cli::init_tracing(&cli.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            report(&format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            BenchCommand::Throughput(args) => throughput::run(*args).await,
            BenchCommand::Isolation(args) => isolation::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            report(&format!("{err:#}"));
            if err.is::<Usage>() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Prints a fatal error; a closed stderr is ignored rather than turned into a panic.
fn report(message: &str) {
    let _ = writeln!(std::io::stderr(), "offpath bench: {message}");
}
