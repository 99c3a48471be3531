use offpath_protocol::{Action, ModelRef, ReviewKind, Verdict};

use super::*;

fn item(id: &str, at: u64) -> ReviewItem {
    let verdict = Verdict {
        v: 1,
        id: id.into(),
        tenant: "acme".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        action: Action::Flag,
        scores: BTreeMap::new(),
        model: ModelRef {
            name: "m".into(),
            version: "1".into(),
        },
        queued_ms: 0,
        inference_ms: 0,
        reason: None,
        text_sha256: Some(offpath_protocol::text_sha256("hi")),
        policy: None,
        review: None,
        category: None,
        span: None,
        rule: None,
        campaign: None,
        counts: None,
    };
    let mut item = ReviewItem::new(ReviewKind::Flag, &verdict, "hi", at);
    item.queued_at_ms = at;
    item
}

fn review(decision: ReviewDecision, at: u64) -> HumanReview {
    HumanReview {
        reviewer: "rita".into(),
        decision,
        decided_at_ms: at,
        note: None,
        text: None,
    }
}

/// Items are listed oldest first; a decision closes one, an escalation keeps it open,
/// the same decision seen twice (made here, then read back from `AUDIT`) counts once.
#[test]
fn decisions_close_items_and_escalations_keep_them_open() {
    let mut queue = Queue::default();
    let (a, b) = (item("a", 20), item("b", 10));
    queue.add(a.clone());
    queue.add(b.clone());
    queue.add(a.clone());
    let ids = |q: &Queue, f: &Filter| -> Vec<String> {
        q.list(f)
            .iter()
            .map(|e| e.item.verdict.id.clone())
            .collect()
    };
    assert_eq!(ids(&queue, &Filter::default()), ["b", "a"]);
    assert_eq!(queue.open(), (2, Some(10)));
    queue.record(&b, &review(ReviewDecision::Escalate, 30));
    assert_eq!(queue.open(), (2, Some(10)), "escalated: still open");
    let remove = review(ReviewDecision::Remove, 40);
    queue.record(&b, &remove);
    queue.record(&b, &remove);
    assert_eq!(queue.open(), (1, Some(20)));
    let decided = Filter {
        status: Some("decided".into()),
        ..Filter::default()
    };
    assert_eq!(ids(&queue, &decided), ["b"]);
    assert_eq!(
        queue.get(&b.dedup_key()).map(|e| e.decisions.len()),
        Some(2)
    );
    let flags = Filter {
        status: Some("all".into()),
        kind: Some("block".into()),
        ..Filter::default()
    };
    assert!(ids(&queue, &flags).is_empty());
}

