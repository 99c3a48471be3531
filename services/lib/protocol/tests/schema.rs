//! The committed JSON Schemas under `docs/schema/` match the Rust types.
//!
//! After an intended change of the contract, regenerate them with
//! `OFFPATH_BLESS=1 cargo test -p offpath-protocol --test schema` and commit the diff.

use std::path::PathBuf;

use offpath_protocol::schema::schemas;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../docs/schema")
}

/// Fails when a committed schema differs from the one generated from the code.
#[test]
fn committed_schemas_match_the_types() {
    let bless = std::env::var_os("OFFPATH_BLESS").is_some();
    let mut drifted = Vec::new();
    for (name, generated) in schemas() {
        let path = schema_dir().join(name);
        if bless {
            std::fs::write(&path, &generated).expect("write schema");
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != generated {
            drifted.push(name);
        }
    }
    assert!(
        drifted.is_empty(),
        "docs/schema drifted from the Rust types: {drifted:?}; regenerate with \
         `OFFPATH_BLESS=1 cargo test -p offpath-protocol --test schema` and review the diff"
    );
}

/// The request schema states the rules the decoder enforces (version, required fields).
#[test]
fn request_schema_carries_the_rules() {
    let (_, text) = &schemas()[0];
    let schema: serde_json::Value = serde_json::from_str(text).expect("json");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required list")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for field in ["v", "id", "tenant", "room", "sender", "text", "sent_at_ms"] {
        assert!(required.contains(&field), "{field} must be required");
    }
    assert_eq!(schema["properties"]["v"]["maximum"], 1);
    assert_eq!(schema["additionalProperties"], false);
}

/// The worked examples in `docs/protocol.md` decode with the real decoder.
#[test]
fn protocol_doc_examples_decode() {
    use offpath_protocol::{DeadLetter, Limits, Verdict, decode_request, decode_versioned};
    let doc = std::fs::read_to_string(schema_dir().join("../protocol.md")).expect("protocol.md");
    let blocks: Vec<&str> = doc
        .split("```json\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect();
    assert_eq!(blocks.len(), 3, "one example per payload");
    decode_request("offpath.req.acme", blocks[0].as_bytes(), &Limits::default())
        .expect("request example decodes");
    let verdict: Verdict = decode_versioned(blocks[1].as_bytes(), 64 * 1024).expect("verdict");
    assert_eq!(verdict.action, offpath_protocol::Action::Block);
    let dead: DeadLetter = decode_versioned(blocks[2].as_bytes(), 64 * 1024).expect("dead letter");
    let original = dead.original().expect("base64");
    let err = decode_request(&dead.subject, &original, &Limits::default()).expect_err("bad");
    assert_eq!(err.reason(), dead.reason);
    assert_eq!(err.to_string(), dead.detail);
    let rebuilt = DeadLetter::new(
        &dead.subject,
        &original,
        err.reason(),
        err.to_string(),
        1,
        0,
    );
    assert_eq!(rebuilt.data, dead.data);
}
