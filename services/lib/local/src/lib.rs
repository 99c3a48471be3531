//! offpath on one machine, run from outside: what the launcher (`offpath up`) and the load
//! scenarios (`offpath-bench`) start and probe at run time. The tests use it too, through
//! the test kit `offpath-harness`, which re-exports it.
//!
//! * [`nats`]: a local `nats-server` child (random port, JetStream in a temp dir,
//!   restart on the same port and store);
//! * [`cluster`]: several such servers joined by routes (kill, restart, leaders);
//! * [`secure`]: the same server with offpath's NATS authorization and each role's
//!   credentials;
//! * [`tls`]: a throwaway CA and certificates, for a server with TLS on;
//! * [`process`]: an `offpath` service as a child process (ready, signal, stop), whose life
//!   is tied to its parent's ([`set_die_with_parent`]);
//! * [`http`]: `GET` on the operator endpoints (`/metrics`, `/healthz`, `/readyz`), and
//!   polling until one answers as expected;
//! * [`scrape`]: the sum of a metric's samples in a `/metrics` rendering;
//! * [`private_file`]: files that hold secrets, readable by their owner only.
//!
//! The binaries are found as [`locate`] says: the project's `.tools/` folder first.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod child;
pub mod cluster;
pub mod http;
pub mod locate;
pub mod nats;
pub mod private_file;
pub mod process;
pub mod scrape;
pub mod secure;
pub mod tls;

pub use child::set_die_with_parent;
pub use cluster::{ClusterError, NatsCluster};
pub use locate::{BOOTSTRAP_HINT, find_binary, find_project_tool};
pub use nats::{Error, NatsServer};
pub use process::Proc;
