//! The operator's side of an offpath service, shared by the transport and the moderator:
//! the process-wide Prometheus recorder ([`Prometheus`]: buckets, descriptions, series
//! registered at start, `process_*` figures and `offpath_build_info`) and the endpoints on
//! their own port ([`Endpoints`]: `/metrics`, `/healthz`, `/readyz`).
//!
//! A service declares its metrics once, as a `static` [`Prometheus`] built from a [`Spec`],
//! and hands [`Endpoints::spawn`] a function that tells its [`Readiness`]; everything the
//! endpoints answer (paths, status codes, bodies) is decided here, the same for both.
//!
//! [`public`] serves a service's public port against hostile clients (socket caps, header
//! and connection timeouts, a header-size limit), the same for the transport and the review
//! console; [`with_security_headers`] puts the browser-side defences on its pages.
//!
//! [`cli`] is the same for the command-line programs: log flags, one-line errors, exit
//! statuses.

// Functions over 60 lines (clippy.toml) in anything but tests are refused (issue 28).
#![cfg_attr(not(test), warn(clippy::too_many_lines))]

pub mod cli;
mod endpoints;
mod headers;
mod prometheus;
pub mod public;

pub use endpoints::{Endpoints, PID_HEADER, Readiness, router};
pub use headers::{SAME_ORIGIN_CSP, with_security_headers};
pub use prometheus::{BUILD_INFO, Prometheus, Series, Spec};
