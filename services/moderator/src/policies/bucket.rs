//! The fleet's policy bucket (`offpath-policies`, key `policies`): every moderator follows
//! it, so `offpath policy push FILE` changes a whole fleet together. A moderator reads the
//! value once before it takes requests ([`read_current`]), then subscribes to the key's
//! subject and reads the value again (the subscription catches every change after that
//! read), so it needs no consumer of its own: its NATS user may only subscribe to the key
//! and read its last value. A lost subscription or a missing bucket is tried again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::KeyValueErrorKind, kv::Operation};
use futures::StreamExt;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics as m;
use crate::pipeline::Shared;

/// Pause before looking for the bucket again, or following it again after a loss.
const RETRY: Duration = Duration::from_secs(5);
/// How long start-up waits for the bucket's value before taking requests without it.
const FIRST_READ: Duration = Duration::from_secs(3);
/// Header of a key's delete and purge markers (async-nats's own constant is private).
const KV_OPERATION: &str = "KV-Operation";

/// The bucket could not be opened or read.
enum Unavailable {
    /// There is no bucket (`offpath topology` makes it).
    Missing,
    /// Anything else: no permission, NATS away, a timeout.
    Failed(String),
}

/// Reads the bucket's value and puts it in force, waiting at most [`FIRST_READ`]: a
/// restarted moderator judges its first requests by the fleet's policies, not only by its
/// own file. Without a bucket (or when it cannot be read in time) it starts with what it has.
pub(crate) async fn read_current(shared: &Arc<Shared>) {
    match tokio::time::timeout(FIRST_READ, current(&shared.js)).await {
        Ok(Ok(value)) => apply(shared, value.as_deref()).await,
        Ok(Err(Unavailable::Missing)) => {}
        Ok(Err(Unavailable::Failed(why))) => {
            warn!(
                "cannot read the policy bucket at start ({why}); starting with the file's policies"
            );
        }
        Err(_) => warn!(
            "the policy bucket did not answer within {FIRST_READ:?}; starting with the file's policies"
        ),
    }
}

/// Puts a bucket value in force ([`crate::model_reload::apply_bucket_value`]: the model
/// versions it pins first, when they are not the loaded ones). Refusals are counted and
/// logged by the reloads themselves.
async fn apply(shared: &Arc<Shared>, value: Option<&[u8]>) {
    crate::model_reload::apply_bucket_value(shared, value).await;
}

/// The bucket's value now, waiting at most [`FIRST_READ`]; `None` when there is none or it
/// cannot be read.
pub(crate) async fn bucket_value(js: &jetstream::Context) -> Option<Vec<u8>> {
    tokio::time::timeout(FIRST_READ, current(js))
        .await
        .ok()?
        .ok()
        .flatten()
}

/// Follows the policy bucket until `stop` turns true.
pub(crate) async fn watch_bucket(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut said_missing = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            ended = follow(&shared) => {
                metrics::gauge!(m::POLICY_BUCKET_WATCHING).set(0.0);
                match ended {
                    Unavailable::Missing if !said_missing => {
                        said_missing = true;
                        info!("no policy bucket {POLICY_BUCKET}: the --policies file (SIGHUP) \
                            decides until `offpath topology` makes it");
                    }
                    Unavailable::Missing => {}
                    Unavailable::Failed(why) => {
                        said_missing = false;
                        warn!("not following the policy bucket ({why}); trying again in {RETRY:?}");
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Subscribes to the key, reads its value, then applies every change until the
/// subscription ends; returns why it ended.
async fn follow(shared: &Arc<Shared>) -> Unavailable {
    let js = &shared.js;
    let subject = format!("$KV.{POLICY_BUCKET}.{POLICY_KEY}");
    // Subscribed first: a change between the read below and the subscription is not missed.
    let mut changes = match js.client().subscribe(subject).await {
        Ok(changes) => changes,
        Err(err) => return Unavailable::Failed(err.to_string()),
    };
    match current(js).await {
        Ok(value) => apply(shared, value.as_deref()).await,
        Err(why) => return why,
    }
    metrics::gauge!(m::POLICY_BUCKET_WATCHING).set(1.0);
    while let Some(message) = changes.next().await {
        let deleted = message
            .headers
            .as_ref()
            .and_then(|h| h.get(KV_OPERATION))
            .is_some_and(|op| op.as_str() == "DEL" || op.as_str() == "PURGE");
        apply(shared, (!deleted).then_some(&message.payload[..])).await;
    }
    Unavailable::Failed("the subscription ended".into())
}

/// The key's current value (`None`: no value, or deleted).
async fn current(js: &jetstream::Context) -> Result<Option<Vec<u8>>, Unavailable> {
    let store = js.get_key_value(POLICY_BUCKET).await.map_err(|err| {
        match (err.kind(), is_not_found(&err)) {
            (KeyValueErrorKind::GetBucket, true) => Unavailable::Missing,
            _ => Unavailable::Failed(err.to_string()),
        }
    })?;
    let entry = store
        .entry(POLICY_KEY)
        .await
        .map_err(|err| Unavailable::Failed(err.to_string()))?;
    Ok(entry
        .filter(|e| e.operation == Operation::Put)
        .map(|e| e.value.to_vec()))
}

/// Whether opening the bucket failed because its stream does not exist.
fn is_not_found(err: &jetstream::context::KeyValueError) -> bool {
    use std::error::Error;
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(get) = cause.downcast_ref::<jetstream::context::GetStreamError>() {
            return matches!(
                get.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            );
        }
        source = cause.source();
    }
    false
}
