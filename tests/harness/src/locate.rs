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
