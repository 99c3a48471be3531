//! The NATS micro service: discovery, synchronous classification, clear errors, and
//! load shedding when too many synchronous calls arrive at once.

mod common;

use std::time::Duration;

use offpath_moderator::Faults;
use offpath_protocol::{Action, Verdict, encode};

fn error_code(message: &async_nats::Message) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")
        .map(|v| v.to_string())
}

async fn wait_for_service(client: &async_nats::Client) {
    for _ in 0..200 {
        if client
            .request("$SRV.PING.offpath-moderator", "".into())
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the micro service never answered $SRV.PING");
}

/// `$SRV.PING/INFO/STATS` answer; `offpath.classify` returns a verdict at once, and bad
/// input gets a 400 with the decoder's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_answers_synchronously() {
    let env = common::env().await;
    let moderator = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    wait_for_service(&env.client).await;
    let info = env
        .client
        .request("$SRV.INFO.offpath-moderator", "".into())
        .await
        .expect("info");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("json");
    assert_eq!(info["endpoints"][0]["subject"], "offpath.classify");

    let request = common::request("sync-1", "you are a pathetic idiot");
    let answer = env
        .client
        .request("offpath.classify", encode(&request).into())
        .await
        .expect("answer");
    assert_eq!(error_code(&answer), None);
    let verdict: Verdict = serde_json::from_slice(&answer.payload).expect("verdict");
    assert_eq!(verdict.id, "sync-1");
    assert_eq!(verdict.action, Action::Block);

    let bad = env
        .client
        .request("offpath.classify", "{\"v\":2}".into())
        .await
        .expect("answer");
    assert_eq!(error_code(&bad).as_deref(), Some("400"));
    let status = bad
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error"))
        .map(|v| v.to_string());
    assert!(
        status
            .unwrap_or_default()
            .starts_with("unsupported_version")
    );

    let stats = env
        .client
        .request("$SRV.STATS.offpath-moderator", "".into())
        .await
        .expect("stats");
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).expect("json");
    let data = &stats["endpoints"][0]["data"];
    assert!(data["batches"].as_u64().unwrap_or(0) >= 1, "{stats}");
    assert!(
        data.get("in_flight").is_some() && data.get("mean_batch_size").is_some(),
        "{stats}"
    );
    moderator.stop().await;
}

/// With one synchronous call allowed at a time and slow inference, concurrent calls are
/// refused at once as overloaded (503) rather than queued; the admitted one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_beyond_the_limit_are_shed() {
    let env = common::env().await;
    let faults = Faults {
        batch_delay_ms: 700,
        ..Faults::default()
    };
    let config = offpath_moderator::Config {
        classify_concurrency: 1,
        ..common::config(faults)
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    wait_for_service(&env.client).await;
    let calls = (0..6).map(|i| {
        let client = env.client.clone();
        async move {
            let request = common::request(&format!("c-{i}"), "hello");
            client
                .request("offpath.classify", encode(&request).into())
                .await
                .expect("answer")
        }
    });
    let answers = futures::future::join_all(calls).await;
    let codes: Vec<Option<String>> = answers.iter().map(error_code).collect();
    let shed = codes.iter().filter(|c| c.as_deref() == Some("503")).count();
    let ok = codes.iter().filter(|c| c.is_none()).count();
    assert!(shed >= 1, "{codes:?}");
    assert!(ok >= 1, "{codes:?}");
    moderator.stop().await;
}
