//! `offpath bench isolation`: proof, with numbers, that chat is isolated from inference.
//!
//! For each scenario a fresh stack is started as separate processes — nats-server, one
//! transport, moderators — then websocket clients in rooms send at a fixed open-loop rate
//! and the receivers measure delivery latency. `decoupled-*` runs offpath as designed;
//! `inline-*` runs the same gateway in its comparison mode, where each send awaits the
//! moderator before fan-out; `none` runs without moderation (the floor). `-slow` adds
//! 500 ms to every batch; `-hung` freezes the moderator processes with SIGSTOP for the
//! middle third of the run (a real hang), then SIGCONT. `decoupled-secure` is `decoupled`
//! with NATS authorization and TLS on ([`secure`]).

mod cpus;
mod load;
mod processes;
mod report;
mod secure;
mod svg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use offpath_local::process::{self as launch, Proc};
use offpath_local::{http, scrape};

use crate::cli::{IsolationArgs, Usage};
use crate::measure;
use processes::start_stack;

pub(crate) use report::ScenarioResult;

/// One scenario: how the gateway moderates and what goes wrong with the moderators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scenario {
    /// `off`, `decoupled` or `inline`.
    pub moderation: &'static str,
    /// None, `slow` or `hung`.
    pub fault: Option<&'static str>,
    /// NATS with authorization and TLS on.
    pub secure: bool,
}

impl Scenario {
    /// Every scenario, in report order.
    pub(crate) const ALL: [Scenario; 8] = [
        Scenario::new("off", None),
        Scenario::new("decoupled", None),
        Scenario::new("decoupled", Some("slow")),
        Scenario::new("decoupled", Some("hung")),
        Scenario::new("inline", None),
        Scenario::new("inline", Some("slow")),
        Scenario::new("inline", Some("hung")),
        Scenario {
            secure: true,
            ..Scenario::new("decoupled", None)
        },
    ];

    const fn new(moderation: &'static str, fault: Option<&'static str>) -> Self {
        Self {
            moderation,
            fault,
            secure: false,
        }
    }

    /// `none`, `decoupled`, `decoupled-slow`, …
    pub(crate) fn name(&self) -> String {
        match (self.moderation, self.fault) {
            ("off", _) => "none".to_string(),
            (m, None) if self.secure => format!("{m}-secure"),
            (m, None) => m.to_string(),
            (m, Some(f)) => format!("{m}-{f}"),
        }
    }

    /// Parses a comma-separated list of scenario names.
    pub(crate) fn parse_list(list: &str) -> anyhow::Result<Vec<Scenario>> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|name| {
                Scenario::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .with_context(|| format!("unknown scenario {name:?}"))
            })
            .collect()
    }
}

