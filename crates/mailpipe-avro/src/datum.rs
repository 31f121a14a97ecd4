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
//!
//! [`Reader`] is the other direction, for the aggregate stage's `mail.events.unique`
//! records ([`crate::event_datum`]): it reads the same values back from untrusted bytes,
//! accepting everything the specification allows (several blocks, negative block counts
//! with their byte sizes) and refusing what it does not (overlong varints, lengths past the
//! end, invalid UTF-8) with an error, never a panic or an allocation the input cannot back.

use crate::AvroError;

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

/// Reads Avro binary values one after the other from a datum.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

fn malformed(what: &str) -> AvroError {
    AvroError::Mismatch(format!("malformed Avro datum: {what}"))
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes }
    }

    /// A zig-zag varint `long` (at most 10 bytes, as 64 bits need; bits a 10th byte
    /// carries beyond the 64th are dropped, as `apache_avro` does, so both read the same).
    pub fn long(&mut self) -> Result<i64, AvroError> {
        let mut value: u64 = 0;
        for (i, byte) in self.bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[i + 1..];
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(malformed(if self.bytes.len() < 10 {
            "the datum ends inside a long"
        } else {
            "a long is longer than 10 bytes"
        }))
    }

    /// A length (string or block byte size): a `long` that must be ≥ 0 and fit in what is left.
    fn length(&mut self) -> Result<usize, AvroError> {
        let length = self.long()?;
        let length = usize::try_from(length).map_err(|_| malformed("a negative length"))?;
        if length > self.bytes.len() {
            return Err(malformed("a length runs past the end of the datum"));
        }
        Ok(length)
    }

    /// A `string`, borrowed from the datum.
    pub fn str(&mut self) -> Result<&'a str, AvroError> {
        let length = self.length()?;
        let (text, rest) = self.bytes.split_at(length);
        let text = std::str::from_utf8(text).map_err(|_| malformed("a string is not UTF-8"))?;
        self.bytes = rest;
        Ok(text)
    }

    /// A union's branch index, which must be below `branches`.
    pub fn branch(&mut self, branches: usize) -> Result<usize, AvroError> {
        self.index(branches, "a union branch is out of range")
    }

    /// An enum symbol's index, which must be below `symbols`.
    pub fn symbol(&mut self, symbols: usize) -> Result<usize, AvroError> {
        self.index(symbols, "an enum index is out of range")
    }

    fn index(&mut self, count: usize, error: &str) -> Result<usize, AvroError> {
        usize::try_from(self.long()?)
            .ok()
            .filter(|i| *i < count)
            .ok_or_else(|| malformed(error))
    }

    /// A `boolean`: one byte, 0 or 1 (any other byte is an error, as in `apache_avro`).
    pub fn boolean(&mut self) -> Result<bool, AvroError> {
        let (&byte, rest) = self
            .bytes
            .split_first()
            .ok_or_else(|| malformed("the datum ends before a boolean"))?;
        let value = match byte {
            0 => false,
            1 => true,
            _ => return Err(malformed("a boolean is neither 0 nor 1")),
        };
        self.bytes = rest;
        Ok(value)
    }

    /// A `["null", "string"]` union.
    pub fn optional_str(&mut self) -> Result<Option<&'a str>, AvroError> {
        match self.branch(2)? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }

    /// An `array` of `string`s, every block of it, each item handed to `item`.
    pub fn string_array(&mut self, mut item: impl FnMut(&'a str)) -> Result<(), AvroError> {
        while let Some(count) = self.block()? {
            for _ in 0..count {
                item(self.str()?);
            }
        }
        Ok(())
    }

    /// A `map` of `string` values, every block of it, each entry handed to `entry`.
    pub fn string_map(&mut self, mut entry: impl FnMut(&'a str, &'a str)) -> Result<(), AvroError> {
        while let Some(count) = self.block()? {
            for _ in 0..count {
                let key = self.str()?;
                entry(key, self.str()?);
            }
        }
        Ok(())
    }

    /// The next block's item count, `None` at the end marker. A negative count is followed
    /// by the block's size in bytes, which is skipped unchecked, as `apache_avro` does (only
    /// the items matter). Every item takes at least one byte, so a count above what is left
    /// is refused before anything is read.
    fn block(&mut self) -> Result<Option<usize>, AvroError> {
        let count = self.long()?;
        if count == 0 {
            return Ok(None);
        }
        if count < 0 {
            self.long()?;
        }
        let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        if count > self.bytes.len() {
            return Err(malformed("a block holds more items than bytes are left"));
        }
        Ok(Some(count))
    }

    /// Fails unless every byte was read: trailing bytes mean another schema wrote the datum.
    pub fn finish(&self) -> Result<(), AvroError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(malformed("bytes are left after the record"))
        }
    }
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

    #[test]
    fn the_reader_reads_back_what_the_writers_write() {
        for number in [0, 1, -1, 63, -64, 64, 1_717_000_000_000, i64::MIN, i64::MAX] {
            let mut out = Vec::new();
            write_long(&mut out, number);
            write_string(&mut out, "héllo");
            write_optional_string(&mut out, None);
            write_optional_string(&mut out, Some("x"));
            write_string_array(&mut out, ["t1", ""].into_iter());
            write_string_map(&mut out, [("k", "v"), ("a", "")].into_iter());
            let mut reader = Reader::new(&out);
            assert_eq!(reader.long().unwrap(), number);
            assert_eq!(reader.str().unwrap(), "héllo");
            assert_eq!(reader.optional_str().unwrap(), None);
            assert_eq!(reader.optional_str().unwrap(), Some("x"));
            let mut items = Vec::new();
            reader.string_array(|s| items.push(s)).unwrap();
            assert_eq!(items, ["t1", ""]);
            let mut entries = Vec::new();
            reader.string_map(|k, v| entries.push((k, v))).unwrap();
            assert_eq!(entries, [("k", "v"), ("a", "")]);
            reader.finish().unwrap();
        }
    }

    #[test]
    fn the_reader_takes_several_blocks_and_negative_counts() {
        // Two blocks: 1 item, then -2 items with their byte size (2 strings of 1 byte = 4).
        let mut out = Vec::new();
        write_long(&mut out, 1);
        write_string(&mut out, "a");
        write_long(&mut out, -2);
        write_long(&mut out, 4);
        write_string(&mut out, "b");
        write_string(&mut out, "c");
        write_long(&mut out, 0);
        let mut items = Vec::new();
        let mut reader = Reader::new(&out);
        reader.string_array(|s| items.push(s)).unwrap();
        assert_eq!(items, ["a", "b", "c"]);
        reader.finish().unwrap();
        // The byte size is not checked (apache_avro skips it too): -1 item, size -32.
        let mut reader = Reader::new(&[0x01, 0x3f, 0x02, b'x', 0x00]);
        let mut items = Vec::new();
        reader.string_array(|s| items.push(s)).unwrap();
        assert_eq!(items, ["x"]);
    }

    #[test]
    fn the_reader_refuses_malformed_bytes_with_an_error() {
        let error = |bytes: &[u8], read: fn(&mut Reader) -> Result<(), AvroError>| {
            read(&mut Reader::new(bytes)).unwrap_err().to_string()
        };
        let long = |r: &mut Reader| r.long().map(drop);
        let string = |r: &mut Reader| r.str().map(drop);
        let array = |r: &mut Reader| r.string_array(drop);
        assert!(error(&[], long).contains("ends inside a long"));
        assert!(error(&[0x80; 11], long).contains("longer than 10 bytes"));
        // Bits past the 64th are dropped, as apache_avro does.
        let mut overlong = [0xff; 10];
        overlong[9] = 0x7f;
        assert_eq!(Reader::new(&overlong).long().unwrap(), i64::MIN);
        assert!(error(&[0x01], string).contains("negative length"));
        assert!(error(&[0x0a, b'a'], string).contains("past the end"));
        assert!(error(&[0x02, 0xff], string).contains("not UTF-8"));
        // A block claiming a huge item count is refused before any item is read.
        let mut huge = Vec::new();
        write_long(&mut huge, i64::MAX);
        assert!(error(&huge, array).contains("more items than bytes"));
        let mut most_negative = Vec::new();
        write_long(&mut most_negative, i64::MIN);
        write_long(&mut most_negative, 0);
        assert!(error(&most_negative, array).contains("more items than bytes"));
        assert!(Reader::new(&[4]).branch(2).is_err());
        assert!(Reader::new(&[1]).symbol(3).is_err());
        assert!(Reader::new(&[0]).finish().is_err());
    }
}
