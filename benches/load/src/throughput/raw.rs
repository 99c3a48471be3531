//! The baseline: the moderator's policy run in this process, on threads of its own, with no
//! NATS, as fast as it goes.

use std::sync::Arc;
use std::time::Instant;

use offpath_classifier::{Model, SessionConfig, policy::Policy};

use crate::measure::cpu_seconds;

/// About `n` of `texts`, spread evenly over all of them.
pub(super) fn even_sample(texts: &[String], n: usize) -> Vec<String> {
    let step = texts.len().div_ceil(n.max(1)).max(1);
    texts.iter().step_by(step).cloned().collect()
}

/// Speed and CPU cost of raw in-process inference.
pub(super) struct Raw {
    /// Messages per second.
    pub(super) rate: f64,
    /// Milliseconds of CPU (user + system, all threads) per message.
    pub(super) cpu_ms: f64,
}

/// Messages/s and CPU per message of the policy over `texts` on `inference_threads`
/// threads, in batches of `batch`, as the moderator runs it.
pub(super) async fn raw_rate(
    config: &offpath_moderator::Config,
    texts: &[String],
    batch: usize,
) -> anyhow::Result<Raw> {
    let threads = config.inference.inference_threads.max(1);
    let session = SessionConfig {
        intra_threads: config.inference.intra_threads,
        ..SessionConfig::default()
    };
    let mut policies = Vec::new();
    for _ in 0..threads {
        let models = config
            .models
            .iter()
            .map(|d| Model::load(d, &session))
            .collect::<Result<Vec<_>, _>>()?;
        policies.push(Policy::new(
            models,
            config.inference.sub_batch,
            config.inference.max_batch_tokens,
        ));
    }
    let texts: Arc<Vec<String>> = Arc::new(texts.to_vec());
    let cpu_before = cpu_seconds(std::process::id());
    let started = Instant::now();
    let handles: Vec<_> = policies
        .into_iter()
        .enumerate()
        .map(|(t, mut policy)| {
            let texts = Arc::clone(&texts);
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mine: Vec<&str> = texts
                    .iter()
                    .skip(t)
                    .step_by(threads)
                    .map(String::as_str)
                    .collect();
                for chunk in mine.chunks(batch.max(1)) {
                    policy.assess(chunk, None)?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("raw inference thread panicked"))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id())
        .zip(cpu_before)
        .map(|(a, b)| a - b);
    Ok(Raw {
        rate: texts.len() as f64 / elapsed,
        cpu_ms: cpu.unwrap_or(f64::NAN) * 1000.0 / texts.len() as f64,
    })
}
