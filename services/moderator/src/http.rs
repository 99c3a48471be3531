//! The operator's endpoints on their own port, served by `offpath-ops`: `/metrics`,
//! `/healthz`, and `/readyz`, which reads the moderator's [`Health`] (see
//! [`crate::readiness`] for what makes it ready) and answers `ready` or
//! `not ready: <reasons>`.

use std::sync::Arc;

use offpath_ops::{Endpoints, Readiness};
use tokio::net::TcpListener;

use crate::metrics::PROMETHEUS;
use crate::readiness::Health;

/// Serves the endpoints on `listener` until [`Endpoints::stop`].
pub(crate) fn spawn(listener: TcpListener, health: Arc<Health>) -> Endpoints {
    Endpoints::spawn(listener, &PROMETHEUS, move || Readiness {
        unready: health.readiness().err().unwrap_or_default(),
        detail: None,
    })
}
