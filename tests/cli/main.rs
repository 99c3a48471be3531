//! The `offpath` binary as an operator runs it: its subcommands and what they print when
//! something is wrong, `offpath policy check`, `offpath bench`, `offpath up` as a process
//! supervisor (one node and a cluster), and the operator kit under `deploy/`.

#[path = "../bench_binary/mod.rs"]
mod bench_binary;
mod bench_cli;
mod cli;
mod cli_errors;
mod cluster_up;
#[path = "../common/mod.rs"]
mod common;
mod kit;
mod operator_kit;
mod policy_cli;
mod up;
