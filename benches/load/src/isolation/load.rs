//! The load generator: websocket clients in rooms, an open-loop sender (a message is due at
//! its scheduled time whether or not the server keeps up, and its latency counts from that
//! time, so a stalled server cannot hide behind a slowed sender), and receivers that
//! record delivery latency into HDR histograms.
//!
//! What the clients observe ([`Observed`]) and how they connect are here; the sender is in
//! `schedule`, a client's receiver in `receive`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};

mod receive;
mod schedule;

use hdrhistogram::Histogram;
use receive::read;
use schedule::Schedule;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Latencies are recorded in microseconds up to an hour.
const MAX_MICROS: u64 = 3_600_000_000;
/// A delivery later than this counts as not delivered.
pub(super) const DELIVERY_LIMIT: Duration = Duration::from_secs(5);
/// Width of a time bucket of the latency-over-time series.
pub(super) const BUCKET: Duration = Duration::from_millis(250);

/// Reasons of `unmoderated` verdicts the gateway decides itself (no moderator answered).
const LOCAL_REASONS: [&str; 5] = [
    "outbox_full",
    "outbox_shutdown",
    "hold_deadline",
    "inline_",
    "classify_",
];

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the clients observed, shared by every client task.
pub(crate) struct Observed {
    start: Instant,
    /// Scheduled send time of message `seq`, µs after `start` (+1; 0 = not sent).
    sent_us: Vec<AtomicU64>,
    /// The message's sender got a moderator's verdict (allow, flag, block, or a moderator's
    /// own `unmoderated`).
    verdict: Vec<AtomicBool>,
    /// The message was blocked before delivery (inline mode): no delivery is expected.
    blocked: Vec<AtomicBool>,
    /// Delivery latency to the other members.
    pub latency: Mutex<Histogram<u64>>,
    /// Send → verdict at the sender.
    pub lag: Mutex<Histogram<u64>>,
    /// Delivery latency by the send time's bucket (from the start of the recorded run).
    pub series: Vec<Mutex<Histogram<u64>>>,
    /// Delivery latency of the messages sent in the middle third of the recorded run (when
    /// the `-hung` scenarios have their moderators frozen).
    pub middle: Mutex<Histogram<u64>>,
    /// Start of the recorded run, µs after `start`.
    recorded_start_us: AtomicU64,
    /// Length of the recorded run, µs.
    recorded_us: u64,
    /// Deliveries within [`DELIVERY_LIMIT`], and in all.
    pub on_time: AtomicU64,
    /// Every delivery to another member.
    pub deliveries: AtomicU64,
    /// How late the sender was against its schedule (µs), a check on the generator itself.
    pub schedule_lag: Mutex<Histogram<u64>>,
}

impl Observed {
    fn new(capacity: usize, duration: Duration) -> Arc<Self> {
        let buckets = (duration.as_millis() / BUCKET.as_millis()) as usize + 1;
        Arc::new(Self {
            start: Instant::now(),
            sent_us: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            verdict: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            blocked: (0..capacity).map(|_| AtomicBool::new(false)).collect(),
            latency: Mutex::new(histogram()),
            lag: Mutex::new(histogram()),
            series: (0..buckets).map(|_| Mutex::new(histogram())).collect(),
            middle: Mutex::new(histogram()),
            recorded_start_us: AtomicU64::new(0),
            recorded_us: duration.as_micros() as u64,
            on_time: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            schedule_lag: Mutex::new(histogram()),
        })
    }

    fn since_start_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    fn sent(&self, seq: usize) -> Option<u64> {
        match self.sent_us.get(seq)?.load(Ordering::Relaxed) {
            0 => None,
            us => Some(us - 1),
        }
    }

    fn delivered(&self, seq: usize) {
        let Some(sent) = self.sent(seq) else { return };
        let latency = self.since_start_us().saturating_sub(sent).max(1);
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        if latency <= DELIVERY_LIMIT.as_micros() as u64 {
            self.on_time.fetch_add(1, Ordering::Relaxed);
        }
        let _ = lock(&self.latency).record(latency.min(MAX_MICROS));
        let offset = sent.saturating_sub(self.recorded_start_us.load(Ordering::Relaxed));
        let bucket = (offset / BUCKET.as_micros() as u64) as usize;
        if let Some(series) = self.series.get(bucket) {
            let _ = lock(series).record(latency.min(MAX_MICROS));
        }
        if (self.recorded_us / 3..self.recorded_us * 2 / 3).contains(&offset) {
            let _ = lock(&self.middle).record(latency.min(MAX_MICROS));
        }
    }

