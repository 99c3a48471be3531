//! Finding what `scripts/bootstrap` installs: nats-server and the ONNX Runtime library.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// The ONNX Runtime shared library: `$ORT_DYLIB_PATH`, else the bootstrap's
/// `.tools/lib/libonnxruntime.so` (searched from the working directory and the executable).
pub fn find_onnxruntime() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("ORT_DYLIB_PATH={} is not a file", path.display());
    }
    offpath_nats_local::find_project_tool("lib/libonnxruntime.so").with_context(|| {
        format!(
            "ONNX Runtime library not found; {}",
            offpath_nats_local::BOOTSTRAP_HINT
        )
    })
}

/// `offpath doctor`: prints both tools' paths; an error when one is missing.
pub fn doctor() -> anyhow::Result<()> {
    let nats = offpath_nats_local::find_binary()?;
    println!("nats-server: {}", nats.display());
    let ort = find_onnxruntime()?;
    println!(
        "onnxruntime: {}",
        std::fs::canonicalize(&ort).unwrap_or(ort).display()
    );
    Ok(())
}
