//! JSON Schemas of the payloads, generated from the Rust types. The committed copies
//! under `docs/schema/` are checked against these by a test, so the documentation cannot
//! drift from the code.

use schemars::schema_for;

use crate::types::{AuditEntry, DeadLetter, ModerationRequest, ReviewItem, Verdict};

/// `(file name, pretty JSON Schema)` for each payload, in a fixed order.
pub fn schemas() -> Vec<(&'static str, String)> {
    let pretty = |schema: schemars::Schema| {
        // Serialising a `Schema` (a JSON value) cannot fail.
        let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
        text.push('\n');
        text
    };
    vec![
        (
            "moderation_request.schema.json",
            pretty(schema_for!(ModerationRequest)),
        ),
        ("verdict.schema.json", pretty(schema_for!(Verdict))),
        ("dead_letter.schema.json", pretty(schema_for!(DeadLetter))),
        ("review_item.schema.json", pretty(schema_for!(ReviewItem))),
        ("audit_entry.schema.json", pretty(schema_for!(AuditEntry))),
    ]
}
