//! `offpath policy check FILE`: validates a policy file against the models a moderator
//! would load, before any moderator is given it.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use offpath_classifier::Manifest;
use offpath_moderator::{PolicyFileError, PolicySet};

use crate::cli::Usage;

/// Options of `offpath policy`.
#[derive(Debug, Args)]
pub(crate) struct PolicyCommand {
    /// What to do with a policy file.
    #[command(subcommand)]
    pub action: PolicyAction,
}

/// The `offpath policy` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum PolicyAction {
    /// Check a policy file (as `offpath moderator --policies FILE` would load it): every
    /// problem is printed, one a line, and the exit status is 64; a valid file prints each
    /// policy with its version and who uses it.
    Check(CheckArgs),
}

/// Options of `offpath policy check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// The policy file (TOML).
    pub file: PathBuf,
    /// Model directories the moderators load (as `offpath moderator --model`).
    #[arg(
        long = "model",
        env = "OFFPATH_MODELS",
        value_delimiter = ',',
        default_values = ["models/minilm-insult", "models/profanity"]
    )]
    pub models: Vec<PathBuf>,
}

/// Runs `offpath policy …`.
pub(crate) fn run(command: &PolicyCommand) -> anyhow::Result<()> {
    match &command.action {
        PolicyAction::Check(args) => check(args),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let manifests = args
        .models
        .iter()
        .map(|dir| {
            let dir = offpath_harness::locate::resolve_in_checkout(dir);
            Manifest::load(&dir).map_err(|err| Usage(format!("--model: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let set = match PolicySet::load(&args.file, &manifests) {
        Ok(set) => set,
        Err(PolicyFileError::Invalid { path, problems }) => {
            for problem in &problems {
                println!("{}: {problem}", path.display());
            }
            let count = problems.len();
            return Err(Usage(format!(
                "policy file {}: {count} problem{} (listed above)",
                path.display(),
                if count == 1 { "" } else { "s" }
            ))
            .into());
        }
        Err(err) => return Err(Usage(err.to_string()).into()),
    };
    for rules in set.policies() {
        println!("policy {} version {}", rules.name, rules.version);
    }
    let tenants: Vec<&str> = set.tenants().collect();
    println!(
        "{}: ok ({} policies; tenants with rules of their own: {})",
        args.file.display(),
        set.policies().count(),
        if tenants.is_empty() {
            "none".to_string()
        } else {
            tenants.join(", ")
        }
    );
    std::io::Write::flush(&mut std::io::stdout()).context("stdout")?;
    Ok(())
}
