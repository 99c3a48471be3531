//! [`Consumer`]: binds (again with a backoff while that fails), pulls, and heals what the
//! pulls report, handing out one message at a time.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{self, MessagesErrorKind};
use async_nats::jetstream::{self, Message};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::bind::{self, Bound, Unbound};
use crate::pulls::{LEADERLESS_PAUSE, Leaderless, Pulls, Trouble};
use crate::{Hooks, PullAgain, Settings, Target};

/// First wait between bind attempts; doubled after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait between bind attempts: a fleet of processes re-binding after an outage
/// does not hammer a recovering server, and one that comes back is found within seconds.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Binding failed for [`Settings::give_up_after`].
#[derive(Debug, thiserror::Error)]
#[error("consumer not bound for {} ms, giving up: {reason}", waited.as_millis())]
pub struct GaveUp {
    /// How long binding was tried.
    pub waited: Duration,
    /// The last attempt's error.
    pub reason: Unbound,
}

/// A durable pull consumer that binds itself, and binds again when it is lost (see the
/// crate's overview). Messages are handed out by [`next`](Self::next); what they become,
/// and acking them, is the caller's.
pub struct Consumer<H> {
    js: jetstream::Context,
    target: Target,
    settings: Settings,
    hooks: H,
    /// The pulls while bound.
    pulls: Option<Pulls>,
    leaderless: Leaderless,
    /// Successful binds so far: the first is not "again".
    binds: u64,
    /// While binding fails: since when, and the next wait.
    retry: Option<Retry>,
}

/// Failed binds in a row.
#[derive(Debug, Clone, Copy)]
struct Retry {
    since: Instant,
    backoff: Duration,
}

impl<H: Hooks> Consumer<H> {
    /// A consumer of `target`, not bound yet: the first [`next`](Self::next) binds it.
    pub fn new(js: jetstream::Context, target: Target, settings: Settings, hooks: H) -> Self {
        Self {
            js,
            target,
            settings,
            hooks,
            pulls: None,
            leaderless: Leaderless::default(),
            binds: 0,
            retry: None,
        }
    }

    /// The service's hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The service's hooks, to tell them what a message taught (the transport's last
    /// verdict seen, where a re-created consumer starts).
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// Whether the consumer is bound now.
    pub fn is_bound(&self) -> bool {
        self.pulls.is_some()
    }

    /// The next message: binds first when not bound, replaces silent pulls, binds again
    /// when the consumer is lost. Returns [`GaveUp`] only when binding failed for
    /// [`Settings::give_up_after`]. Cancel-safe: dropping the future loses no message, and
    /// the give-up clock keeps running across calls.
    pub async fn next(&mut self) -> Result<Message, GaveUp> {
        loop {
            if self.pulls.is_none() {
                self.bind_with_retry().await?;
            }
            let Some(pulls) = self.pulls.as_mut() else {
                continue;
            };
            let trouble = match pulls.next().await {
                Ok(message) => {
                    self.leaderless.end();
                    return Ok(*message);
                }
                Err(trouble) => trouble,
            };
            if let Err(reason) = self.heal(trouble).await {
                warn!(
                    stream = %self.target.stream,
                    consumer = %self.target.consumer,
                    "consumer lost, binding again: {reason}"
                );
                self.pulls = None;
                self.hooks.lost(&reason);
            }
        }
    }

    /// Binds, waiting between failed attempts; gives up after `give_up_after` of failures.
    async fn bind_with_retry(&mut self) -> Result<(), GaveUp> {
        self.retry.get_or_insert(Retry {
            since: Instant::now(),
            backoff: BACKOFF_MIN,
        });
        loop {
            let bound = bind::bind(&self.js, &self.target, &self.settings, &mut self.hooks).await;
            match bound {
                Ok(Bound { consumer, pull }) => {
                    self.retry = None;
                    self.hooks.bound(consumer.cached_info(), self.binds > 0);
                    self.binds += 1;
                    let retire_after = self.settings.retire_after();
                    self.pulls = Some(Pulls::new(consumer, pull, retire_after));
                    return Ok(());
                }
                Err(reason) => self.wait_to_retry(reason).await?,
            }
        }
    }

    /// Reports a failed bind and waits for the next attempt, or gives up.
    async fn wait_to_retry(&mut self, reason: Unbound) -> Result<(), GaveUp> {
        self.hooks.unbound(&reason);
        let retry = self.retry.get_or_insert(Retry {
            since: Instant::now(),
            backoff: BACKOFF_MIN,
        });
        let waited = retry.since.elapsed();
        let wait = match self.settings.give_up_after {
            Some(give_up) if waited >= give_up => return Err(GaveUp { waited, reason }),
            Some(give_up) => retry.backoff.min(give_up - waited),
            None => retry.backoff,
        };
        warn!(
            stream = %self.target.stream,
            consumer = %self.target.consumer,
            "binding the consumer failed, retrying in {wait:?}: {reason}"
        );
        retry.backoff = (retry.backoff * 2).min(BACKOFF_MAX);
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// Deals with what the pulls reported instead of a message: `Err` when the consumer is
    /// lost.
    async fn heal(&mut self, trouble: Trouble) -> Result<(), Unbound> {
        let Some(pulls) = self.pulls.as_mut() else {
            return Ok(());
        };
        let (stream, consumer) = (&self.target.stream, &self.target.consumer);
        match trouble {
            Trouble::Silent => {
                warn!(%stream, %consumer, "pull missed its heartbeats; pulling again");
                self.hooks.pulled_again(PullAgain::Silent);
                let fresh = bind::start_pull(&pulls.consumer, &self.settings).await?;
                pulls.replace(fresh);
                // A pull also goes silent when its consumer is gone and no pull of ours
                // waited to hear "consumer deleted": pulls then hear "no responders" between
                // silences, and a silence longer than two heartbeats starts the leaderless
                // grace anew. Ask: gone is lost; no answer (a failover) is pulled on.
                match bind::lookup(&self.js, &self.target, None).await {
                    Err(missing @ Unbound::Missing { .. }) => Err(missing),
                    _ => Ok(()),
                }
            }
            Trouble::Error(err)
                if err.kind() == MessagesErrorKind::NoResponders
                    && self
                        .leaderless
                        .still_within_grace(Instant::now(), self.settings.heartbeat) =>
            {
                debug!(%stream, %consumer, "no consumer leader answers the pull yet; pulling again");
                self.hooks.pulled_again(PullAgain::Leaderless);
                tokio::time::sleep(LEADERLESS_PAUSE).await;
                let fresh = bind::start_pull(&pulls.consumer, &self.settings).await?;
                pulls.restart(fresh);
                Ok(())
            }
            Trouble::Error(err) => {
                warn!(%stream, %consumer, "pulling: {err}");
                self.hooks.pull_error(&err);
                still_there(&self.js, &self.target, err).await
            }
            Trouble::Ended => Err(Unbound::Ended),
        }
    }
}

/// `Ok` unless a pull error means the consumer is gone: the server said so (or refuses
/// pulls for good), or the consumer can no longer be looked up.
async fn still_there(
    js: &jetstream::Context,
    target: &Target,
    err: pull::MessagesError,
) -> Result<(), Unbound> {
    match err.kind() {
        MessagesErrorKind::ConsumerDeleted
        | MessagesErrorKind::NoResponders
        | MessagesErrorKind::PushBasedConsumer
        | MessagesErrorKind::RequestLimitExceeded => Err(Unbound::Refused(err)),
        _ => bind::lookup(js, target, None).await.map(drop),
    }
}
