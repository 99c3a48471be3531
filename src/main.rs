//! `offpath`: the launcher. Parses configuration, starts telemetry and hands over to the
//! service crates; it holds no service logic of its own.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod bench;
mod cli;
mod local_auth;
mod nats_auth;
mod policy;
mod services;
mod supervise;
mod tools;
mod up;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    offpath_ops::cli::main(
        "offpath",
        |cli: &Cli| &cli.log,
        |cli| async move {
            let Cli { log, command } = cli;
            match command {
                Command::Up(args) => up::run(args).await,
                Command::Moderator(args) => services::moderator(args).await,
                Command::Transport(args) => services::transport(args).await,
                Command::Topology(args) => services::topology(args).await,
                Command::Doctor(args) => tools::doctor(&args),
                Command::NatsAuth(args) => nats_auth::print(&args),
                Command::Policy(args) => policy::run(&args).await,
                Command::Review(args) => services::review(args).await,
                // Replaces this process; returns only when that fails.
                Command::Bench(args) => Err(bench::exec(&args.args, &log)),
            }
        },
    )
}
