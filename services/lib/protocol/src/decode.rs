//! The strict decoder. Every rejection is a [`DecodeError`] whose [`reason`](DecodeError::reason)
//! is a stable, machine-readable string: it becomes a dead letter's `reason` and a metric
//! label, so changing one is a breaking change.
//!
//! Checks run cheapest first: size, UTF-8, JSON syntax (each key at most once per object),
//! object, version, fields, values, subject. The version is checked before the fields so that
//! a future `v: 2` payload, whatever its shape, is reported as `unsupported_version`.

mod fields;
mod unique;
mod values;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use fields::Fields;
pub use unique::{from_str_unique_keys, is_duplicate_key};
pub use values::validate;

use crate::subject::{self, MAX_TOKEN_BYTES};
use crate::types::{ModerationRequest, PROTOCOL_VERSION};

/// Default largest accepted request payload: 16 KiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Longest sender, in characters.
pub const MAX_SENDER_CHARS: usize = 256;

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted payload, in bytes.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload is larger than the limit.
    #[error("payload is {size} bytes, the limit is {limit}")]
    Oversized {
        /// Payload size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The payload is not valid UTF-8.
    #[error("payload is not UTF-8 (invalid byte at offset {valid_up_to})")]
    InvalidUtf8 {
        /// Length of the valid prefix.
        valid_up_to: usize,
    },
    /// The payload is not JSON.
    #[error("payload is not valid JSON: {0}")]
    MalformedJson(String),
    /// The payload repeats a key in an object: readers that keep the first and readers
    /// that keep the last would disagree about what it says.
    #[error("payload is not valid JSON for the contract: {0}")]
    DuplicateKey(String),
    /// The payload is JSON but not an object.
    #[error("payload is JSON but not an object")]
    NotAnObject,
    /// The payload's `v` is not a version this decoder speaks.
    #[error("protocol version {0} is not supported (this decoder speaks v1)")]
    UnsupportedVersion(String),
    /// A required field is absent (or null).
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
    /// The payload has a field the contract does not define.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A field has the right type but a value the contract does not allow.
    #[error("field `{field}` is invalid: {detail}")]
    InvalidField {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The subject is not `offpath.req.<valid tenant>`.
    #[error("subject `{0}` is not offpath.req.<tenant>")]
    InvalidSubject(String),
    /// The subject's tenant and the payload's tenant differ.
    #[error("subject tenant `{subject}` differs from payload tenant `{payload}`")]
    SubjectMismatch {
        /// Tenant token of the subject.
        subject: String,
        /// Tenant in the payload.
        payload: String,
    },
    /// A verdict or dead letter does not match its type (see the detail).
    #[error("invalid payload: {0}")]
    InvalidPayload(String),
}

impl DecodeError {
    /// Every reason [`reason`](Self::reason) can return, for documentation and for
    /// registering metric labels up front.
    pub const REASONS: &'static [&'static str] = &[
        "oversized",
        "invalid_utf8",
        "malformed_json",
        "duplicate_key",
        "not_an_object",
        "unsupported_version",
        "missing_field",
        "wrong_type",
        "unknown_field",
        "invalid_id",
        "invalid_tenant",
        "invalid_room",
        "invalid_sender",
        "invalid_deadline",
        "invalid_priority",
        "invalid_policy",
        "invalid_report",
        "invalid_context",
        "invalid_mentions",
        "invalid_account_created",
        "invalid_subject",
        "subject_mismatch",
        "invalid_payload",
    ];

    /// The stable, machine-readable reason.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Oversized { .. } => "oversized",
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::MalformedJson(_) => "malformed_json",
            DecodeError::DuplicateKey(_) => "duplicate_key",
            DecodeError::NotAnObject => "not_an_object",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::MissingField(_) => "missing_field",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnknownField(_) => "unknown_field",
            DecodeError::InvalidField { field, .. } => match *field {
                "id" => "invalid_id",
                "tenant" => "invalid_tenant",
                "room" => "invalid_room",
                "sender" => "invalid_sender",
                "deadline_ms" => "invalid_deadline",
                "priority" => "invalid_priority",
                "policy" => "invalid_policy",
                "context" => "invalid_context",
                "mentions" => "invalid_mentions",
                "account_created_ms" => "invalid_account_created",
                field if field.starts_with("report") => "invalid_report",
                _ => "invalid_payload",
            },
            DecodeError::InvalidSubject(_) => "invalid_subject",
            DecodeError::SubjectMismatch { .. } => "subject_mismatch",
            DecodeError::InvalidPayload(_) => "invalid_payload",
        }
    }
}

