//! Typed fields taken out of a request's JSON object one by one, so that a wrong type,
//! a missing field and a field the contract does not define are each told apart.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{DecodeError, truncate};
use crate::types::Priority;

/// Takes typed fields out of a JSON object; what is left at the end is unknown.
pub(super) struct Fields(pub(super) Map<String, Value>);

impl Fields {
    fn take(&mut self, field: &'static str) -> Option<Value> {
        self.0.remove(field).filter(|v| !v.is_null())
    }

    pub(super) fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.optional_string(field)?
            .ok_or(DecodeError::MissingField(field))
    }

    pub(super) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, DecodeError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(DecodeError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        self.optional_u64(field)?
            .ok_or(DecodeError::MissingField(field))
    }

    pub(super) fn optional_u64(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        match self.take(field) {
            None => Ok(None),
            Some(Value::Number(n)) if n.is_u64() => Ok(n.as_u64()),
            Some(_) => Err(DecodeError::WrongType {
                field,
                expected: "a non-negative integer",
            }),
        }
    }

    /// A v1.1 object field, decoded by its own type's rules (unknown keys refused).
    pub(super) fn optional_typed<T: DeserializeOwned>(
        &mut self,
        field: &'static str,
    ) -> Result<Option<T>, DecodeError> {
        self.take(field)
            .map(|value| {
                serde_json::from_value(value).map_err(|err| DecodeError::InvalidField {
                    field,
                    detail: truncate(&err.to_string(), 200),
                })
            })
            .transpose()
    }

    pub(super) fn optional_priority(&mut self) -> Result<Option<Priority>, DecodeError> {
        let Some(name) = self.optional_string("priority")? else {
            return Ok(None);
        };
        match name.as_str() {
            "low" => Ok(Some(Priority::Low)),
            "normal" => Ok(Some(Priority::Normal)),
            "high" => Ok(Some(Priority::High)),
            _ => Err(DecodeError::InvalidField {
                field: "priority",
                detail: format!("`{}` is not low, normal or high", truncate(&name, 32)),
            }),
        }
    }

    pub(super) fn finish(mut self) -> Result<(), DecodeError> {
        self.0.remove("v");
        match self.0.keys().next() {
            Some(key) => Err(DecodeError::UnknownField(truncate(key, 64))),
            None => Ok(()),
        }
    }
}
