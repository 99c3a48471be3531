//! `tests/auth/nats_auth.rs` against Debian 12's nats-server 2.9.10, the oldest supported version
//! (`.tools/oldest/bin/nats-server`, linked by `scripts/bootstrap --oldest-nats`): every
//! permission test runs at both ends of the supported range.

#[path = "nats_auth.rs"]
#[allow(clippy::duplicate_mod)] // on purpose: the same tests, another nats-server
mod nats_auth;
