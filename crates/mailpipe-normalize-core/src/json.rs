//! JSON helpers shared by the providers: splitting a body into event objects while keeping
//! each event's original text, and lenient field access. Events are read into [`Object`]s
//! (`json/value.rs`), which borrow their text from the body instead of copying it.
//!
//! Leniency rule: a field the provider always sends (the event name, the timestamp) is
//! checked strictly by the caller; an optional field of an unexpected JSON type is treated
//! as absent, because providers add and reshape optional fields without notice.

mod value;

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::error::{ParseError, ParseFailure};
use crate::max_events;

pub(crate) use value::{Json, Object};

/// What a provider's body may be at the top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Always an array of event objects (SendGrid, SparkPost, Mandrill's form field).
    Array,
    /// Always one event object.
    Object,
    /// One object, or an array of them when the provider batches (Brevo, Mailjet, generic).
    ObjectOrArray,
}

/// One event object and its original JSON text, byte for byte.
#[derive(Debug)]
pub(crate) struct RawEvent<'a> {
    pub raw: &'a str,
    pub object: Object<'a>,
}

/// The body as UTF-8 text; JSON must be UTF-8 (RFC 8259).
pub(crate) fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str, ParseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        ParseError::new(
            ParseFailure::NotUtf8,
            format!("{what} is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })
}

/// Splits `text` into event objects of the given shape. Elements are first read as raw
/// slices (syntax checked without building values, no recursion), so the event count is
/// bounded before any event is materialized.
pub(crate) fn events<'a>(
    text: &'a str,
    shape: Shape,
    what: &str,
) -> Result<Vec<RawEvent<'a>>, ParseError> {
    let first = text.trim_start().bytes().next();
    match (first, shape) {
        (Some(b'['), Shape::Array | Shape::ObjectOrArray) => {
            let elements: Vec<&RawValue> =
                serde_json::from_str(text).map_err(|e| classify(what, &e))?;
            let cap = max_events(text.len());
            if elements.len() > cap {
                return Err(ParseError::new(
                    ParseFailure::TooManyEvents,
                    format!("{what} holds {} events, more than {cap}", elements.len()),
                ));
            }
            elements
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    // The element's name is formatted only for an error.
                    let object = serde_json::from_str(raw.get())
                        .map_err(|e| classify(&format!("{what} element {i}"), &e))?;
                    Ok(RawEvent {
                        raw: raw.get(),
                        object,
                    })
                })
                .collect()
        }
        (Some(b'{'), Shape::Object | Shape::ObjectOrArray) => Ok(vec![object(text.trim(), what)?]),
        (None, _) => Err(ParseError::new(
            ParseFailure::NotJson,
            format!("{what} is empty"),
        )),
        (Some(_), _) => {
            // Tell a syntax error from valid JSON of the wrong type.
            let value: Json = serde_json::from_str(text).map_err(|e| classify(what, &e))?;
            let expected = match shape {
                Shape::Array => "an array of events",
                Shape::Object => "an event object",
                Shape::ObjectOrArray => "an event object or an array of them",
            };
            Err(ParseError::shape(format!(
                "{what} is {}, expected {expected}",
                kind(&value)
            )))
        }
    }
}

/// Deserializes a provider envelope (a JSON object) into `T`, typically a struct that
/// borrows the event as a [`RawValue`] to keep its original text. Anything but an object
/// is refused up front: serde would otherwise accept a sequence for a struct.
pub(crate) fn envelope<'a, T: serde::Deserialize<'a>>(
    text: &'a str,
    what: &str,
) -> Result<T, ParseError> {
    match text.trim_start().bytes().next() {
        Some(b'{') => serde_json::from_str(text).map_err(|e| classify(what, &e)),
        _ => Err(events(text, Shape::Object, what)
            .err()
            .unwrap_or_else(|| ParseError::shape(format!("{what} is not an object")))),
    }
}

/// Parses one event object from its raw text.
pub(crate) fn object<'a>(raw: &'a str, what: &str) -> Result<RawEvent<'a>, ParseError> {
    let object: Object<'a> = serde_json::from_str(raw).map_err(|e| classify(what, &e))?;
    Ok(RawEvent { raw, object })
}

/// A serde_json error as not-JSON (syntax, nesting too deep) or wrong shape (valid JSON
/// of the wrong type).
fn classify(what: &str, error: &serde_json::Error) -> ParseError {
    match error.classify() {
        serde_json::error::Category::Data => ParseError::shape(format!("{what}: {error}")),
        _ => ParseError::json(what, error),
    }
}