/// Runs the scenarios and writes the report.
pub(crate) async fn run(args: IsolationArgs) -> anyhow::Result<()> {
    let scenarios = Scenario::parse_list(&args.scenarios).map_err(|e| Usage(e.to_string()))?;
    let texts = Arc::new(chat_texts()?);
    let load = load::Load {
        connections: args.connections,
        rooms: args.rooms.max(1),
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup_s),
        duration: Duration::from_secs(args.duration_s),
        texts,
    };
    eprintln!(
        "isolation: {} connections in {} rooms, {} msg/s for {} s per scenario; {} scenarios",
        load.connections,
        load.rooms,
        load.rate,
        args.duration_s,
        scenarios.len()
    );
    let mut results = Vec::new();
    for scenario in scenarios {
        eprintln!("scenario {}", scenario.name());
        let result = run_scenario(&args, &load, scenario).await?;
        eprintln!("  {}", result.summary());
        results.push(result);
    }
    let paths = report::write(&args, &load, &results)?;
    println!("{}", report::markdown(&args, &load, &results));
    for path in paths {
        println!("wrote {}", path.display());
    }
    Ok(())
}
async fn run_scenario(
    args: &IsolationArgs,
    load: &load::Load,
    scenario: Scenario,
) -> anyhow::Result<ScenarioResult> {
    let (stack, public) = start_stack(args, scenario).await?;
    let clients = load.connect(public).await?;
    let cpu_before = own_cpu_seconds();
    let started = Instant::now();
    let hung = scenario.fault == Some("hung");
    let recorded = send_freezing(&clients, load, hung.then_some(&stack.moderators)).await?;
    let send_seconds = recorded.as_secs_f64().max(0.001);
    let generator_cpu = (own_cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    // Let late deliveries arrive (past the limit they count as undelivered anyway), then
    // give verdicts time to catch up.
    tokio::time::sleep(load::DELIVERY_LIMIT).await;
    let observed = Arc::clone(&clients.observed);
    let sent = observed.sent_count();
    if scenario.moderation == "decoupled" {
        wait_for_verdicts(&observed, sent, Duration::from_secs(args.settle_s)).await;
    }
    let metrics = http::get(stack.transport.ops, "/metrics")
        .await
        .map(|(_, body)| body)
        .unwrap_or_default();
    // `+ 0.0`: an empty sum is -0.0.
    let shed = scrape::metric(&metrics, "offpath_transport_outbox_shed_total", "") + 0.0;
    clients.close();
    for moderator in stack.moderators {
        let _ = moderator.stop(Duration::from_secs(5)).await;
    }
    let _ = stack.transport.stop(Duration::from_secs(10)).await;
    let members = (load.connections / load.rooms).max(1);
    let name = scenario.name();
    let facts = report::RunFacts {
        name: &name,
        sent,
        members,
        send_seconds,
        shed,
        generator_cpu_cores: generator_cpu,
        // Inline, a blocked message is never delivered; decoupled, it is delivered, then
        // retracted.
        blocked_are_undelivered: scenario.moderation == "inline",
    };
    Ok(ScenarioResult::from_observed(&observed, &facts))
}

/// Sends the load; with `freeze`, stops those moderators (SIGSTOP) for the middle third of
/// the sending time and lets them go on (SIGCONT) after it. Returns the sending time.
async fn send_freezing(
    clients: &load::Clients,
    load: &load::Load,
    freeze: Option<&Vec<Proc>>,
) -> anyhow::Result<Duration> {
    let pids: Vec<u32> = freeze.into_iter().flatten().map(Proc::pid).collect();
    let signal_errors = Arc::new(std::sync::Mutex::new(Vec::new()));
    let errors = Arc::clone(&signal_errors);
    let recorded = clients
        .send(load, move |third| {
            let signal = if third == 1 {
                nix::sys::signal::Signal::SIGSTOP
            } else {
                nix::sys::signal::Signal::SIGCONT
            };
            for pid in &pids {
                if let Err(err) = launch::signal(*pid, signal) {
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(err);
                }
            }
        })
        .await;
    if let Some(err) = signal_errors
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
    {
        bail!("signalling the moderators: {err:#}");
    }
    Ok(recorded)
}

/// Waits until every one of the `sent` messages has its verdict, at most `limit`.
async fn wait_for_verdicts(observed: &load::Observed, sent: usize, limit: Duration) {
    let settle = Instant::now();
    while observed.verdicts(sent) < sent && settle.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Short chat lines from the models' parity fixture (`#` is kept out: the clients tag each
/// text with ` #<seq>`).
fn chat_texts() -> anyhow::Result<Vec<String>> {
    let dir = offpath_local::locate::resolve_in_checkout(std::path::Path::new("models/fixtures"));
    measure::fixture_texts(&dir.join("parity.json"), |t| {
        !t.is_empty() && t.len() <= 300 && !t.contains('#')
    })
}

/// CPU seconds (user + system) this process has used.
fn own_cpu_seconds() -> f64 {
    measure::cpu_seconds(std::process::id()).unwrap_or(0.0)
}
#[cfg(test)]
mod tests;
