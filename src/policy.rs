//! `offpath policy check FILE` validates a policy file against the models a moderator
//! would load, before any moderator is given it; `offpath policy push FILE` validates it
//! the same way and puts it in the fleet's policy bucket, which every moderator watches.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use offpath_classifier::Manifest;
use offpath_moderator::PolicySet;
use offpath_protocol::permissions::Role;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
use offpath_protocol::topology;

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
    /// Check a policy file, then put it in the JetStream key-value bucket `offpath-policies`
    /// (key `policies`, created when missing) that every moderator watches: the whole fleet
    /// takes it within moments, and moderators started later take it too. A moderator that
    /// cannot resolve it (other models) refuses it, counts and keeps its policies. Logs in as
    /// the topology user. `nats kv del offpath-policies policies` sends moderators back to
    /// their `--policies` file.
    Push(PushArgs),
}

/// Options of `offpath policy push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// What to check and push.
    #[command(flatten)]
    pub check: CheckArgs,
    /// Where NATS is, and how to log in (as the topology user).
    #[command(flatten)]
    pub nats: crate::cli::NatsArgs,
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
        default_values = offpath_moderator::DEFAULT_MODELS
    )]
    pub models: Vec<PathBuf>,
}

/// Runs `offpath policy …`.
pub(crate) async fn run(command: &PolicyCommand) -> anyhow::Result<()> {
    match &command.action {
        PolicyAction::Check(args) => check(args).map(|_| ()),
        PolicyAction::Push(args) => push(args).await,
    }
}

async fn push(args: &PushArgs) -> anyhow::Result<()> {
    let text = check(&args.check)?;
    let nats = &args.nats;
    let client = crate::services::connect(
        &nats.nats_url,
        &nats.auth,
        "offpath-policy",
        &Role::Topology,
    )
    .await?;
    let js = async_nats::jetstream::new(client.clone());
    topology::ensure_policy_bucket(&js, &nats.streams.topology()).await?;
    let store = js
        .get_key_value(POLICY_BUCKET)
        .await
        .with_context(|| format!("opening the key-value bucket {POLICY_BUCKET}"))?;
    let revision = store
        .put(POLICY_KEY, text.into())
        .await
        .with_context(|| format!("putting {POLICY_KEY} into {POLICY_BUCKET}"))?;
    client
        .flush()
        .await
        .context("flushing the NATS connection")?;
    println!(
        "{}: pushed to {POLICY_BUCKET}/{POLICY_KEY} (revision {revision}); moderators log \
         \"policies reloaded\" and count offpath_moderator_policy_reloads_total{{source=\"bucket\"}}",
        args.check.file.display()
    );
    Ok(())
}

/// Checks the file; its text when it is valid.
fn check(args: &CheckArgs) -> anyhow::Result<String> {
    let manifests = args
        .models
        .iter()
        .map(|dir| {
            let dir = offpath_harness::locate::resolve_in_checkout(dir);
            Manifest::load(&dir).map_err(|err| Usage(format!("--model: {err}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let text = PolicySet::read(&args.file).map_err(|err| Usage(err.to_string()))?;
    let set = match PolicySet::parse(&text, &manifests) {
        Ok(set) => set,
        Err(problems) => {
            let path = args.file.display();
            for problem in &problems {
                println!("{path}: {problem}");
            }
            let count = problems.len();
            return Err(Usage(format!(
                "policy file {path}: {count} problem{} (listed above)",
                if count == 1 { "" } else { "s" }
            ))
            .into());
        }
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
    // Read again for a push: what was checked is what is sent (the size was bounded).
    std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))
}
