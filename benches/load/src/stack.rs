//! The services under load: the `offpath` binary beside this one, started as child
//! processes, and what the moderator's configuration leaves to the checkout.
//!
//! Private copies, on purpose: `Proc::spawn_nice` of offpath-harness runs
//! `current_exe()` (the launcher's own binary), and the checkout look-ups below are the
//! launcher's (`src/tools.rs`), which a separate crate cannot reach.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use offpath_harness::Proc;

/// The `offpath` binary beside this one (`target/release/offpath` for
/// `target/release/offpath-bench`): the services the scenarios start.
pub fn offpath_binary() -> anyhow::Result<PathBuf> {
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

/// Starts `offpath <args>` with its log discarded, under `nice -n <nice>` when `nice` is
/// above 0, pinned to `cpus` (a `taskset` list such as `1` or `0-2`) when given.
pub fn spawn_nice(
    name: &str,
    args: &[String],
    ops: SocketAddr,
    nice: u32,
    cpus: Option<&str>,
) -> anyhow::Result<Proc> {
    // Both wrappers exec the next program: the process id stays the service's own.
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpus) = cpus {
        argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    if nice > 0 {
        argv.extend(["nice".into(), format!("-n{nice}").into()]);
    }
    argv.push(offpath_binary()?.into());
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .args(args)
        .env("OFFPATH_LOG", "warn")
        .stderr(Stdio::null());
    Proc::start(name, command, ops)
}

/// The ONNX Runtime shared library: `$ORT_DYLIB_PATH`, else the bootstrap's
/// `.tools/lib/libonnxruntime.so` (searched from the working directory and the executable).
fn find_onnxruntime() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("ORT_DYLIB_PATH={} is not a file", path.display());
    }
    offpath_harness::find_project_tool("lib/libonnxruntime.so").with_context(|| {
        format!(
            "ONNX Runtime library not found; {}",
            offpath_harness::BOOTSTRAP_HINT
        )
    })
}

/// Resolves a relative model directory against the checkout (the folder holding `.tools/`)
/// when it does not exist relative to the working directory.
pub fn resolve_model_dir(dir: &Path) -> PathBuf {
    if dir.is_absolute() || dir.exists() {
        return dir.to_path_buf();
    }
    offpath_harness::find_project_tool("")
        .and_then(|tools| tools.parent().map(|root| root.join(dir)))
        .filter(|candidate| candidate.exists())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Fills in what the moderator's configuration leaves to the checkout: model directories
/// and the ONNX Runtime library.
pub fn complete_moderator_config(
    mut config: offpath_moderator::Config,
) -> anyhow::Result<offpath_moderator::Config> {
    config.models = config.models.iter().map(|d| resolve_model_dir(d)).collect();
    if config.ort_library.is_none() {
        config.ort_library = Some(find_onnxruntime()?);
    }
    Ok(config)
}
