//! The fleet's policy bucket (`offpath-policies`, key `policies`): every moderator watches
//! it, so `offpath policy push FILE` changes a whole fleet together. The watch starts with
//! the value in the bucket (a restarted moderator takes the fleet's policies, not only its
//! file) and then follows every change; a lost watch or a missing bucket is tried again.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv::Operation};
use futures::StreamExt;
use offpath_protocol::subject::{POLICY_BUCKET, POLICY_KEY};
use tokio::sync::watch;
use tracing::{info, warn};

use super::LivePolicies;

/// Pause before looking for the bucket again, or watching again after the watch ended.
const RETRY: Duration = Duration::from_secs(5);

/// Follows the policy bucket until `stop` turns true.
pub(crate) async fn watch_bucket(
    js: jetstream::Context,
    live: Arc<LivePolicies>,
    mut stop: watch::Receiver<bool>,
) {
    // Revisions already handled: a new watch replays the current value, which is applied
    // only if it is newer than what this moderator has seen.
    let mut seen = 0;
    let mut said_missing = false;
    loop {
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            ended = follow(&js, &live, &mut seen) => match ended {
                Err(Missing(why)) if !said_missing => {
                    said_missing = true;
                    info!("no policy bucket {POLICY_BUCKET} to watch ({why}); policies come \
                        from --policies and SIGHUP until `offpath topology` creates it");
                }
                Err(Missing(_)) => {}
                Ok(why) => {
                    said_missing = false;
                    warn!("the policy bucket watch ended ({why}); watching again");
                }
            },
        }
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// The bucket could not be opened or watched.
struct Missing(String);

/// Watches until the watch ends (`Ok`, with why) or cannot start (`Err`).
async fn follow(
    js: &jetstream::Context,
    live: &LivePolicies,
    seen: &mut u64,
) -> Result<String, Missing> {
    let store = js
        .get_key_value(POLICY_BUCKET)
        .await
        .map_err(|e| Missing(e.to_string()))?;
    let mut entries = store
        .watch_with_history(POLICY_KEY)
        .await
        .map_err(|e| Missing(e.to_string()))?;
    while let Some(entry) = entries.next().await {
        let entry = match entry {
            Ok(entry) => entry,
            Err(err) => return Ok(err.to_string()),
        };
        if entry.revision <= *seen {
            continue;
        }
        *seen = entry.revision;
        let value = match entry.operation {
            Operation::Put => Some(&entry.value[..]),
            Operation::Delete | Operation::Purge => None,
        };
        // Refusals are counted and logged by `apply_bucket_value`.
        let _ = live.apply_bucket_value(value);
    }
    Ok("the server closed it".into())
}
