//! The whole moderation path with real processes: a verdict that does not depend on its
//! batch, defects found from outside (two gateways, a deleted stream, the oldest
//! nats-server), a NATS cluster losing nodes under load, and the reviewers' console.

mod batch_invariance;
mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod reliability;
mod review_console;
