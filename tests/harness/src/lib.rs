//! The test kit of offpath's integration tests (the root package's, the moderator's and
//! offpath-jetstream's; a dev-dependency only). It re-exports `offpath-local`, the runtime
//! crate that runs offpath on one machine, so that a test names one crate:
//!
//! * [`nats`]: a local `nats-server` child (random port, JetStream in a temp dir,
//!   restart on the same port and store);
//! * [`process`]: an `offpath` service as a child process (ready, signal, stop);
//! * [`cluster`]: several such servers joined by routes (kill, restart, leaders);
//! * [`secure`]: the same server with offpath's NATS authorization and each role's
//!   credentials;
//! * [`tls`]: a throwaway CA and certificates for TLS tests;
//! * [`http`]: `GET` on the operator endpoints (`/metrics`, `/healthz`, `/readyz`), and
//!   polling until one answers as expected;
//! * [`locate`], [`private_file`]: the binaries in `.tools/`, files only their owner reads.
//!
//! What only the tests use, so that each helper exists once, is this crate's own:
//!
//! * [`testing`]: a nats-server, a client and a topology in one call, the moderator's NATS
//!   micro service;
//! * [`topology`]: the documented JetStream topology with small streams;
//! * [`verdicts`]: subscribing to verdicts and dead letters, collecting them by id; the one
//!   sample verdict and request tests build on;
//! * [`scrape`]: reading `/metrics` (sums, series, values) and `promtool check metrics`.

pub mod scrape;
pub mod testing;
pub mod topology;
pub mod verdicts;

pub use offpath_local::{
    BOOTSTRAP_HINT, ClusterError, Error, NatsCluster, NatsServer, Proc, cluster, find_binary,
    find_project_tool, http, locate, nats, private_file, process, secure, set_die_with_parent, tls,
};
