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
//! * `scale` ([`scale`]): verdicts/s per number of moderator processes, R1 and R3;
//! * `lanes` ([`lanes`]): a hold room's verdict latency beside a bulk flood, with and
//!   without the interactive lane.
//! * `cost` ([`cost`]): a hold room beside one sender of expensive texts at the send rate a
//!   transport allows, without and with charging a send by its length.
//! * `quality` ([`quality`]): judgement on a labelled set of chat lines through a moderator
//!   process.
//!
//! All start the services as the `offpath` binary found beside this one ([`stack`]).

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod cli;
mod cost;
mod isolation;
mod lanes;
mod measure;
mod quality;
mod scale;
mod stack;
mod throughput;

use std::process::ExitCode;

use crate::cli::{BenchCommand, Cli};

fn main() -> ExitCode {
    offpath_ops::cli::main(
        "offpath bench",
        |cli: &Cli| &cli.log,
        |cli| async move {
            match cli.command {
                BenchCommand::Throughput(args) => throughput::run(*args).await,
                BenchCommand::Isolation(args) => isolation::run(args).await,
                BenchCommand::Scale(args) => scale::run(*args).await,
                BenchCommand::Lanes(args) => lanes::run(*args).await,
                BenchCommand::Cost(args) => cost::run(*args).await,
                BenchCommand::Quality(args) => quality::run(*args).await,
            }
        },
    )
}
