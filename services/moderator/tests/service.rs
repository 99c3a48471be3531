//! The NATS micro service: discovery, synchronous classification, clear errors, and
//! load shedding when too many synchronous calls arrive at once.

mod common;

use offpath_harness::testing;
use offpath_moderator::Faults;
use offpath_protocol::{Action, Verdict, encode};

fn error_code(message: &async_nats::Message) -> Option<String> {
    message
        .headers
        .as_ref()?
        .get("Nats-Service-Error-Code")
        .map(|v| v.to_string())
}

/// `$SRV.PING/INFO/STATS` answer; `offpath.classify` returns a verdict at once, and bad
/// input gets a 400 with the decoder's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_answers_synchronously() {
    let env = common::env().await;
    let moderator = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    testing::wait_for_service(&env.client, "offpath-moderator").await;
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

    // A decode error quoting a control character (the header it goes in cannot hold one):
    // answered, with the character replaced (before: no answer, a panic in the log).
    let mut hostile = serde_json::to_value(common::request("hostile-1", "hi")).expect("JSON");
    hostile["priority"] = "\n".into();
    let hostile = env
        .client
        .request("offpath.classify", hostile.to_string().into())
        .await
        .expect("an answer to a request quoting a newline");
    assert_eq!(error_code(&hostile).as_deref(), Some("400"));

    let data = testing::service_stats(&env.client, "offpath-moderator").await;
    assert!(data["batches"].as_u64().unwrap_or(0) >= 1, "{data}");
    assert!(
        data.get("in_flight").is_some() && data.get("mean_batch_size").is_some(),
        "{data}"
    );
    moderator.stop().await;
}

/// `offpath.classify` answers only on an inbox: a call whose reply subject is a verdict
/// subject (a caller asking the moderator to publish, with its rights, a verdict for a
/// tenant and room of the caller's choice) gets no answer, while an honest call does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classify_never_answers_outside_an_inbox() {
    use futures::StreamExt;
    let env = common::env().await;
    let moderator = common::Moderator::start(&env.server, common::config(Faults::default())).await;
    testing::wait_for_service(&env.client, "offpath-moderator").await;
    let victim = "offpath.verdict.victim.lobby";
    let mut reflected = env.client.subscribe(victim).await.expect("subscribe");
    env.client.flush().await.expect("flush");
    let forged = common::request("reflect-1", "you are a pathetic idiot");
    env.client
        .publish_with_reply("offpath.classify", victim, encode(&forged).into())
        .await
        .expect("publish");
    // An honest call after it: answered, so the service has read the forged one too.
    let honest = common::request("sync-2", "have a nice day");
    let answer = env
        .client
        .request("offpath.classify", encode(&honest).into())
        .await
        .expect("answer");
    assert_eq!(error_code(&answer), None);
    let late = tokio::time::timeout(std::time::Duration::from_secs(1), reflected.next()).await;
    assert!(
        late.is_err(),
        "the moderator published on {victim}: {:?}",
        late.ok().flatten().map(|m| m.payload)
    );
    moderator.stop().await;
}

/// With one synchronous call allowed at a time and slow inference, concurrent calls are
/// refused at once as overloaded (503) rather than queued; the admitted one succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_beyond_the_limit_are_shed() {
    let env = common::env().await;
    let base = common::config(common::slow_batches(700));
    let config = offpath_moderator::Config {
        classify: offpath_moderator::ClassifyConfig {
            classify_concurrency: 1,
            ..base.classify
        },
        ..base
    };
    let moderator = common::Moderator::start(&env.server, config).await;
    testing::wait_for_service(&env.client, "offpath-moderator").await;
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
