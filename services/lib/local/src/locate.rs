//! Finding the tools that `scripts/bootstrap` installs into the project's `.tools/` folder.

use std::path::{Path, PathBuf};

use crate::Error;

/// What to run when a tool is missing.
pub const BOOTSTRAP_HINT: &str = "run `scripts/bootstrap` from the repository root (installs \
     nats-server and ONNX Runtime into .tools/), or `apt-get install nats-server`, or set \
     OFFPATH_NATS_SERVER to the binary";

/// Environment variable naming the `nats-server` binary explicitly.
const NATS_ENV: &str = "OFFPATH_NATS_SERVER";

/// Finds `.tools/<relative>` in the current directory or any parent, then beside the
/// running executable or any of its parents (so `target/release/offpath` finds the tools of
/// the checkout it was built in, from any working directory).
pub fn find_project_tool(relative: &str) -> Option<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        starts.push(dir.to_path_buf());
    }
    starts.iter().find_map(|start| {
        start
            .ancestors()
            .map(|dir| dir.join(".tools").join(relative))
            .find(|candidate| candidate.exists())
    })
}

/// The ONNX Runtime shared library: `$ORT_DYLIB_PATH`, else the bootstrap's
/// `.tools/lib/libonnxruntime.so` (searched from the working directory and the executable).
pub fn find_onnxruntime() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        anyhow::bail!("ORT_DYLIB_PATH={} is not a file", path.display());
    }
    find_project_tool("lib/libonnxruntime.so")
        .ok_or_else(|| anyhow::anyhow!("ONNX Runtime library not found; {BOOTSTRAP_HINT}"))
}

/// Resolves a relative directory of the checkout (`models/minilm-insult`) against the
/// folder holding `.tools/` when it does not exist relative to the working directory.
pub fn resolve_in_checkout(dir: &Path) -> PathBuf {
    if dir.is_absolute() || dir.exists() {
        return dir.to_path_buf();
    }
    find_project_tool("")
        .and_then(|tools| tools.parent().map(|root| root.join(dir)))
        .filter(|candidate| candidate.exists())
        .unwrap_or_else(|| dir.to_path_buf())
}

/// Fills in what a moderator's configuration leaves to the checkout: its model
/// directories ([`resolve_in_checkout`]) and, when none is set, the ONNX Runtime library.
pub fn complete_model_paths(
    models: &mut [PathBuf],
    ort_library: &mut Option<PathBuf>,
) -> anyhow::Result<()> {
    for dir in models.iter_mut() {
        *dir = resolve_in_checkout(dir);
    }
    if ort_library.is_none() {
        *ort_library = Some(find_onnxruntime()?);
    }
    Ok(())
}

/// Finds a `nats-server` binary: `$OFFPATH_NATS_SERVER`, the bootstrap folder, `$PATH`,
/// then `/usr/sbin/nats-server`.
pub fn find_binary() -> Result<PathBuf, Error> {
    let mut searched = Vec::new();
    if let Some(path) = std::env::var_os(NATS_ENV) {
        let path = PathBuf::from(path);
        if is_file(&path) {
            return Ok(path);
        }
        searched.push(format!("${NATS_ENV}={}", path.display()));
    }
    if let Some(path) = find_project_tool("bin/nats-server") {
        return Ok(path);
    }
    searched.push(".tools/bin/nats-server".into());
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(found) = std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| is_file(p))
    {
        return Ok(found);
    }
    searched.push("$PATH".into());
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if is_file(&debian) {
        return Ok(debian);
    }
    searched.push(debian.display().to_string());
    Err(Error::NotFound {
        searched: searched.join(", "),
    })
}

fn is_file(path: &Path) -> bool {
    path.metadata().map(|m| m.is_file()).unwrap_or(false)
}
