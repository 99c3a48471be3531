//! The open-loop sender: a message is due at its scheduled time whether or not the server
//! keeps up, and its latency counts from that time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::{MAX_MICROS, Observed, lock};

/// The open-loop sender.
pub(super) struct Schedule {
    pub(super) writers: Arc<Vec<mpsc::UnboundedSender<Message>>>,
    pub(super) observed: Arc<Observed>,
    pub(super) texts: Arc<Vec<String>>,
    pub(super) rooms: usize,
    pub(super) rate: f64,
    pub(super) warmup: Duration,
    pub(super) duration: Duration,
}

impl Schedule {
    fn frame(&self, client: usize, text: &str, tag: String) -> Message {
        let frame = serde_json::json!({
            "type": "send",
            "room": format!("r{}", client % self.rooms),
            "text": format!("{text} #{tag}"),
            "client_msg_id": tag,
        });
        Message::text(frame.to_string())
    }

    /// Sends the warm-up, then the recorded run, calling `at_third` at one and two thirds
    /// of it; returns how long the recorded run took.
    pub(super) async fn run(self, mut at_third: impl FnMut(u32)) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / self.rate);
        let clients = self.writers.len();
        // Warm-up: same traffic, tagged `w<n>` so the receivers do not record it.
        let warm_start = Instant::now();
        let warm_total = (self.rate * self.warmup.as_secs_f64()) as usize;
        for n in 0..warm_total {
            tokio::time::sleep_until(warm_start + interval.mul_f64(n as f64)).await;
            let text = &self.texts[n % self.texts.len()];
            let _ = self.writers[n % clients].send(self.frame(n % clients, text, format!("w{n}")));
        }
        let start = Instant::now();
        self.observed.recorded_start_us.store(
            start.duration_since(self.observed.start).as_micros() as u64,
            Ordering::Relaxed,
        );
        let total =
            ((self.rate * self.duration.as_secs_f64()) as usize).min(self.observed.sent_us.len());
        let mut thirds = 0;
        let mut next_report = start + Duration::from_secs(1);
        for seq in 0..total {
            let due = start + interval.mul_f64(seq as f64);
            while thirds < 2 && due >= start + self.duration.mul_f64(f64::from(thirds + 1) / 3.0) {
                thirds += 1;
                at_third(thirds);
            }
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let late = Instant::now().saturating_duration_since(due).as_micros() as u64;
            let _ = lock(&self.observed.schedule_lag).record(late.clamp(1, MAX_MICROS));
            let due_us = due.duration_since(self.observed.start).as_micros() as u64;
            self.observed.sent_us[seq].store(due_us + 1, Ordering::Relaxed);
            let client = seq % clients;
            let text = &self.texts[seq % self.texts.len()];
            let _ = self.writers[client].send(self.frame(client, text, seq.to_string()));
            if Instant::now() >= next_report {
                next_report += Duration::from_secs(1);
                let p99 = lock(&self.observed.latency).value_at_quantile(0.99);
                eprint!(
                    "\r  t={:>3}s sent {seq:>7} deliveries {:>9} p99 {:>9.2} ms   ",
                    start.elapsed().as_secs(),
                    self.observed.deliveries.load(Ordering::Relaxed),
                    p99 as f64 / 1000.0
                );
            }
        }
        eprintln!();
        start.elapsed()
    }
}
