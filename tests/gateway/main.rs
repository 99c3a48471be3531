//! The chat gateway (`offpath transport`) end to end, each module one concern: the chat path
//! with a real moderator, hostile clients and sockets, who may connect as whom, NATS and
//! moderator faults, verdicts bound to their request, human verdicts, the wire contract.
//! One binary of modules (linkerd's integration crate); nextest still runs every test in a
//! process of its own.

#[path = "../common/mod.rs"]
mod common;
mod hostile;
mod hostile_fds;
mod human_verdicts;
mod identity;
mod raw;
mod transport;
mod transport_faults;
mod verdict_binding;
mod wire_contract;
