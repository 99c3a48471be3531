//! Sender state end to end (issue 30, item 2): a real nats-server, the real models, two
//! moderators with a policy of sender rules. What one moderator counted, the other counts
//! too, after it started and after the first stopped; each message counts once (its own
//! echo from `SENDERS` is not a second message); repeats and strikes count.

mod common;

use std::time::Duration;

use async_nats::Subscriber;
use offpath_harness::{scrape, verdicts};
use offpath_protocol::{Action, ModerationRequest, Verdict};

const FILE: &str = r#"
default = "chat"

[policies.chat.rules.flood]
sender = { messages = 5, per_s = 60 }
action = "block"
category = "spam"

[policies.chat.rules.copy_paste]
sender = { repeats = 2, per_s = 600, room = true }
action = "flag"
category = "spam"

[policies.chat.rules.taunts]
keywords = ["kys"]
action = "block"
category = "harassment"

[policies.chat.rules.strikes]
sender = { strikes = 1, per_s = 600 }
action = "block"

[policies.chat.rules.link_drop]
sender = { first_link = true, per_s = 3600 }
action = "flag"

[policies.chat.rules.mention_flood]
sender = { mentions = 5, per_s = 60 }
action = "block"

[policies.chat.rules.new_account_links]
account_younger_than_s = 86400
links = { max = 0 }
action = "block"
category = "spam"

[policies.chat.rules.mass_mention]
density = { max_mentions = 10 }
action = "flag"
"#;

fn from(sender: &str, id: &str, text: &str) -> ModerationRequest {
    ModerationRequest {
        sender: sender.into(),
        ..common::request(id, text)
    }
}

/// Publishes `request` and waits for its verdict.
async fn send(env: &common::Env, sub: &mut Subscriber, request: &ModerationRequest) -> Verdict {
    common::publish(&env.js, request).await;
    let seen = verdicts::collect(sub, 1, Duration::from_secs(60)).await;
    let verdict = seen
        .into_values()
        .next()
        .unwrap_or_else(|| panic!("no verdict for {}", request.id));
    assert_eq!(verdict.id, request.id);
    verdict
}

fn ruled(verdict: &Verdict) -> (Action, Option<&str>) {
    (verdict.action, verdict.rule.as_deref())
}

async fn metrics(moderator: &common::Moderator) -> String {
    let (status, body) = moderator.get("/metrics").await;
    assert_eq!(status, 200);
    body
}

