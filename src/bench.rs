//! `offpath bench …`: the load scenarios live in a binary of their own, `offpath-bench`
//! (`benches/load/`), so that the load generator stays out of this one. The launcher only
//! finds it beside itself and execs it with the arguments that follow `bench`.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{Context, anyhow};

use crate::cli::LogArgs;

/// The binary of the load scenarios, looked for beside the running executable.
const BENCH_BINARY: &str = "offpath-bench";

/// Replaces this process with `offpath-bench <args>` (same process id, so signals and the
/// exit status are the scenario's own); the launcher's log settings go along as
/// `OFFPATH_LOG`/`OFFPATH_LOG_JSON`. Returns only when that fails, with the error: exit
/// status 1, not 64, since the command line was right and the build is incomplete.
pub(crate) fn exec(args: &[OsString], log: &LogArgs) -> anyhow::Error {
    let exe = match std::env::current_exe().context("finding the offpath executable") {
        Ok(exe) => exe,
        Err(err) => return err,
    };
    let bench = exe.with_file_name(BENCH_BINARY);
    if !bench.is_file() {
        return anyhow!(
            "{} not found: the load scenarios are a binary of their own; build it with \
             `{}`",
            bench.display(),
            build_command(&exe)
        );
    }
    let mut command = std::process::Command::new(&bench);
    // argv[0] names the program in clap's usage lines and errors: the command as typed.
    command
        .arg0("offpath bench")
        .args(args)
        .env("OFFPATH_LOG", &log.log_filter);
    if log.log_json {
        command.env("OFFPATH_LOG_JSON", "true");
    }
    anyhow::Error::new(command.exec()).context(format!("running {}", bench.display()))
}

/// The command that builds `offpath-bench` into the folder of `exe`: the release profile
/// for `target/release/offpath`, the dev profile otherwise.
fn build_command(exe: &Path) -> &'static str {
    let release = exe
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|dir| dir == "release");
    if release {
        "cargo build --release"
    } else {
        "cargo build"
    }
}
