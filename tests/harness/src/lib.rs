//! The harness that runs and probes offpath's processes from outside, shared by the
//! launcher (`offpath up`), the load scenarios and every integration test:
//!
//! * [`nats`]: a local `nats-server` child (random port, JetStream in a temp dir,
//!   restart on the same port and store);
//! * [`process`]: an `offpath` service as a child process (ready, signal, stop);
//! * [`http`]: `GET` on the operator endpoints (`/metrics`, `/healthz`, `/readyz`).
//!
//! The binaries are found as [`locate`] says: the project's `.tools/` folder first.

mod child;
pub mod http;
pub mod locate;
pub mod nats;
pub mod process;

pub use child::set_die_with_parent;
pub use locate::{BOOTSTRAP_HINT, find_binary, find_project_tool};
pub use nats::{Error, NatsServer};
pub use process::Proc;