/// Decodes a request received on `subject`, enforcing every rule of the contract.
pub fn decode_request(
    subject: &str,
    payload: &[u8],
    limits: &Limits,
) -> Result<ModerationRequest, DecodeError> {
    let request = decode_request_body(payload, limits)?;
    check_subject(subject, &request.tenant)?;
    Ok(request)
}

/// Decodes a request that did not arrive on a request subject (a synchronous
/// `offpath.classify` call): every rule but the subject's.
pub fn decode_request_body(
    payload: &[u8],
    limits: &Limits,
) -> Result<ModerationRequest, DecodeError> {
    let mut fields = Fields(versioned_object(payload, limits.max_request_bytes)?);
    let request = ModerationRequest {
        v: PROTOCOL_VERSION,
        id: fields.string("id")?,
        tenant: fields.string("tenant")?,
        room: fields.string("room")?,
        sender: fields.string("sender")?,
        text: fields.string("text")?,
        sent_at_ms: fields.u64("sent_at_ms")?,
        deadline_ms: fields.optional_u64("deadline_ms")?,
        priority: fields.optional_priority()?,
        policy: fields.optional_string("policy")?,
        report: fields.optional_typed("report")?,
        context: fields.optional_typed("context")?.unwrap_or_default(),
        mentions: fields.optional_typed("mentions")?.unwrap_or_default(),
        account_created_ms: fields.optional_u64("account_created_ms")?,
    };
    fields.finish()?;
    validate(&request)?;
    Ok(request)
}

fn check_subject(subject: &str, tenant: &str) -> Result<(), DecodeError> {
    match subject::tenant_of_request_subject(subject) {
        None => Err(DecodeError::InvalidSubject(truncate(
            subject,
            2 * MAX_TOKEN_BYTES,
        ))),
        Some(token) if token != tenant => Err(DecodeError::SubjectMismatch {
            subject: token.to_string(),
            payload: tenant.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// Decodes a verdict or dead letter (payloads we produce ourselves): same size, UTF-8,
/// JSON and version checks, then the type's own shape.
pub fn decode_versioned<T: DeserializeOwned>(
    payload: &[u8],
    max_bytes: usize,
) -> Result<T, DecodeError> {
    let object = versioned_object(payload, max_bytes)?;
    serde_json::from_value(Value::Object(object))
        .map_err(|err| DecodeError::InvalidPayload(err.to_string()))
}

/// Size, UTF-8, JSON syntax, object and `v` checks shared by every payload.
fn versioned_object(payload: &[u8], max_bytes: usize) -> Result<Map<String, Value>, DecodeError> {
    if payload.len() > max_bytes {
        return Err(DecodeError::Oversized {
            size: payload.len(),
            limit: max_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|err| DecodeError::InvalidUtf8 {
        valid_up_to: err.valid_up_to(),
    })?;
    let value = from_str_unique_keys(text).map_err(|err| {
        if is_duplicate_key(&err) {
            DecodeError::DuplicateKey(err.to_string())
        } else {
            DecodeError::MalformedJson(err.to_string())
        }
    })?;
    let Value::Object(object) = value else {
        return Err(DecodeError::NotAnObject);
    };
    match object.get("v") {
        None | Some(Value::Null) => Err(DecodeError::MissingField("v")),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => Ok(object),
        Some(Value::Number(n)) => Err(DecodeError::UnsupportedVersion(n.to_string())),
        Some(_) => Err(DecodeError::WrongType {
            field: "v",
            expected: "an integer",
        }),
    }
}
/// Cuts hostile input before it goes into an error message or a log line.
fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