/// A sender's record: every status, that sender's items only, the newest sent first.
#[test]
fn a_senders_record_lists_its_items_newest_first() {
    let mut queue = Queue::default();
    let mut bob = item("b", 30);
    bob.verdict.sender = "bob".into();
    let (old, new) = (item("old", 10), item("new", 20));
    for item in [&old, &bob, &new] {
        queue.add(item.clone());
    }
    queue.record(&old, &review(ReviewDecision::Remove, 40));
    let record = Filter {
        status: Some("all".into()),
        sender: Some("alice".into()),
        order: Some(Order::Newest),
        ..Filter::default()
    };
    let ids: Vec<String> = queue
        .list(&record)
        .iter()
        .map(|e| e.item.verdict.id.clone())
        .collect();
    assert_eq!(ids, ["new", "old"]);
    let order: Result<Filter, _> = serde_json::from_str(r#"{"order":"oldest"}"#);
    assert!(order.is_err(), "an unknown order is refused");
}

fn report(id: &str, reporter: &str, at: u64) -> ReviewItem {
    let mut item = item(id, at);
    item.kind = ReviewKind::Report;
    item.report = Some(offpath_protocol::Report {
        message_id: id.into(),
        reporter: reporter.into(),
        reason: "rude".into(),
        message_sent_at_ms: at,
        text_source: offpath_protocol::TextSource::Gateway,
    });
    item
}

/// Two members' reports of a message are one entry, listed after the model's flag
/// (fewer than `AGREE` reporters); a decision on one item of a message decides every
/// item of it queued before, while a report queued after it is open.
#[test]
fn a_decision_decides_the_message_and_reports_join_one_entry() {
    let mut queue = Queue::default();
    let flag = item("m", 10);
    let (by_bob, by_carol) = (report("m", "bob", 20), report("m", "carol", 30));
    let other = report("n", "bob", 40);
    for item in [&flag, &by_bob, &by_carol, &other] {
        queue.add(item.clone());
    }
    let open: Vec<String> = queue
        .list(&Filter::default())
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(
        open,
        [&flag, &by_bob, &other].map(ReviewItem::dedup_key),
        "the flag first, then one entry per reported message, oldest first"
    );
    let joined = queue.get(&by_bob.dedup_key()).expect("bob's entry");
    assert_eq!(
        (joined.reports, joined.reporters.clone()),
        (2, vec!["bob".into(), "carol".into()])
    );
    queue.record(&by_carol, &review(ReviewDecision::Remove, 35));
    assert_eq!(
        queue.open(),
        (1, Some(40)),
        "m's items are decided, n is not"
    );
    let later = report("m", "dave", 50);
    queue.add(later.clone());
    assert_eq!(
        queue.open(),
        (2, Some(40)),
        "a report after the decision is open"
    );
    assert_eq!(
        queue.get(&flag.dedup_key()).map(|e| e.decisions.len()),
        Some(1)
    );
}

/// Issue 26: 1,000 reports of one message make one entry (counted, 100 reporters
/// listed), which ranks above the model's flags once `AGREE` members agree.
#[test]
fn a_thousand_reports_of_one_message_are_one_entry_ranked_first() {
    let mut queue = Queue::default();
    queue.add(item("flagged", 5));
    for n in 0..1000 {
        queue.add(report("m", &format!("member{n}"), 10 + n));
    }
    let list = queue.list(&Filter::default());
    assert_eq!(list.len(), 2, "the flag and one report entry");
    assert_eq!(list[0].item.verdict.id, "m", "agreed on by many: first");
    assert_eq!(list[0].reports, 1000);
    assert_eq!(list[0].reporters.len(), MAX_REPORTERS_LISTED);
    assert_eq!(queue.dropped().map(|(_, n)| n), [0, 0, 0]);
    // A copy of a joined report (read again from REVIEW, or recorded from AUDIT)
    // counts once.
    queue.add(report("m", "member7", 17));
    queue.record(
        &report("m", "member8", 18),
        &review(ReviewDecision::Escalate, 2_000),
    );
    let entry = queue
        .get(&report("m", "member0", 10).dedup_key())
        .expect("entry");
    assert_eq!(entry.reports, 1000);
}

/// One member's reports start at most `MAX_OPEN_PER_REPORTER` open entries; the rest
/// are counted, and the member may start new ones as reviewers decide.
#[test]
fn one_reporter_cannot_bury_the_queue() {
    let mut queue = Queue::default();
    for n in 0..(MAX_OPEN_PER_REPORTER as u64 + 10) {
        queue.add(report(&format!("m{n}"), "mallory", n));
    }
    assert_eq!(queue.open().0, MAX_OPEN_PER_REPORTER);
    assert_eq!(queue.dropped()[0], ("reporter_quota", 10));
    queue.add(item("flag", 1_000));
    assert_eq!(
        queue.open().0,
        MAX_OPEN_PER_REPORTER + 1,
        "a flag is never refused"
    );
    queue.record(
        &report("m0", "mallory", 0),
        &review(ReviewDecision::Dismiss, 2_000),
    );
    queue.add(report("new", "mallory", 3_000));
    assert!(
        queue
            .get(&report("new", "mallory", 3_000).dedup_key())
            .is_some()
    );
    queue.add(report("m1", "trudy", 4_000));
    assert_eq!(
        queue
            .get(&report("m1", "mallory", 1).dedup_key())
            .map(|e| e.reports),
        Some(2),
        "another member's report of an open message joins it"
    );
}

/// Past its capacity the queue forgets the oldest decided items, never an open one.
#[test]
fn memory_is_bounded_by_forgetting_decided_items() {
    let mut queue = Queue::with_capacity(10);
    for n in 0..10u64 {
        queue.add(item(&format!("m{n}"), n));
    }
    for n in 0..5u64 {
        let item = item(&format!("m{n}"), n);
        queue.record(&item, &review(ReviewDecision::Remove, 100 + n));
    }
    queue.add(item("m10", 10));
    assert_eq!(queue.forgotten(), 1, "the oldest decided item");
    assert!(queue.get(&item("m0", 0).dedup_key()).is_none());
    assert!(queue.get(&item("m1", 1).dedup_key()).is_some());
    for n in 11..30u64 {
        queue.add(item(&format!("m{n}"), n));
    }
    assert_eq!(queue.forgotten(), 5, "every decided item, and no open one");
    assert_eq!(queue.open().0, 25, "all open items kept, past the capacity");
}
