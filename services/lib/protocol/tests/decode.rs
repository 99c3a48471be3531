//! The strict decoder: every bad input gets its stable reason; every valid request
//! round-trips.

use offpath_protocol::{
    ContextMessage, DecodeError, Limits, ModerationRequest, PROTOCOL_VERSION, Priority, Report,
    TextSource, decode_request, encode,
};
use proptest::prelude::*;
use serde_json::{Value, json};

const SUBJECT: &str = "offpath.req.acme";

fn valid() -> Value {
    json!({
        "v": 1, "id": "01JD0000000000000000000001", "tenant": "acme", "room": "lobby",
        "sender": "alice", "text": "hello there", "sent_at_ms": 1_764_000_000_000u64,
    })
}

fn with(field: &str, value: Value) -> Vec<u8> {
    let mut request = valid();
    request[field] = value;
    serde_json::to_vec(&request).expect("json")
}

fn without(field: &str) -> Vec<u8> {
    let mut request = valid();
    request.as_object_mut().expect("object").remove(field);
    serde_json::to_vec(&request).expect("json")
}

fn reason(subject: &str, payload: &[u8]) -> &'static str {
    match decode_request(subject, payload, &Limits::default()) {
        Ok(request) => panic!("accepted a bad input: {request:?}"),
        Err(err) => {
            assert!(!err.to_string().is_empty());
            err.reason()
        }
    }
}

/// Each bad input in the table is rejected with its documented, stable reason.
#[test]
fn bad_inputs_get_stable_reasons() {
    let big_text = with("text", json!("x".repeat(17 * 1024)));
    let mut invalid_utf8 = serde_json::to_vec(&valid()).expect("json");
    let at = invalid_utf8.len() - 3;
    invalid_utf8[at] = 0xff;
    // One case a line: the table reads as a table.
    #[rustfmt::skip]
    let table: Vec<(&str, &str, Vec<u8>)> = vec![
        ("empty payload", "malformed_json", b"".to_vec()),
        ("truncated json", "malformed_json", br#"{"v":1,"id":"a""#.to_vec()),
        ("trailing garbage", "malformed_json", br#"{"v":1} x"#.to_vec()),
        ("deep nesting", "malformed_json", "[".repeat(10_000).into_bytes()),
        ("array", "not_an_object", b"[1,2]".to_vec()),
        ("string", "not_an_object", br#""hi""#.to_vec()),
        ("invalid utf-8", "invalid_utf8", invalid_utf8),
        ("17 KiB text", "oversized", big_text),
        ("v: 2", "unsupported_version", with("v", json!(2))),
        ("v: 0", "unsupported_version", with("v", json!(0))),
        ("v: 1.5", "unsupported_version", with("v", json!(1.5))),
        ("v as string", "wrong_type", with("v", json!("1"))),
        ("v missing", "missing_field", without("v")),
        ("text missing", "missing_field", without("text")),
        ("id null", "missing_field", with("id", Value::Null)),
        ("sent_at_ms missing", "missing_field", without("sent_at_ms")),
        ("text a number", "wrong_type", with("text", json!(42))),
        ("sent_at_ms negative", "wrong_type", with("sent_at_ms", json!(-1))),
        ("sent_at_ms a string", "wrong_type", with("sent_at_ms", json!("now"))),
        ("room an object", "wrong_type", with("room", json!({"name": "x"}))),
        ("unknown field", "unknown_field", with("extra", json!(true))),
        ("empty id", "invalid_id", with("id", json!(""))),
        ("account made after the message", "invalid_account_created", with("account_created_ms", json!(u64::MAX))),
        ("mention twice", "invalid_mentions", with("mentions", json!(["bob", "bob"]))),
        ("empty mention", "invalid_mentions", with("mentions", json!([""]))),
        ("101 mentions", "invalid_mentions", with("mentions", json!((0..101).map(|i| format!("u{i}")).collect::<Vec<_>>()))),
        ("mentions a string", "invalid_mentions", with("mentions", json!("bob"))),
        ("id with newline", "invalid_id", with("id", json!("a\r\nNats-Msg-Id: b"))),
        ("id too long", "invalid_id", with("id", json!("a".repeat(129)))),
        ("tenant with dot", "invalid_tenant", with("tenant", json!("ac.me"))),
        ("tenant wildcard", "invalid_tenant", with("tenant", json!("*"))),
        ("room wildcard", "invalid_room", with("room", json!(">"))),
        ("room with space", "invalid_room", with("room", json!("the lobby"))),
        ("room empty", "invalid_room", with("room", json!(""))),
        ("sender empty", "invalid_sender", with("sender", json!(""))),
        ("sender control char", "invalid_sender", with("sender", json!("al\u{7}ice"))),
        ("deadline before sent", "invalid_deadline", with("deadline_ms", json!(1))),
        ("priority unknown", "invalid_priority", with("priority", json!("urgent"))),
        ("policy with dot", "invalid_policy", with("policy", json!("a.b"))),
    ];
    assert!(table.len() >= 15);
    for (name, expected, payload) in &table {
        assert_eq!(reason(SUBJECT, payload), *expected, "case `{name}`");
    }
    let ok = serde_json::to_vec(&valid()).expect("json");
    assert_eq!(reason("offpath.req.other", &ok), "subject_mismatch");
    assert_eq!(reason("offpath.req", &ok), "invalid_subject");
    assert_eq!(reason("offpath.req.acme.lobby", &ok), "invalid_subject");
}

/// Every reason the decoder can return is in the published list, and names are unique.
#[test]
fn reasons_are_listed_once() {
    let mut sorted = DecodeError::REASONS.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), DecodeError::REASONS.len());
    let err = DecodeError::InvalidField {
        field: "room",
        detail: String::new(),
    };
    assert!(DecodeError::REASONS.contains(&err.reason()));
}

/// The size limit is configurable and counts the whole payload.
#[test]
fn size_limit_is_configurable() {
    let payload = serde_json::to_vec(&valid()).expect("json");
    let tight = Limits {
        max_request_bytes: payload.len() - 1,
    };
    let err = decode_request(SUBJECT, &payload, &tight).expect_err("over the limit");
    assert_eq!(
        err,
        DecodeError::Oversized {
            size: payload.len(),
            limit: payload.len() - 1
        }
    );
    let exact = Limits {
        max_request_bytes: payload.len(),
    };
    assert!(decode_request(SUBJECT, &payload, &exact).is_ok());
}

/// Optional fields decode; explicit nulls mean absent.
#[test]
fn optional_fields() {
    let mut request = valid();
    request["deadline_ms"] = json!(1_764_000_005_000u64);
    request["priority"] = json!("high");
    request["policy"] = json!("strict");
    let payload = serde_json::to_vec(&request).expect("json");
    let decoded = decode_request(SUBJECT, &payload, &Limits::default()).expect("valid");
    assert_eq!(decoded.priority, Some(Priority::High));
    assert_eq!(decoded.policy.as_deref(), Some("strict"));
    let nulls = with("policy", Value::Null);
    let decoded = decode_request(SUBJECT, &nulls, &Limits::default()).expect("valid");
    assert_eq!(decoded.policy, None);
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_:@=+~-]{1,64}"
}