    fn verdict_for(&self, seq: usize, action: &str, reason: Option<&str>) {
        let Some(sent) = self.sent(seq) else { return };
        if reason.is_some_and(|r| LOCAL_REASONS.iter().any(|local| r.starts_with(local))) {
            return;
        }
        if action == "block" {
            self.blocked[seq].store(true, Ordering::Relaxed);
        }
        if !self.verdict[seq].swap(true, Ordering::Relaxed) {
            let lag = self.since_start_us().saturating_sub(sent).max(1);
            let _ = lock(&self.lag).record(lag.min(MAX_MICROS));
        }
    }

    /// Messages sent so far.
    pub(crate) fn sent_count(&self) -> usize {
        self.sent_us
            .iter()
            .take_while(|s| s.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Sent messages that got a moderator's verdict.
    pub(crate) fn verdicts(&self, sent: usize) -> usize {
        self.verdict[..sent]
            .iter()
            .filter(|v| v.load(Ordering::Relaxed))
            .count()
    }

    /// Sent messages blocked before delivery.
    pub(crate) fn blocked_count(&self, sent: usize) -> usize {
        self.blocked[..sent]
            .iter()
            .filter(|v| v.load(Ordering::Relaxed))
            .count()
    }
}

/// The load: clients, rooms, texts and the sending schedule.
pub(super) struct Load {
    /// Websocket clients.
    pub connections: usize,
    /// Rooms; client `i` is in room `i % rooms`.
    pub rooms: usize,
    /// Messages per second, all clients together.
    pub rate: f64,
    /// Unrecorded traffic before the measured run (warms caches, connections, JITs of the
    /// kernel's network path).
    pub warmup: Duration,
    /// How long to send and record.
    pub duration: Duration,
    /// Chat lines to send, cycled.
    pub texts: Arc<Vec<String>>,
}
/// Connected clients, ready to send.
pub(super) struct Clients {
    writers: Arc<Vec<mpsc::UnboundedSender<Message>>>,
    /// What the clients observe.
    pub observed: Arc<Observed>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Connects every client to `addr` and joins its room; returns when all are members.
    pub(super) async fn connect(&self, addr: SocketAddr) -> anyhow::Result<Clients> {
        let capacity = (self.rate * self.duration.as_secs_f64()) as usize + 16;
        let observed = Observed::new(capacity, self.duration);
        let mut writers = Vec::with_capacity(self.connections);
        let mut tasks = Vec::with_capacity(self.connections);
        let mut joined = Vec::with_capacity(self.connections);
        for i in 0..self.connections {
            let url = format!("ws://{addr}/ws?user=u{i}");
            // A small read buffer: tungstenite zero-fills all of it on every read.
            let config = WebSocketConfig::default().read_buffer_size(4096);
            let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
                .await
                .with_context(|| format!("client {i} connecting"))?;
            let (mut sink, stream) = ws.split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
            let room = format!("r{}", i % self.rooms);
            tx.send(Message::text(format!(
                r#"{{"type":"join","room":"{room}"}}"#
            )))?;
            let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
            joined.push(joined_rx);
            // Unbounded on purpose: the schedule must never wait on a stalled socket.
            tasks.push(tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    if sink.send(message).await.is_err() {
                        break;
                    }
                }
            }));
            tasks.push(tokio::spawn(read(stream, Arc::clone(&observed), joined_tx)));
            writers.push(tx);
        }
        for (i, joined) in joined.into_iter().enumerate() {
            tokio::time::timeout(Duration::from_secs(30), joined)
                .await
                .with_context(|| format!("client {i} never joined its room"))?
                .with_context(|| format!("client {i} closed before joining"))?;
        }
        Ok(Clients {
            writers: Arc::new(writers),
            observed,
            tasks,
        })
    }
}

impl Clients {
    /// Sends `warmup` of unrecorded traffic, then the recorded schedule for `duration`;
    /// calls `at_third(1)` and `at_third(2)` at one and two thirds of the recorded run (the
    /// hung scenarios freeze and thaw the moderators there). The schedule runs on its own
    /// thread and runtime, so the 2×`connections` client tasks cannot make it late.
    /// Returns how long the recorded part took.
    pub(super) async fn send(
        &self,
        load: &Load,
        at_third: impl FnMut(u32) + Send + 'static,
    ) -> Duration {
        let schedule = Schedule {
            writers: Arc::clone(&self.writers),
            observed: Arc::clone(&self.observed),
            texts: Arc::clone(&load.texts),
            rooms: load.rooms,
            rate: load.rate,
            warmup: load.warmup,
            duration: load.duration,
        };
        let thread = tokio::task::spawn_blocking(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(schedule.run(at_third)),
                Err(err) => {
                    eprintln!("cannot start the sender's runtime: {err}");
                    Duration::ZERO
                }
            }
        });
        thread.await.unwrap_or_default()
    }

    /// Closes every client.
    pub(super) fn close(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}
