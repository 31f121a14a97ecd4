//! The Avro binary encoding of primitive values, for records whose datum is written field
//! by field instead of through serde (see [`crate::RegisteredSchema::encode_with`]): the
//! normalize stage writes every `mail.events` record this way, because the schema-aware
//! serde serializer spends most of its time looking fields up by name.
//!
//! Each function appends one value exactly as the Avro specification encodes it
//! ("Binary Encoding"): `int`, `long` and `enum` indexes as zig-zag varints, `string` as
//! its length then its UTF-8 bytes, a `union` as the branch index then the branch's value,
//! an `array` or `map` as one block (item count, items) followed by the empty block `0`.
//! What field comes when is the caller's business: it follows the record's schema.

/// A `long` (also an `int`, an enum symbol's index, a union branch, a block count):
/// zig-zag, then 7 bits per byte, least significant first, high bit = more follows.
pub fn write_long(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// A `string`: its byte length, then its bytes.
pub fn write_string(out: &mut Vec<u8>, value: &str) {
    write_long(out, value.len() as i64);
    out.extend_from_slice(value.as_bytes());
}

/// A `["null", "string"]` union: branch 0 for `None`, branch 1 and the string for `Some`.
pub fn write_optional_string(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => write_long(out, 0),
        Some(text) => {
            write_long(out, 1);
            write_string(out, text);
        }
    }
}

/// An `array` of `string`s: one block holding every item, then the end marker.
pub fn write_string_array<'a>(out: &mut Vec<u8>, items: impl ExactSizeIterator<Item = &'a str>) {
    if items.len() > 0 {
        write_long(out, items.len() as i64);
        for item in items {
            write_string(out, item);
        }
    }
    write_long(out, 0);
}

/// A `map` of `string` values: one block holding every entry, then the end marker.
pub fn write_string_map<'a>(
    out: &mut Vec<u8>,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) {
    if entries.len() > 0 {
        write_long(out, entries.len() as i64);
        for (key, value) in entries {
            write_string(out, key);
            write_string(out, value);
        }
    }
    write_long(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long(value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_long(&mut out, value);
        out
    }

    #[test]
    fn longs_are_zigzag_varints_as_in_the_specification() {
        // The specification's table, then the edges.
        assert_eq!(long(0), [0x00]);
        assert_eq!(long(-1), [0x01]);
        assert_eq!(long(1), [0x02]);
        assert_eq!(long(-2), [0x03]);
        assert_eq!(long(2), [0x04]);
        assert_eq!(long(-64), [0x7f]);
        assert_eq!(long(64), [0x80, 0x01]);
        assert_eq!(long(i64::MAX).len(), 10);
        assert_eq!(long(i64::MIN).len(), 10);
    }

    #[test]
    fn every_value_matches_apache_avro() {
        use apache_avro::types::Value;
        use apache_avro::writer::datum::GenericDatumWriter;
        let schema = crate::parse_schema(
            r#"{"type": "record", "name": "R", "fields": [
                {"name": "l", "type": "long"},
                {"name": "s", "type": "string"},
                {"name": "none", "type": ["null", "string"]},
                {"name": "some", "type": ["null", "string"]},
                {"name": "empty", "type": {"type": "array", "items": "string"}},
                {"name": "a", "type": {"type": "array", "items": "string"}},
                {"name": "m", "type": {"type": "map", "values": "string"}}]}"#,
        )
        .unwrap();
        for number in [0, 1, -1, 63, -64, 64, 1_717_000_000_000, i64::MIN, i64::MAX] {
            let value = Value::Record(vec![
                ("l".into(), Value::Long(number)),
                ("s".into(), Value::String("héllo".into())),
                ("none".into(), Value::Union(0, Box::new(Value::Null))),
                (
                    "some".into(),
                    Value::Union(1, Box::new(Value::String("x".into()))),
                ),
                ("empty".into(), Value::Array(Vec::new())),
                (
                    "a".into(),
                    Value::Array(vec![Value::String("t1".into()), Value::String("".into())]),
                ),
                (
                    "m".into(),
                    Value::Map([("k".to_string(), Value::String("v".into()))].into()),
                ),
            ]);
            let expected = GenericDatumWriter::builder(&schema)
                .build()
                .unwrap()
                .write_value_to_vec(value)
                .unwrap();
            let mut out = Vec::new();
            write_long(&mut out, number);
            write_string(&mut out, "héllo");
            write_optional_string(&mut out, None);
            write_optional_string(&mut out, Some("x"));
            write_string_array(&mut out, std::iter::empty());
            write_string_array(&mut out, ["t1", ""].into_iter());
            write_string_map(&mut out, [("k", "v")].into_iter());
            assert_eq!(out, expected, "{number}");
        }
    }
}