prop_compose! {
    fn request()(
        id in "[A-Za-z0-9_:.@=+~-]{1,128}",
        tenant in token(),
        room in token(),
        sender in "[^\\p{Cc}]{1,256}",
        text in any::<String>(),
        sent_at_ms in 0u64..u64::MAX / 2,
        deadline_delta in proptest::option::of(0u64..u64::MAX / 2),
        priority in proptest::option::of(prop_oneof![
            Just(Priority::Low), Just(Priority::Normal), Just(Priority::High)
        ]),
        policy in proptest::option::of(token()),
        report in proptest::option::of(report()),
        context in proptest::collection::vec(context_message(), 0..=10),
        mentions in proptest::collection::hash_set("[^\\p{Cc}]{1,256}", 0..=100),
    ) -> ModerationRequest {
        ModerationRequest {
            v: PROTOCOL_VERSION, id, tenant, room, sender, text, sent_at_ms,
            deadline_ms: deadline_delta.map(|d| sent_at_ms + d), priority, policy,
            report, context, mentions: mentions.into_iter().collect(), account_created_ms: None,
        }
    }
}

prop_compose! {
    fn report()(
        message_id in "[A-Za-z0-9_:.@=+~-]{1,128}",
        reporter in "[^\\p{Cc}]{1,256}",
        reason in "[^\\p{Cc}]{0,500}",
        message_sent_at_ms in any::<u64>(),
        text_source in prop_oneof![
            Just(TextSource::Gateway), Just(TextSource::Franked), Just(TextSource::Reporter),
            Just(TextSource::Mismatch)
        ],
    ) -> Report {
        Report { message_id, reporter, reason, message_sent_at_ms, text_source }
    }
}

prop_compose! {
    fn context_message()(
        id in "[A-Za-z0-9_:.@=+~-]{1,128}",
        sender in "[^\\p{Cc}]{1,256}",
        text in "\\PC{0,200}",
        sent_at_ms in any::<u64>(),
    ) -> ContextMessage {
        ContextMessage { id, sender, text, sent_at_ms }
    }
}

/// A report and context messages decode; a report's bad reporter or an eleventh context
/// message is refused with the field named.
#[test]
fn reports_and_context_decode_within_their_limits() {
    let mut request = valid();
    request["report"] = json!({"message_id": "gw.1", "reporter": "bob", "reason": "rude",
        "message_sent_at_ms": 1, "text_source": "franked"});
    let message = json!({"id": "gw.0", "sender": "alice", "text": "hi", "sent_at_ms": 0});
    request["context"] = json!([message]);
    let payload = serde_json::to_vec(&request).expect("json");
    let decoded = decode_request(SUBJECT, &payload, &Limits::default()).expect("valid");
    let report = decoded.report.expect("report");
    assert_eq!(
        (report.reporter.as_str(), report.text_source),
        ("bob", TextSource::Franked)
    );
    assert_eq!(decoded.context.len(), 1);
    request["report"]["reporter"] = json!("bo\u{7}b");
    let payload = serde_json::to_vec(&request).expect("json");
    let err = decode_request(SUBJECT, &payload, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("report.reporter"), "{err}");
    request["report"]["reporter"] = json!("bob");
    request["context"] = json!(vec![message; 11]);
    let payload = serde_json::to_vec(&request).expect("json");
    let err = decode_request(SUBJECT, &payload, &Limits::default()).unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
}

proptest! {
    /// encode → decode returns the same request for any valid request.
    #[test]
    fn valid_requests_round_trip(request in request()) {
        let payload = encode(&request);
        let limits = Limits { max_request_bytes: usize::MAX };
        let subject = format!("offpath.req.{}", request.tenant);
        let decoded = decode_request(&subject, &payload, &limits);
        prop_assert_eq!(decoded, Ok(request));
    }

    /// Arbitrary bytes never panic the decoder; they are accepted or get a listed reason.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Err(err) = decode_request(SUBJECT, &bytes, &Limits::default()) {
            prop_assert!(DecodeError::REASONS.contains(&err.reason()));
        }
    }
}
