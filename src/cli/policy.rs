//! The options of `offpath policy` (what `crate::policy` runs).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::NatsArgs;

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
    /// the topology user, signs with --signing-key: moderators refuse a value not signed by
    /// a key of their --policy-signers.
    Push(PushArgs),
    /// Put a signed "no fleet policy" in the bucket: moderators go back to their
    /// `--policies` file (or the built-in policy). An unsigned delete (`nats kv del`) is
    /// refused by moderators like any unsigned value.
    Clear(ClearArgs),
    /// Make a policy signing key: the seed goes to FILE (0600; keep it where pushes are made,
    /// off service hosts) and the public key (`O…`) is printed, for the moderators'
    /// --policy-signers (OFFPATH_POLICY_SIGNERS).
    Keygen(KeygenArgs),
}

/// Options of `offpath policy keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Where to write the seed (refused when the file exists).
    pub file: PathBuf,
}

/// The operator's signing key, and where NATS is.
#[derive(Debug, Args)]
pub(crate) struct SignAndSend {
    /// The policy signing key (a seed file from `offpath policy keygen`; `offpath up` keeps
    /// one as policy-signing.nk in its --data-dir).
    #[arg(long, env = "OFFPATH_POLICY_SIGNING_KEY")]
    pub signing_key: PathBuf,
    /// Where NATS is, and how to log in (as the topology user).
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// Options of `offpath policy clear`.
#[derive(Debug, Args)]
pub(crate) struct ClearArgs {
    /// The key and the server.
    #[command(flatten)]
    pub send: SignAndSend,
}

/// Options of `offpath policy push`.
#[derive(Debug, Args)]
pub(crate) struct PushArgs {
    /// What to check and push.
    #[command(flatten)]
    pub check: CheckArgs,
    /// The key and the server.
    #[command(flatten)]
    pub send: SignAndSend,
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
