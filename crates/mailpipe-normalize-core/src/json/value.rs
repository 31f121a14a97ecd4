//! A parsed JSON value that borrows its strings from the text it was parsed from, used
//! instead of `serde_json::Value` for the events: an owned string per key and per value,
//! and a B-tree per object, were most of the normalizer's parsing time (`make bench`).
//!
//! It reads exactly what `serde_json::Value` reads: the same numbers (`serde_json::Number`),
//! the same unescaped text, the same errors and nesting limit (serde_json's parser produces
//! them), and a key sent twice counts with its last value, as in `serde_json::Map`. Where a
//! value's JSON text is needed (a hash input, metadata, a message), it is rendered through
//! `serde_json::Value`, so the text is identical too. One deliberate difference: with
//! serde_json's `raw_value` feature on, `Value` treats an object whose first key is the
//! crate-internal marker `$serde_json::private::RawValue` as embedded JSON text; here it is
//! an object like any other.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A JSON value; strings borrow from the parsed text unless they contained escapes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object's members in the order sent, repeated keys included; lookups find the
/// last member with a key, which is the value `serde_json::Map` keeps.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Json<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    pub(crate) fn as_array(&self) -> Option<&[Json<'a>]> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(crate) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    /// Member `key` of an object; `None` for anything else.
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?.get(key)
    }

    /// The same value as a `serde_json::Value` (owned, members sorted and deduplicated as
    /// its `Map` holds them): for rendering JSON text.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(
                o.members()
                    .map(|(key, value)| (key.to_string(), value.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Compact JSON text, exactly as `serde_json::Value` displays the same value.
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_value().fmt(f)
    }
}

impl<'a> Object<'a> {
    /// The value of `key` (its last one, if sent twice).
    pub(crate) fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, value)| value)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.members.iter().any(|(k, _)| k == key)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Every member in the order sent, repeated keys included: a caller collecting them
    /// into a map must let a later member replace an earlier one.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.members
            .iter()
            .map(|(key, value)| (key.as_ref(), value))
    }

    /// The member whose key sorts first (by bytes), with its last value: what iterating a
    /// `serde_json::Map`, which is sorted by key, yields first.
    pub(crate) fn first_by_key(&self) -> Option<(&str, &Json<'a>)> {
        let mut first: Option<(&str, &Json<'a>)> = None;
        for (key, value) in self.members() {
            if first.is_none_or(|(first_key, _)| key <= first_key) {
                first = Some((key, value));
            }
        }
        first
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json<'de>, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Object<'de>, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Text that borrows from the input when serde_json hands out a slice of it (no escapes).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text<'de>, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text.to_string())))
    }

    fn visit_string<E>(self, text: String) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(text)))
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    // Wording of `serde_json::Value`'s visitor, so errors read the same.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Json<'de>, E> {
        // As `serde_json::Value` does; the parser never yields a non-finite number anyway.
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text.to_string())))
    }

    fn visit_string<E>(self, text: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(text)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Json<'de>, A::Error> {
        ObjectVisitor.visit_map(map).map(Json::Object)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Object<'de>;

    // Wording of `serde_json::Map`'s visitor, so errors read the same.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Object<'de>, A::Error> {
        // Room for a typical event object's fields before the first reallocation.
        let mut members = Vec::with_capacity(8);
        while let Some(Text(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Object { members })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts read as `Json` and as `serde_json::Value` must give the same value, or the
    /// same error.
    #[test]
    fn reads_what_serde_json_value_reads() {
        let texts = [
            r#"{"a":"x","b":[1,-2,3.5,1e300,-0,0.1,18446744073709551615],"c":{"d":null,"e":true}}"#,
            r#"{"esc":"a\"b\\c\u00e9\ud83d\ude00\n","k\u0065y":1}"#,
            r#"{"dup":"first","z":1,"dup":null,"a":2}"#,
            r#"[{"x":{}},[],"",0]"#,
            "12345678901234567890123",
            "-9223372036854775809",
            "1.5e+30",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            "[1e400]",
            "\"\\ud800\"",
            "",
            "nul",
        ];
        for text in texts {
            let ours = serde_json::from_str::<Json>(text).map(|j| j.to_value());
            let theirs = serde_json::from_str::<Value>(text);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(ours, theirs, "{text}");
                    assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
                }
                (Err(ours), Err(theirs)) => assert_eq!(ours.to_string(), theirs.to_string()),
                (ours, theirs) => panic!("{text}: {ours:?} vs {theirs:?}"),
            }
        }
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            serde_json::from_str::<Json>(&deep).unwrap_err().to_string(),
            serde_json::from_str::<Value>(&deep)
                .unwrap_err()
                .to_string()
        );
    }

    #[test]
    fn objects_refuse_other_types_in_serde_json_map_words() {
        for text in ["[]", "\"x\"", "1", "null"] {
            assert_eq!(
                serde_json::from_str::<Object>(text)
                    .unwrap_err()
                    .to_string(),
                serde_json::from_str::<serde_json::Map<String, Value>>(text)
                    .unwrap_err()
                    .to_string()
            );
        }
    }

    #[test]
    fn repeated_keys_read_as_serde_json_map_reads_them() {
        let text = r#"{"b":1,"a":"first","c":2,"a":"last"}"#;
        let o: Object = serde_json::from_str(text).unwrap();
        assert_eq!(o.get("a").and_then(Json::as_str), Some("last"));
        assert!(o.contains_key("c") && !o.contains_key("d"));
        assert_eq!(o.members().count(), 4);
        let (key, value) = o.first_by_key().unwrap();
        assert_eq!((key, value.as_str()), ("a", Some("last")));
        let map: serde_json::Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(Json::Object(o).to_value(), Value::Object(map));
    }

    #[test]
    fn strings_without_escapes_borrow() {
        let o: Object = serde_json::from_str(r#"{"plain":"abc","escaped":"a\nb"}"#).unwrap();
        assert!(matches!(
            o.get("plain"),
            Some(Json::String(Cow::Borrowed("abc")))
        ));
        assert!(matches!(
            o.get("escaped"),
            Some(Json::String(Cow::Owned(_)))
        ));
    }
}
