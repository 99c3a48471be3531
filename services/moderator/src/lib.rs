//! The offpath moderator: a JetStream pull consumer shared by every moderator process
//! (start more processes for more throughput), classifying requests in batches on
//! dedicated inference threads and publishing verdicts.
//!
//! The line, one direction, each stage a module that takes work ([`work`]) and hands it on:
//! pull (`consumer`, at most `max_in_flight` requests held) → `intake`: strict decode
//! (failures become dead letters), expiry (an `unmoderated` verdict without inference), the
//! spam-wave cache → `batcher`: batches by count and wait time, the interactive lane first,
//! waiting for a free inference thread → `inference`: `pool::Pool` runs ONNX Runtime on OS
//! threads under a watchdog → `judge`: the policy in force decides the verdict and its
//! review item → `settle`: verdict published to `VERDICTS` (and the item to `REVIEW`) →
//! request acked (at-least-once: the verdict is stored before the ack). Start-up wires the
//! stages; none imports the one after it. Beside the line: `service` (`offpath.classify`
//! calls into the batcher), `model_reload` (SIGHUP and the policy bucket's model pins),
//! `policies` (with the bucket it follows).
//! `startup` starts and stops these in named steps; `readiness` is what `/readyz` reads.
//!
//! The launcher puts the JetStream topology in place first. When the `MODERATION` stream
//! or the `moderator` consumer is missing (at start-up, or deleted while running), the
//! moderator re-creates what is missing from `config.topology` and binds again
//! (`consumer`); `/readyz` says "consumer not bound" meanwhile, and after
//! `intake.rebind_give_up` of failures [`run`] returns an error.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod batcher;
mod brake;
mod cache;
mod config;
mod consumer;
mod delivery;
mod http;
mod inference;
mod intake;
mod judge;
mod metrics;
mod model_reload;
pub mod policies;
mod pool;
mod publish;
mod readiness;
mod screen;
mod senders;
mod service;
mod settle;
mod startup;
mod work;

use std::future::Future;
use std::time::Duration;

use tracing::warn;

pub use brake::BrakeConfig;
pub use config::{
    CacheConfig, ClassifyConfig, Config, DEFAULT_MODELS, Faults, InferenceConfig, IntakeConfig,
};
pub use policies::{PolicyFileError, PolicySet};

/// Why the moderator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ModeratorError {
    /// No ONNX Runtime library was configured.
    #[error("no ONNX Runtime library configured (--ort-library or ORT_DYLIB_PATH)")]
    NoRuntime,
    /// A model or the runtime could not be loaded.
    #[error(transparent)]
    Classifier(#[from] offpath_classifier::ClassifierError),
    /// The policy file cannot be used.
    #[error(transparent)]
    Policies(#[from] PolicyFileError),
    /// A `--policy-signers` key cannot be read.
    #[error("--policy-signers: {0}")]
    Signers(#[from] offpath_protocol::policy_signature::KeyError),
    /// An inference thread could not be started.
    #[error("inference thread: {0}")]
    Thread(String),
    /// NATS or JetStream refused something.
    #[error("NATS: {0}")]
    Nats(String),
    /// The JetStream consumer could not be bound (nor the missing topology re-created) for
    /// `--rebind-give-up-ms`: the moderator stops rather than idle while looking alive.
    #[error("consumer not bound for {} ms, giving up: {reason}", waited.as_millis())]
    Unbound {
        /// How long binding was tried.
        waited: Duration,
        /// The last attempt's error.
        reason: String,
    },
}

/// Runs the moderator until `shutdown` completes: then stops pulling, finishes what it
/// holds (up to a grace period; the rest is redelivered to other moderators) and returns
/// `Ok`. Returns an error if it cannot start, or if its consumer stays unbound for
/// `intake.rebind_give_up`: it never returns `Ok` without being asked to stop.
/// `/metrics`, `/healthz` and `/readyz` are served on `listener` meanwhile.
pub async fn run(
    config: Config,
    client: async_nats::Client,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ModeratorError> {
    let moderator = startup::Moderator::new(config, client);
    let endpoints = http::spawn(listener, moderator.health());
    let result = moderator.run(shutdown).await;
    if let Err(err) = &result {
        warn!("moderator stopped: {err}");
    }
    let _ = endpoints.stop().await;
    result
}
