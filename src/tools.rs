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
    offpath_harness::find_project_tool("lib/libonnxruntime.so").with_context(|| {
        format!(
            "ONNX Runtime library not found; {}",
            offpath_harness::BOOTSTRAP_HINT
        )
    })
}

/// `offpath doctor`: prints both tools' paths; an error when one is missing.
pub fn doctor() -> anyhow::Result<()> {
    let nats = offpath_harness::find_binary()?;
    println!("nats-server: {}", nats.display());
    let ort = find_onnxruntime()?;
    println!(
        "onnxruntime: {}",
        std::fs::canonicalize(&ort).unwrap_or(ort).display()
    );
    Ok(())
}

/// Resolves a relative model directory against the checkout (the folder holding `.tools/`)
/// when it does not exist relative to the working directory.
pub fn resolve_model_dir(dir: &std::path::Path) -> PathBuf {
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
