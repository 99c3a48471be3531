//! The pulls on one bound consumer ([`Pulls`]): the current one and, for a while after each
//! missed heartbeat, the ones it replaced; and the grace for pulls no leader answers
//! ([`Leaderless`]).

use std::task::Poll;
use std::time::Duration;

use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::{PullConsumer, pull};
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tracing::debug;

/// How long pulls may find no consumer leader to answer them ("no responders") before the
/// consumer is looked up and bound again. While a cluster fails over, the consumer's new
/// leader answers pulls within seconds, while lookups (JetStream API requests) go unanswered
/// until a meta leader is elected too (seen: 12 s of lookups timing out). A deleted
/// consumer answers the same way for good, and its waiting pulls hear "consumer deleted".
pub(crate) const LEADERLESS_FOR: Duration = Duration::from_secs(10);
/// The pause between pulls that no leader answered.
pub(crate) const LEADERLESS_PAUSE: Duration = Duration::from_millis(250);

/// The pulls on one bound consumer: the current one and, for `retire_after` after each
/// missed heartbeat, the one it replaced. A missed heartbeat is also what a process thawed
/// after a freeze sees before it has read what the server sent it meanwhile, so a replaced
/// pull is read on (its own errors ignored) until its deadline; then what it already holds
/// is taken and it is dropped. Heartbeats are missed at most every two heartbeats, so a
/// handful of pulls retire at once.
pub(crate) struct Pulls {
    pub(crate) consumer: PullConsumer,
    current: pull::Stream,
    retiring: Vec<(pull::Stream, Instant)>,
    retire_after: Duration,
}

/// What [`Pulls::next`] read instead of a message.
pub(crate) enum Trouble {
    /// The current pull missed its heartbeats.
    Silent,
    /// The current pull reported an error.
    Error(pull::MessagesError),
    /// The current pull's stream of messages ended.
    Ended,
}

impl Pulls {
    pub(crate) fn new(
        consumer: PullConsumer,
        current: pull::Stream,
        retire_after: Duration,
    ) -> Self {
        Self {
            consumer,
            current,
            retiring: Vec::new(),
            retire_after,
        }
    }

    /// The next message from any pull, retiring ones first (their requests are older).
    /// Cancel-safe: a message is taken from a pull only in the poll that returns it.
    pub(crate) async fn next(&mut self) -> Result<Box<Message>, Trouble> {
        loop {
            if let Some(message) = self.drop_expired() {
                return Ok(Box::new(message));
            }
            let first_deadline = self.retiring.iter().map(|(_, until)| *until).min();
            let deadline = async move {
                match first_deadline {
                    Some(until) => tokio::time::sleep_until(until).await,
                    None => std::future::pending().await,
                }
            };
            let retiring = &mut self.retiring;
            let from_retiring = std::future::poll_fn(|cx| {
                let mut i = 0;
                while i < retiring.len() {
                    match retiring[i].0.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok(message))) => return Poll::Ready(message),
                        // Polled again: each error took an item or reset a timer, and only
                        // a pending poll leaves a waker behind.
                        Poll::Ready(Some(Err(err))) => debug!("retiring pull: {err}"),
                        Poll::Ready(None) => drop(retiring.swap_remove(i)),
                        Poll::Pending => i += 1,
                    }
                }
                Poll::Pending
            });
            tokio::select! {
                biased;
                message = from_retiring => return Ok(Box::new(message)),
                item = self.current.next() => return Self::read(item),
                () = deadline => {}
            }
        }
    }

    /// Drops the retiring pulls past their deadline, after taking what each already holds
    /// (one message at a time: the first found is returned).
    fn drop_expired(&mut self) -> Option<Message> {
        let now = Instant::now();
        while let Some(i) = self.retiring.iter().position(|(_, until)| *until <= now) {
            match self.retiring[i].0.next().now_or_never() {
                Some(Some(Ok(message))) => return Some(message),
                _ => drop(self.retiring.swap_remove(i)),
            }
        }
        None
    }

    fn read(item: Option<Result<Message, pull::MessagesError>>) -> Result<Box<Message>, Trouble> {
        match item {
            Some(Ok(message)) => Ok(Box::new(message)),
            Some(Err(err)) if err.kind() == pull::MessagesErrorKind::MissingHeartbeat => {
                Err(Trouble::Silent)
            }
            Some(Err(err)) => Err(Trouble::Error(err)),
            None => Err(Trouble::Ended),
        }
    }

    /// `fresh` becomes the current pull; the one it replaces retires.
    pub(crate) fn replace(&mut self, fresh: pull::Stream) {
        let old = std::mem::replace(&mut self.current, fresh);
        self.retiring
            .push((old, Instant::now() + self.retire_after));
    }

    /// `fresh` becomes the current pull; the one it replaces (which no leader answered, so
    /// it holds nothing) is dropped.
    pub(crate) fn restart(&mut self, fresh: pull::Stream) {
        self.current = fresh;
    }
}

/// A run of pulls that no consumer leader answered: since when, and the latest. A run ends
/// after two heartbeats without one, so an earlier failover does not shorten the next one's
/// grace.
#[derive(Debug, Default)]
pub(crate) struct Leaderless(Option<(Instant, Instant)>);

impl Leaderless {
    /// Records a pull no leader answered at `now`; whether the run is still within
    /// [`LEADERLESS_FOR`] of its first.
    pub(crate) fn still_within_grace(&mut self, now: Instant, heartbeat: Duration) -> bool {
        let since = match self.0 {
            Some((since, last)) if now.duration_since(last) < 2 * heartbeat => since,
            _ => now,
        };
        self.0 = Some((since, now));
        now.duration_since(since) < LEADERLESS_FOR
    }

    /// A message came: the run, if any, is over.
    pub(crate) fn end(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEARTBEAT: Duration = Duration::from_secs(2);

    /// A run of leaderless pulls is granted [`LEADERLESS_FOR`] from its first, however
    /// often it pulls meanwhile; after that the consumer counts as lost.
    #[test]
    fn leaderless_grace_runs_from_the_first_unanswered_pull() {
        let start = Instant::now();
        let mut run = Leaderless::default();
        let at = |ms| start + Duration::from_millis(ms);
        assert!(run.still_within_grace(at(0), HEARTBEAT));
        let mut ms = 0;
        while ms + 250 < LEADERLESS_FOR.as_millis() as u64 {
            ms += 250;
            assert!(run.still_within_grace(at(ms), HEARTBEAT), "at {ms} ms");
        }
        assert!(!run.still_within_grace(at(ms + 250), HEARTBEAT));
    }

    /// A gap of two heartbeats (the cluster answered meanwhile) starts a new run with a
    /// full grace; so does a message ([`Leaderless::end`]).
    #[test]
    fn a_new_failover_gets_a_full_grace() {
        let start = Instant::now();
        let at = |s| start + Duration::from_secs(s);
        let mut run = Leaderless::default();
        assert!(run.still_within_grace(at(0), HEARTBEAT));
        assert!(run.still_within_grace(at(3), HEARTBEAT));
        // 3 → 8: more than two heartbeats without an unanswered pull.
        assert!(run.still_within_grace(at(8), HEARTBEAT));
        assert!(run.still_within_grace(at(11), HEARTBEAT));
        run.end();
        assert!(run.still_within_grace(at(30), HEARTBEAT));
        assert!(run.still_within_grace(at(32), HEARTBEAT));
    }
}
