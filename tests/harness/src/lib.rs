//! The harness that runs and probes offpath's processes from outside, shared by the
//! launcher (`offpath up`), the load scenarios and every integration test:
//!
//! * [`nats`]: a local `nats-server` child (random port, JetStream in a temp dir,
//!   restart on the same port and store);
//! * [`process`]: an `offpath` service as a child process (ready, signal, stop);
//! * [`cluster`]: several such servers joined by routes (kill, restart, leaders);
//! * [`secure`]: the same server with offpath's NATS authorization and each role's
//!   credentials;
//! * [`tls`]: a throwaway CA and certificates for TLS tests;
//! * [`http`]: `GET` on the operator endpoints (`/metrics`, `/healthz`, `/readyz`), and
//!   polling until one answers as expected.
//!
//! What only the tests use, so that each helper exists once:
//!
//! * [`testing`]: a nats-server, a client and a topology in one call, the moderator's NATS
//!   micro service;
//! * [`topology`]: the documented JetStream topology with small streams;
//! * [`verdicts`]: subscribing to verdicts and dead letters, collecting them by id;
//! * [`scrape`]: reading `/metrics` (sums, series, values) and `promtool check metrics`.
//!
//! The binaries are found as [`locate`] says: the project's `.tools/` folder first.

mod child;
pub mod cluster;
pub mod http;
pub mod locate;
pub mod nats;
pub mod private_file;
pub mod process;
pub mod scrape;
pub mod secure;
pub mod testing;
pub mod tls;
pub mod topology;
pub mod verdicts;

pub use child::set_die_with_parent;
pub use cluster::{ClusterError, NatsCluster};
pub use locate::{BOOTSTRAP_HINT, find_binary, find_project_tool};
pub use nats::{Error, NatsServer};
pub use process::Proc;
