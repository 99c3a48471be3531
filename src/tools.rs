//! `offpath doctor`: where nats-server and the ONNX Runtime library were found.

/// `offpath doctor`: prints both tools' paths; an error when one is missing.
pub(crate) fn doctor() -> anyhow::Result<()> {
    let nats = offpath_harness::find_binary()?;
    println!("nats-server: {}", nats.display());
    let ort = offpath_harness::locate::find_onnxruntime()?;
    println!(
        "onnxruntime: {}",
        std::fs::canonicalize(&ort).unwrap_or(ort).display()
    );
    Ok(())
}
