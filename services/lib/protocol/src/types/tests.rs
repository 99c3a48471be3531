use super::*;

/// `priority: high` goes to the interactive lane, anything else to the v1 subject; both
/// give the tenant back and the same dead-letter subject.
#[test]
fn a_request_chooses_its_lane_by_priority() {
    use crate::subject::{dlq_subject_for, tenant_of_request_subject};
    let mut request = ModerationRequest {
        v: 1,
        id: "i".into(),
        tenant: "acme".into(),
        room: "r".into(),
        sender: "s".into(),
        text: "t".into(),
        sent_at_ms: 0,
        deadline_ms: None,
        priority: None,
        policy: None,
        report: None,
        context: Vec::new(),
        mentions: Vec::new(),
        account_created_ms: None,
    };
    for (priority, subject) in [
        (None, "offpath.req.acme"),
        (Some(Priority::Low), "offpath.req.acme"),
        (Some(Priority::Normal), "offpath.req.acme"),
        (Some(Priority::High), "offpath.req.acme.interactive"),
    ] {
        request.priority = priority;
        assert_eq!(request.subject(), subject);
        assert_eq!(tenant_of_request_subject(subject), Some("acme"));
        assert_eq!(dlq_subject_for(subject), "offpath.dlq.acme");
    }
}

/// The digest is SHA-256 of the UTF-8 bytes in lowercase hex (the FIPS 180-2 vectors).
#[test]
fn text_sha256_is_lowercase_hex_sha256() {
    assert_eq!(
        text_sha256(""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        text_sha256("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

/// v1.1 is additive: a verdict without `text_sha256` (a v1 moderator's) still decodes,
/// one with it round-trips, and it is left out of the JSON when absent.
#[test]
fn text_sha256_is_optional_on_the_wire() {
    let v1 = r#"{"v":1,"id":"i","tenant":"t","room":"r","sender":"s","action":"allow",
        "scores":{},"model":{"name":"m","version":"1"},"queued_ms":0,"inference_ms":0}"#;
    let mut verdict: Verdict = crate::decode_versioned(v1.as_bytes(), 4096).expect("v1");
    assert_eq!(verdict.text_sha256, None);
    assert!(
        !String::from_utf8(crate::encode(&verdict))
            .unwrap()
            .contains("text_sha256")
    );
    verdict.text_sha256 = Some(text_sha256("hi"));
    let back: Verdict = crate::decode_versioned(&crate::encode(&verdict), 4096).expect("v1.1");
    assert!(back.judged("hi") && !back.judged("hi "));
    assert_eq!(back.dedup_key(), format!("t/i/{}", text_sha256("hi")));
}

/// Two tenants' requests with the same id have different de-duplication keys, and no
/// choice of tenant and id (`:` is allowed in both) makes two keys collide.
#[test]
fn dedup_keys_are_per_tenant_and_unambiguous() {
    let request = |tenant: &str, id: &str| ModerationRequest {
        v: PROTOCOL_VERSION,
        id: id.into(),
        tenant: tenant.into(),
        room: "r".into(),
        sender: "s".into(),
        text: String::new(),
        sent_at_ms: 0,
        deadline_ms: None,
        priority: None,
        policy: None,
        report: None,
        context: Vec::new(),
        mentions: Vec::new(),
        account_created_ms: None,
    };
    assert_ne!(
        request("acme", "msg-42").dedup_key(),
        request("globex", "msg-42").dedup_key()
    );
    assert_ne!(
        request("a:b", "c").dedup_key(),
        request("a", "b:c").dedup_key()
    );
}
