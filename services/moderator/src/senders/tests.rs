use offpath_harness::verdicts;
use offpath_protocol::now_ms;

use super::*;

fn from(sender: &str, id: &str, text: &str) -> ModerationRequest {
    ModerationRequest {
        sender: sender.into(),
        ..verdicts::request(id, text, now_ms())
    }
}

/// A request delivered again (its event already in the book) still finds its copies: the
/// campaign rule must not fall through to the models on a redelivery.
#[test]
fn a_redelivered_request_keeps_its_campaign() {
    let (senders, _outbox) = Senders::new(100, 100);
    senders.set_caught_up();
    let text = "free nitro giveaway claim yours at gift-nitro.example now";
    let mut last = None;
    for (i, sender) in ["bot0", "bot1", "bot2"].iter().enumerate() {
        let request = from(sender, &format!("s{i}"), text);
        last = senders.message(&request, text, true);
    }
    let first = last.expect("a view");
    assert_eq!(first.near.members.len(), 3);
    let again = senders
        .message(&from("bot2", "s2", text), text, true)
        .expect("a view");
    assert_eq!(again.near.members.len(), 3, "{:?}", again.near);
    assert_eq!(again.near.campaign, first.near.campaign);
}
