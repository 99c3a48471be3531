//! `offpath doctor`: what this host needs for its role, and where it was found.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Options of `offpath doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// What this host runs: `up` (the whole pipeline: nats-server, ONNX Runtime, models),
    /// `moderator` (ONNX Runtime and models; NATS is elsewhere) or `transport` (nothing
    /// local: it needs only NATS).
    #[arg(long, env = "OFFPATH_DOCTOR_ROLE", value_enum, default_value_t = Role::Up)]
    pub role: Role,
    /// Model directories a moderator here would load (as `offpath moderator --model`).
    #[arg(
        long = "model",
        env = "OFFPATH_MODELS",
        value_delimiter = ',',
        default_values = offpath_moderator::DEFAULT_MODELS
    )]
    pub models: Vec<PathBuf>,
}

/// The role of the host `offpath doctor` checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// `offpath up`: everything on one machine.
    Up,
    /// `offpath moderator`.
    Moderator,
    /// `offpath transport`.
    Transport,
}

/// `offpath doctor`: prints what the role needs and where it was found; an error naming
/// the first thing missing.
pub(crate) fn doctor(args: &DoctorArgs) -> anyhow::Result<()> {
    if args.role == Role::Transport {
        println!("transport: needs no local tool (no nats-server, no ONNX Runtime, no model)");
        return Ok(());
    }
    if args.role == Role::Up {
        let nats = offpath_local::find_binary()?;
        println!("nats-server: {}", nats.display());
    }
    let ort = offpath_local::locate::find_onnxruntime()?;
    println!(
        "onnxruntime: {}",
        std::fs::canonicalize(&ort).unwrap_or(ort).display()
    );
    for dir in &args.models {
        let dir = offpath_local::locate::resolve_in_checkout(dir);
        anyhow::ensure!(
            dir.join("model.toml").is_file(),
            "model {}: no model.toml there (run models/build, or pass --model)",
            dir.display()
        );
        println!("model: {}", dir.display());
    }
    Ok(())
}