/// The JSON type of `value`, for messages.
pub(crate) fn kind(value: &Json<'_>) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// A string or number as text (ids are sent as either); `None` for empty strings and
/// other types.
pub(crate) fn text(value: &Json<'_>) -> Option<String> {
    match value {
        Json::String(s) if !s.trim().is_empty() => Some(s.to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Lenient accessors of an event object's fields.
impl<'a> Object<'a> {
    /// A non-empty string field.
    pub(crate) fn str_of(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str().filter(|s| !s.trim().is_empty())
    }

    /// A non-empty string or a number, as text.
    pub(crate) fn text_of(&self, key: &str) -> Option<String> {
        text(self.get(key)?)
    }

    pub(crate) fn object_of(&self, key: &str) -> Option<&Object<'a>> {
        self.get(key)?.as_object()
    }

    pub(crate) fn array_of(&self, key: &str) -> Option<&[Json<'a>]> {
        self.get(key)?.as_array()
    }

    pub(crate) fn bool_of(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Json::Bool(b) => Some(*b),
            Json::String(s) => s.parse().ok(),
            Json::Number(n) => n.as_i64().map(|n| n != 0),
            _ => None,
        }
    }

    /// The discriminating string field the provider always sends (the event name).
    pub(crate) fn required_str(&self, key: &str) -> Result<&str, ParseError> {
        match self.get(key) {
            None | Some(Json::Null) => Err(ParseError::missing(&format!("`{key}` field"))),
            Some(Json::String(s)) => Ok(s),
            Some(other) => Err(ParseError::invalid(
                key,
                format!("is {}, not a string", kind(other)),
            )),
        }
    }
}

/// Custom data as a string map: strings as they are, other values as compact JSON,
/// nulls dropped (they carry nothing and would read as the text "null"). A key sent twice
/// counts with its last value, so a later null removes an earlier value.
pub(crate) fn metadata<'j>(
    members: impl IntoIterator<Item = (&'j str, &'j Json<'j>)>,
) -> BTreeMap<String, String> {
    let mut metadata = BTreeMap::new();
    for (key, value) in members {
        let text = match value {
            Json::Null => {
                metadata.remove(key);
                continue;
            }
            Json::String(s) => s.to_string(),
            other => other.to_string(),
        };
        metadata.insert(key.to_string(), text);
    }
    metadata
}

/// Tags given as one string or an array of strings (numbers accepted as text).
pub(crate) fn string_list(value: Option<&Json<'_>>) -> Vec<String> {
    match value {
        Some(Json::Array(items)) => items.iter().filter_map(text).collect(),
        Some(other) => text(other).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_each_events_original_text() {
        let body = "[{\"a\": 1},\r\n {\"b\":[2, 3]}]\r\n";
        let batch = events(body, Shape::Array, "body").unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1].raw, "{\"b\":[2, 3]}");
        assert_eq!(
            events(" {\"a\":1} ", Shape::ObjectOrArray, "body").unwrap()[0].raw,
            "{\"a\":1}"
        );
    }

    #[test]
    fn wrong_shapes_and_syntax_errors_are_told_apart() {
        let fail = |body: &str, shape| events(body, shape, "body").unwrap_err().failure;
        assert_eq!(fail("{\"a\":1}", Shape::Array), ParseFailure::WrongShape);
        assert_eq!(fail("[{}]", Shape::Object), ParseFailure::WrongShape);
        assert_eq!(fail("[1]", Shape::Array), ParseFailure::WrongShape);
        assert_eq!(
            fail("\"x\"", Shape::ObjectOrArray),
            ParseFailure::WrongShape
        );
        assert_eq!(fail("[{\"a\":}]", Shape::Array), ParseFailure::NotJson);
        assert_eq!(fail("{\"a\":1", Shape::Object), ParseFailure::NotJson);
        assert_eq!(fail("  ", Shape::Object), ParseFailure::NotJson);
        assert_eq!(fail("nul", Shape::Object), ParseFailure::NotJson);
        let deep = format!("[{{\"a\":{}1{}}}]", "[".repeat(500), "]".repeat(500));
        assert_eq!(fail(&deep, Shape::Array), ParseFailure::NotJson);
    }

    #[test]
    fn lenient_fields() {
        let o: Object = serde_json::from_str(
            r#"{"s":"x","e":" ","n":12345678901234567890,"b":"true","m":{"k":1,"z":null},"t":["a",2,{}]}"#,
        )
        .unwrap();
        assert_eq!(o.str_of("s"), Some("x"));
        assert_eq!(o.str_of("e"), None);
        assert_eq!(o.text_of("n").as_deref(), Some("12345678901234567890"));
        assert_eq!(o.bool_of("b"), Some(true));
        assert_eq!(
            o.required_str("n").unwrap_err().failure,
            ParseFailure::InvalidField
        );
        assert_eq!(
            o.required_str("absent").unwrap_err().failure,
            ParseFailure::MissingField
        );
        let m = metadata(o.object_of("m").unwrap().members());
        assert_eq!(m.get("k").map(String::as_str), Some("1"));
        assert!(!m.contains_key("z"));
        assert_eq!(string_list(o.get("t")), vec!["a", "2"]);
        assert_eq!(string_list(o.get("s")), vec!["x"]);
    }

    #[test]
    fn metadata_of_repeated_keys_is_that_of_the_last_value() {
        let text = r#"{"a":"x","a":null,"b":null,"b":{"y":[1,"2"],"x":true},"c":1,"c":"one"}"#;
        let o: Object = serde_json::from_str(text).unwrap();
        let expected: BTreeMap<String, String> = [
            ("b".to_string(), r#"{"x":true,"y":[1,"2"]}"#.to_string()),
            ("c".to_string(), "one".to_string()),
        ]
        .into();
        assert_eq!(metadata(o.members()), expected);
    }
}
