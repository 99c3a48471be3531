//! JSON parsing that refuses an object with the same key twice, at any depth.
//!
//! `serde_json::Value` keeps the last of duplicate keys, so `{"text":"hi","text":"insult"}`
//! means one thing to a parser that keeps the first (many do) and another to ours: two
//! readers of one payload disagree about what it says. The contract allows each key once.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text` as JSON, as `serde_json::from_str::<Value>` does, but refuses any object
/// that repeats a key (a `serde_json` data error whose message starts `duplicate key`;
/// syntax errors are reported as `serde_json` reports them).
pub fn from_str_unique_keys(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Unique>(text).map(|unique| unique.0)
}

/// Whether `err` (from [`from_str_unique_keys`]) is a repeated key rather than bad syntax.
pub fn is_duplicate_key(err: &serde_json::Error) -> bool {
    err.classify() == serde_json::error::Category::Data
}

/// A JSON value whose objects have unique keys.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

/// Builds a [`Value`] as `serde_json`'s own visitor does, refusing repeated keys.
struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Number::from_f64(value).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Unique::deserialize(deserializer).map(|unique| unique.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Unique(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate key `{}`",
                    super::truncate(&key, 64)
                )));
            }
            let Unique(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated keys are refused at the top level and nested; the same key in sibling
    /// objects and everything else parses exactly as `serde_json` parses it.
    #[test]
    fn refuses_repeated_keys_only() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[{"x":null,"x":null}]"#,
        ] {
            let err = from_str_unique_keys(text).expect_err(text);
            assert!(is_duplicate_key(&err), "{text}: {err}");
            assert!(err.to_string().starts_with("duplicate key"), "{err}");
        }
        for text in [
            r#"{"a":{"b":1},"c":{"b":1},"d":[1,-2,3.5,"s",true,null]}"#,
            r#""just a string""#,
            "18446744073709551615",
        ] {
            let ours = from_str_unique_keys(text).expect(text);
            let theirs: Value = serde_json::from_str(text).expect(text);
            assert_eq!(ours, theirs);
        }
        let syntax = from_str_unique_keys("{").expect_err("syntax");
        assert!(!is_duplicate_key(&syntax));
    }
}
