//! The operator's side of an offpath service, shared by the transport and the moderator:
//! the process-wide Prometheus recorder ([`Prometheus`]: buckets, descriptions, series
//! registered at start, `process_*` figures and `offpath_build_info`) and the endpoints on
//! their own port ([`Endpoints`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! A service declares its metrics once, as a `static` [`Prometheus`] built from a [`Spec`],
//! and hands [`Endpoints::spawn`] a function that tells its [`Readiness`]; everything the
//! endpoints answer (paths, status codes, bodies) is decided here, the same for both.
//!
//! [`cli`] is the same for the command-line programs: log flags, one-line errors, exit
//! statuses.

pub mod cli;
mod endpoints;
mod prometheus;

pub use endpoints::{Endpoints, Readiness, router};
pub use prometheus::{BUILD_INFO, Prometheus, Series, Spec};
