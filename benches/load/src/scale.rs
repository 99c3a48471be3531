//! `offpath bench scale`: moderators are added as processes sharing one durable consumer;
//! this measures what each addition buys. For every count N of `--moderators` (a list, so
//! a bigger machine can run 1,2,4,8), a fresh nats-server and N moderator processes
//! classify the same number of distinct requests (the spam-wave cache never answers);
//! verdicts/s and efficiency against N = 1 (rate_N ÷ (N × rate_1)) are printed, in one run.
//! With `--replicas 1,3` the same counts run again on a local 3-node cluster with the
//! streams replicated on all three (R3), and each line gives its rate as a ratio to R1's:
//! the cost of replication. On 2 cores only N ≤ 2 means anything: the moderators (and the
//! cluster's nodes) share the cores.

use std::time::Duration;

use anyhow::Context;

use crate::cli::ScaleArgs;
use crate::throughput::{Pipeline, chat_texts, distinct};

/// Runs the scenario and prints one line per moderator count.
pub(crate) async fn run(args: ScaleArgs) -> anyhow::Result<()> {
    let mut config = args.bench.moderator.clone();
    offpath_local::locate::complete_model_paths(&mut config.models, &mut config.ort_library)?;
    config.validate().map_err(crate::cli::Usage::problems)?;
    anyhow::ensure!(
        !args.moderators.is_empty() && args.moderators.iter().all(|&n| n > 0),
        crate::cli::Usage("--moderators: a list of counts of at least 1".into())
    );
    let lines = chat_texts(&config.models[0])?;
    let flags = args.bench.moderator_flags();
    let timeout = Duration::from_secs(args.bench.timeout_s);
    let n = args.bench.messages;
    println!(
        "moderators as processes sharing one consumer (R1: one nats-server; R3: a local \
         3-node cluster), {n} distinct requests per count, {} inference threads each",
        config.inference.inference_threads
    );
    let mut r1: Vec<(usize, f64)> = Vec::new();
    for &replicas in &args.replicas {
        let mut single = None;
        for &count in &args.moderators {
            let mut pipeline = Pipeline::start(&flags, count, replicas, timeout)
                .await
                .with_context(|| format!("starting {count} moderators on R{replicas}"))?;
            // A short unrecorded run first: models warm, consumers bound.
            pipeline.run(&distinct(&lines, "warm", 200), None).await?;
            let run = pipeline.run(&distinct(&lines, "scale", n), None).await?;
            pipeline.stop();
            let base = *single.get_or_insert(run.rate / count as f64);
            let against_r1 = match r1.iter().find(|(c, _)| *c == count) {
                Some((_, rate)) if replicas > 1 => format!(", {:.2} × R1", run.rate / rate),
                _ => String::new(),
            };
            if replicas <= 1 {
                r1.push((count, run.rate));
            }
            println!(
                "R{replicas}, moderators {count}: {:.0} verdicts/s, efficiency {:.2} \
                 (vs {:.0}/s × {count}){against_r1}, {:.3} ms moderator CPU per verdict",
                run.rate,
                run.rate / (base * count as f64),
                base,
                run.cpu_ms
            );
        }
    }
    Ok(())
}
