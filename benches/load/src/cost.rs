//! `offpath bench cost`: what one sender of expensive texts does to everyone else's
//! verdicts (issue 26). An outside tester sent 4 KiB texts of two-letter pseudo-words at the
//! allowed 10 messages a second: each reads as ~98 windows of the model (a chat line as
//! one), and a victim's messages in the same `hold:fail_closed` room missed the 3 s hold
//! deadline. Each run is a fresh nats-server and moderator; a hold room sends ordinary
//! lines at `--hold-rate` on the interactive lane for `--duration-s`:
//!
//! * `idle`: alone (the floor);
//! * `uncharged`: beside one sender of `--attack-bytes` texts at `--send-rate`, in the same
//!   hold room (interactive lane): what a transport let through when every send cost one;
//! * `charged`: the same sender at the rate a transport lets it through now, each send
//!   costing [`offpath_transport::send_cost`] of the rate (one per `--send-cost-bytes`).
//!
//! Reported: the hold room's publish → verdict p50/p99/max, the share within the hold
//! deadline, and the p99 as a ratio to idle's, in one run.

use std::time::Duration;

use anyhow::Context;
use offpath_protocol::Priority;
use offpath_protocol::subject::interactive_request_subject;

use crate::cli::CostArgs;
use crate::throughput::{Lane, Pipeline, chat_texts, distinct};

/// Runs the three runs and prints one line each.
pub(crate) async fn run(args: CostArgs) -> anyhow::Result<()> {
    let mut config = args.bench.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage::problems)?;
    anyhow::ensure!(
        args.hold_rate > 0.0 && args.send_rate > 0.0 && args.duration_s > 0.0,
        crate::cli::Usage("--hold-rate, --send-rate and --duration-s must be above 0".into())
    );
    let lines = chat_texts(&config.models[0])?;
    let cost = offpath_transport::send_cost(args.attack_bytes, args.send_cost_bytes);
    let charged_rate = args.send_rate / cost;
    println!(
        "one moderator, {} inference threads ({} interactive); a hold room sends {} lines \
         at {:.1}/s; one sender of {} B pseudo-word texts at {:.1}/s uncharged, {:.3}/s \
         charged ({cost:.0} of the send rate each at --send-cost-bytes {})",
        config.inference.inference_threads,
        config.inference.interactive_threads,
        held(&args),
        args.hold_rate,
        args.attack_bytes,
        args.send_rate,
        charged_rate,
        args.send_cost_bytes
    );
    let mut idle_p99 = None;
    for (name, rate) in [
        ("idle", 0.0),
        ("uncharged", args.send_rate),
        ("charged", charged_rate),
    ] {
        let attacks = (rate * args.duration_s).ceil() as usize;
        let latencies = hold_beside_sender(&args, &lines, name, rate, attacks).await?;
        let ms = |q: f64| {
            let i = ((latencies.len() as f64 - 1.0) * q) as usize;
            latencies.get(i).copied().unwrap_or(0) as f64 / 1000.0
        };
        let within = latencies
            .iter()
            .filter(|us| **us <= args.deadline_ms * 1000)
            .count();
        let p99 = ms(0.99);
        let base = *idle_p99.get_or_insert(p99);
        println!(
            "{name}: hold room publish → verdict p50 {:.1} ms, p99 {p99:.1} ms, max {:.1} ms; \
             {within} of {} within the {} ms hold deadline; {attacks} expensive texts sent; \
             p99 = {:.2} × idle",
            ms(0.5),
            ms(1.0),
            latencies.len(),
            args.deadline_ms,
            p99 / base.max(0.001)
        );
    }
    Ok(())
}

/// Lines the hold room sends in one run.
fn held(args: &CostArgs) -> usize {
    (args.hold_rate * args.duration_s).ceil().max(1.0) as usize
}

/// One run (`name`) on a fresh nats-server and moderator: the hold room's lines beside
/// `attacks` expensive texts sent at `rate`, both on the interactive lane. Returns the hold
/// room's publish → verdict latencies (µs, sorted).
async fn hold_beside_sender(
    args: &CostArgs,
    lines: &[String],
    name: &str,
    rate: f64,
    attacks: usize,
) -> anyhow::Result<Vec<u64>> {
    let flags = args.bench.moderator_flags();
    let timeout = Duration::from_secs(args.bench.timeout_s);
    let mut pipeline = Pipeline::start(&flags, 1, 1, timeout)
        .await
        .with_context(|| format!("starting the {name} run"))?;
    pipeline.run(&distinct(lines, "warm", 200), None).await?;
    let hold = distinct(lines, "held", held(args));
    let expensive = pseudo_words(attacks, args.attack_bytes);
    let lane = |prefix: &str| Lane {
        prefix: prefix.into(),
        subject: interactive_request_subject("bench"),
        priority: Some(Priority::High),
    };
    let latencies = pipeline
        .run_beside(
            (&hold, args.hold_rate, lane("held-")),
            (&expensive, rate.max(0.001), lane("expensive-")),
        )
        .await?;
    pipeline.stop();
    Ok(latencies)
}

/// `n` distinct texts of about `bytes` bytes of two-letter pseudo-words (what the outside
/// tester sent: the tokenizer splits them finely, so each text reads as many windows).
fn pseudo_words(n: usize, bytes: usize) -> Vec<String> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut letter = || {
        // xorshift64*: deterministic, no dependency; quality is irrelevant here.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        char::from(b'a' + (x % 26) as u8)
    };
    (0..n)
        .map(|_| {
            let mut text = String::with_capacity(bytes);
            while text.len() + 3 <= bytes {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push(letter());
                text.push(letter());
            }
            text
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts are distinct (the spam-wave cache must not answer them) and of the size
    /// asked for.
    #[test]
    fn pseudo_words_are_distinct_and_long() {
        let texts = pseudo_words(50, 4096);
        let distinct: std::collections::HashSet<&String> = texts.iter().collect();
        assert_eq!(distinct.len(), 50);
        assert!(texts.iter().all(|t| t.len() > 4090 && t.len() <= 4096));
    }
}