/// Waits until `series` on `moderator` is at least `min` (echoes arrive within a round trip).
async fn at_least(moderator: &common::Moderator, series: &str, min: f64) {
    let mut body = String::new();
    for _ in 0..100 {
        body = metrics(moderator).await;
        if scrape::value(&body, series) >= min {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{series} stayed below {min}:\n{body}");
}

/// Waits until `moderator` has read the last hour of `SENDERS`.
async fn caught_up(moderator: &common::Moderator) {
    for _ in 0..200 {
        let body = metrics(moderator).await;
        if scrape::value(&body, "offpath_moderator_sender_state_caught_up") == 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the moderator never read SENDERS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_rules_count_once_across_moderators_and_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::with_policies(dir.path(), FILE);
    let (env, mut sub, first) = common::start(config.clone()).await;
    first.assert_ready(60, "after start").await;

    // Four messages on the first moderator: the echo of each from SENDERS is no second
    // message, or the fourth would be past the flood bound of five.
    for i in 1..=4 {
        let verdict = send(
            &env,
            &mut sub,
            &from("alice", &format!("a{i}"), &format!("see you at {i}")),
        )
        .await;
        assert_eq!(ruled(&verdict).1, None, "message {i}: {verdict:?}");
    }
    at_least(
        &first,
        r#"offpath_moderator_sender_events_total{outcome="seen"}"#,
        4.0,
    )
    .await;

    // A second moderator reads what the first recorded; the first stops: what it counted
    // stays counted.
    let second = common::Moderator::start(&env.server, config).await;
    second.assert_ready(60, "the second moderator").await;
    caught_up(&second).await;
    first.stop().await;
    let fifth = send(&env, &mut sub, &from("alice", "a5", "see you at 5")).await;
    assert_eq!(
        ruled(&fifth),
        (Action::Allow, None),
        "the fifth message is within the bound"
    );
    for (n, id) in [(6, "a6"), (7, "a7")] {
        let verdict = send(&env, &mut sub, &from("alice", id, "and one more thing")).await;
        assert_eq!(ruled(&verdict), (Action::Block, Some("flood")), "{id}");
        assert_eq!(verdict.category.as_deref(), Some("spam"));
        // The verdict says what the rule counted (v1.5): this message is the sender's n-th
        // of the minute, whichever moderator counted the others.
        let counts = verdict.counts.clone().expect("counts");
        assert_eq!(counts.get("messages"), Some(&n), "{counts:?}");
    }
    let body = metrics(&second).await;
    assert!(
        scrape::value(
            &body,
            r#"offpath_moderator_sender_events_total{outcome="folded"}"#
        ) >= 4.0,
        "{body}"
    );

    // Repeats: the same text a third time, case and spacing aside, in the room.
    for (i, text) in ["BUY cheap followers", "buy  cheap followers"]
        .iter()
        .enumerate()
    {
        let verdict = send(&env, &mut sub, &from("bob", &format!("b{i}"), text)).await;
        assert_eq!(ruled(&verdict).1, None, "repeat {i}");
    }
    let third = send(&env, &mut sub, &from("bob", "b2", "buy cheap followers")).await;
    assert_eq!(ruled(&third), (Action::Flag, Some("copy_paste")));
    let elsewhere = ModerationRequest {
        room: "garden".into(),
        ..from("bob", "b3", "buy cheap followers")
    };
    let verdict = send(&env, &mut sub, &elsewhere).await;
    assert_eq!(ruled(&verdict).1, None, "counted in its room only");

    // Strikes: two blocks, then even an innocent line is blocked.
    for id in ["c1", "c2"] {
        let verdict = send(&env, &mut sub, &from("carol", id, "kys")).await;
        assert_eq!(ruled(&verdict), (Action::Block, Some("taunts")), "{id}");
    }
    let verdict = send(&env, &mut sub, &from("carol", "c3", "sorry, good night")).await;
    assert_eq!(ruled(&verdict), (Action::Block, Some("strikes")));
    // Dave, who did nothing, is untouched.
    let verdict = send(&env, &mut sub, &from("dave", "d1", "see you at 5")).await;
    assert_eq!(ruled(&verdict).1, None);

    // A link in the first message of the hour goes to a person; in the second it does not.
    let verdict = send(
        &env,
        &mut sub,
        &from("erin", "e1", "deals at https://cheap.example/now"),
    )
    .await;
    assert_eq!(ruled(&verdict), (Action::Flag, Some("link_drop")));
    let verdict = send(
        &env,
        &mut sub,
        &from("erin", "e2", "see https://cheap.example/more"),
    )
    .await;
    assert_ne!(ruled(&verdict).1, Some("link_drop"));

    // An account the platform vouches is an hour old may post no link; one a month old
    // may (its first link of the hour still goes to a person).
    let aged = |sender: &str, id: &str, age_ms: u64| {
        let request = from(sender, id, "see https://deals.example/x");
        ModerationRequest {
            account_created_ms: Some(request.sent_at_ms - age_ms),
            ..request
        }
    };
    let verdict = send(&env, &mut sub, &aged("henry", "h1", 3_600_000)).await;
    assert_eq!(ruled(&verdict), (Action::Block, Some("new_account_links")));
    let verdict = send(&env, &mut sub, &aged("ivan", "i1", 30 * 86_400_000)).await;
    assert_eq!(ruled(&verdict), (Action::Flag, Some("link_drop")));

    // Mentions (contract v1.4): eleven in one message pass the density bound; three and
    // three more within the minute pass the sender's bound of five.
    let mention = |id: &str, users: std::ops::Range<u32>| ModerationRequest {
        mentions: users.map(|u| format!("user{u}")).collect(),
        ..from("frank", id, "hey, look at this")
    };
    let verdict = send(&env, &mut sub, &mention("f1", 0..3)).await;
    assert_eq!(ruled(&verdict).1, None);
    let verdict = send(&env, &mut sub, &mention("f2", 3..6)).await;
    assert_eq!(ruled(&verdict), (Action::Block, Some("mention_flood")));
    let many = ModerationRequest {
        mentions: (0..11).map(|u| format!("user{u}")).collect(),
        ..from("grace", "g1", "hey all")
    };
    let verdict = send(&env, &mut sub, &many).await;
    assert_eq!(
        ruled(&verdict),
        (Action::Block, Some("mention_flood")),
        "11 > 5 too"
    );

    let body = metrics(&second).await;
    assert_eq!(
        scrape::value(&body, "offpath_moderator_senders_tracked"),
        9.0,
        "{body}"
    );
    assert_eq!(
        scrape::value(
            &body,
            r#"offpath_moderator_sender_events_total{outcome="malformed"}"#
        ),
        0.0
    );
    second.stop().await;
}

const CAMPAIGN_FILE: &str = r#"
default = "chat"

[policies.chat.rules.campaign]
campaign = { messages = 3, senders = 1, per_s = 600 }
action = "block"
category = "spam"
"#;

/// Waits until `moderator` has read `events` sender events back from `SENDERS` (its own
/// echoes and the other moderator's), so the next request is judged on all of them.
async fn read_back(moderator: &common::Moderator, events: f64) {
    for _ in 0..200 {
        let body = metrics(moderator).await;
        let read: f64 = ["seen", "folded"]
            .iter()
            .map(|o| {
                scrape::value(
                    &body,
                    &format!(r#"offpath_moderator_sender_events_total{{outcome="{o}"}}"#),
                )
            })
            .sum();
        if read >= events {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {events} sender events read back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn near_duplicates_from_several_senders_are_one_campaign_across_moderators() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = common::with_policies(dir.path(), CAMPAIGN_FILE);
    let (env, mut sub, first) = common::start(config.clone()).await;
    let second = common::Moderator::start(&env.server, config).await;
    first.assert_ready(60, "the first moderator").await;
    second.assert_ready(60, "the second moderator").await;
    caught_up(&first).await;
    caught_up(&second).await;

    // People chatting: distinct lines, and one line everybody says, never a campaign.
    let mut events = 0.0;
    let chat = [
        ("ann", "anyone up for a match of ranked tonight at nine?"),
        ("ben", "did everyone see the patch notes for the new season"),
        ("cat", "good morning everyone"),
        ("dan", "good morning everyone"),
        ("eve", "good morning everyone"),
        ("fay", "good morning everyone"),
    ];
    for (i, (who, text)) in chat.iter().enumerate() {
        let verdict = send(&env, &mut sub, &from(who, &format!("p{i}"), text)).await;
        assert_ne!(ruled(&verdict).1, Some("campaign"), "{text}");
        events += 1.0 + f64::from(u8::from(verdict.action == Action::Block));
        read_back(&first, events).await;
        read_back(&second, events).await;
    }

    // Bots post variants in several rooms, whichever moderator takes each: the first
    // three are within the bound, every later one is blocked without the models, all as
    // one campaign.
    let variants = [
        "FREE nitro giveaway!!! claim yours at gift-nitro.example now",
        "free N I T R O giveaway, claim yours at gift-nitro.example now 🎁",
        "fr33 nitro giveaway!!! claim y0urs at gift-nitro.example now",
        "FREE nitro giveaway!!! claim yours at gift-nitro.example now xq7",
        "hey all, free nitro giveaway!!! claim yours at gift-nitro.example now",
        "FREE nitro giveaway claim yours at gift-nitro.example now!!",
    ];
    let rooms = ["lobby", "garden", "cellar"];
    let mut campaign = None;
    for (i, text) in variants.iter().enumerate() {
        let request = ModerationRequest {
            room: rooms[i % rooms.len()].into(),
            ..from(&format!("bot{}", i % 4), &format!("s{i}"), text)
        };
        let verdict = send(&env, &mut sub, &request).await;
        if i < 3 {
            assert_ne!(ruled(&verdict).1, Some("campaign"), "copy {i}: {verdict:?}");
        } else {
            assert_eq!(
                ruled(&verdict),
                (Action::Block, Some("campaign")),
                "copy {i}"
            );
            assert!(verdict.scores.is_empty(), "no model ran: {verdict:?}");
            assert_eq!(verdict.category.as_deref(), Some("spam"));
            let id = verdict.campaign.clone().expect("the campaign is named");
            assert_eq!(id.len(), 16);
            assert_eq!(campaign.get_or_insert(id.clone()), &id, "one campaign");
            let counts = verdict.counts.clone().expect("counts");
            let copies = i as u64 + 1;
            let senders = copies.min(4);
            assert_eq!(
                (counts.get("copies"), counts.get("senders")),
                (Some(&copies), Some(&senders)),
                "copy {i}"
            );
        }
        events += 1.0 + f64::from(u8::from(verdict.action == Action::Block));
        read_back(&first, events).await;
        read_back(&second, events).await;
    }
    for moderator in [&first, &second] {
        let body = metrics(moderator).await;
        assert!(
            scrape::value(&body, "offpath_moderator_near_duplicates_total") >= 1.0,
            "{body}"
        );
    }
    first.stop().await;
    second.stop().await;
}
