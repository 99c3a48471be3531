//! The services under load: the `offpath` binary beside this one, started as child
//! processes, and what the moderator's configuration leaves to the checkout.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use offpath_local::Proc;

/// The `offpath` binary beside this one (`target/release/offpath` for
/// `target/release/offpath-bench`): the services the scenarios start.
pub(crate) fn offpath_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the offpath-bench executable")?;
    let path = exe.with_file_name("offpath");
    if !path.is_file() {
        bail!(
            "{} not found: the load scenarios start the services from the offpath binary \
             beside offpath-bench; build both with `cargo build --release`",
            path.display()
        );
    }
    Ok(path)
}

/// Starts `offpath <args>` (the binary beside this one) with its log discarded, under
/// `nice -n <nice>` when `nice` is above 0, pinned to `cpus` when given.
pub(crate) fn spawn_nice(
    name: &str,
    args: &[String],
    ops: SocketAddr,
    nice: u32,
    cpus: Option<&str>,
) -> anyhow::Result<Proc> {
    Proc::spawn_nice(name, &offpath_binary()?, args, ops, nice, cpus)
}
