//! Provider timestamps to UTC Unix milliseconds, whatever the unit or format: integer or
//! float seconds, milliseconds, numbers sent as strings, RFC 3339 / ISO 8601 with any
//! offset and up to nanosecond fractions, RFC 2822.
//!
//! Fractions are cut (not rounded) to the millisecond, and float seconds are read from the
//! number's decimal text rather than through `f64` arithmetic, so `1534108637.153125`
//! becomes exactly `1534108637153`.

use chrono::DateTime;

use crate::error::ParseError;
use crate::json::Json;

/// The latest accepted instant, 9999-12-31T23:59:59.999Z: beyond it a "timestamp" is a
/// unit mix-up or garbage, and downstream date types (ClickHouse DateTime) cannot hold it.
const MAX_MS: i64 = 253_402_300_799_999;

/// Milliseconds from Unix seconds given as a JSON number or a numeric string.
pub(crate) fn seconds(value: &Json<'_>, field: &str) -> Result<i64, ParseError> {
    match value {
        Json::Number(n) => decimal_seconds(&n.to_string(), field),
        Json::String(s) => decimal_seconds(s.trim(), field),
        other => Err(ParseError::invalid(
            field,
            format!("is {}, not Unix seconds", crate::json::kind(other)),
        )),
    }
}

/// Milliseconds from Unix milliseconds given as a JSON integer or a numeric string.
pub(crate) fn millis(value: &Json<'_>, field: &str) -> Result<i64, ParseError> {
    let ms = match value {
        Json::Number(n) => n.as_i64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let ms = ms.ok_or_else(|| {
        ParseError::invalid(field, format!("{value} is not integer Unix milliseconds"))
    })?;
    in_range(ms, field)
}

/// Milliseconds from an RFC 3339 / ISO 8601 date-time with an offset (`Z`, `+00:00`,
/// `-04:00`; `T` or a space between date and time), or else an RFC 2822 date.
pub(crate) fn text(value: &str, field: &str) -> Result<i64, ParseError> {
    let value = value.trim();
    let parsed =
        DateTime::parse_from_rfc3339(value).or_else(|_| DateTime::parse_from_rfc2822(value));
    match parsed {
        Ok(at) => in_range(at.timestamp_millis(), field),
        Err(_) => Err(ParseError::invalid(
            field,
            format!("{value:?} is not an RFC 3339 or RFC 2822 date-time"),
        )),
    }
}

/// Milliseconds from either Unix seconds (number or numeric string) or date-time text:
/// for fields whose format differs between a provider's webhooks and its APIs.
pub(crate) fn seconds_or_text(value: &Json<'_>, field: &str) -> Result<i64, ParseError> {
    match value {
        Json::String(s) if !looks_numeric(s.trim()) => text(s, field),
        other => seconds(other, field),
    }
}

fn looks_numeric(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E'
        })
}

/// Seconds in decimal text (`1600112492`, `1534108637.153125`, `1.6e9`) to milliseconds.
fn decimal_seconds(text: &str, field: &str) -> Result<i64, ParseError> {
    let bad = || ParseError::invalid(field, format!("{text:?} is not Unix seconds"));
    if text.bytes().any(|b| b == b'e' || b == b'E') {
        // Exponent notation is rare enough to afford f64; the range check bounds it.
        let secs: f64 = text.parse().map_err(|_| bad())?;
        let ms = (secs * 1000.0).trunc();
        if !ms.is_finite() || ms.abs() > MAX_MS as f64 {
            return Err(ParseError::invalid(
                field,
                format!("{text} is out of range"),
            ));
        }
        return in_range(ms as i64, field);
    }
    if text.starts_with('-') {
        // Before 1970: out of range whatever the digits, and the fraction's sign is moot.
        return Err(ParseError::invalid(field, format!("{text} is before 1970")));
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let mut ms_part = 0i64;
    for (i, digit) in fraction.bytes().take(3).enumerate() {
        ms_part += i64::from(digit - b'0') * 10i64.pow(2 - i as u32);
    }
    let ms = whole
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(ms_part))
        .ok_or_else(|| ParseError::invalid(field, format!("{text} is out of range")))?;
    in_range(ms, field)
}

fn in_range(ms: i64, field: &str) -> Result<i64, ParseError> {
    if (0..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(ParseError::invalid(
            field,
            format!("{ms} ms is outside 1970..9999"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON value from its text.
    fn json(text: &str) -> Json<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn every_unit_and_format_to_the_same_milliseconds() {
        assert_eq!(seconds(&json("1600112492"), "t"), Ok(1_600_112_492_000));
        assert_eq!(
            seconds(&json(r#""1464824548""#), "t"),
            Ok(1_464_824_548_000)
        );
        // Mailgun float seconds: exact, cut to the millisecond.
        assert_eq!(
            seconds(&json("1534108637.153125"), "t"),
            Ok(1_534_108_637_153)
        );
        assert_eq!(
            seconds(&json(r#""1606753101.9""#), "t"),
            Ok(1_606_753_101_900)
        );
        assert_eq!(seconds(&json("1.6e9"), "t"), Ok(1_600_000_000_000));
        assert_eq!(millis(&json("1520363423000"), "t"), Ok(1_520_363_423_000));
        assert_eq!(
            text("2016-04-27T16:28:50.3963933-04:00", "t"),
            Ok(1_461_788_930_396)
        );
        assert_eq!(text("2017-08-05T00:41:02.669Z", "t"), Ok(1_501_893_662_669));
        assert_eq!(
            text("2024-02-22 23:41:11.894719+00:00", "t"),
            Ok(1_708_645_271_894)
        );
        assert_eq!(
            text("Tue, 1 Jul 2003 10:52:37 +0200", "t"),
            Ok(1_057_049_557_000)
        );
        assert_eq!(
            seconds_or_text(&json(r#""2016-04-18T14:25:07.000+00:00""#), "t"),
            Ok(1_460_989_507_000)
        );
        assert_eq!(
            seconds_or_text(&json(r#""1460989507""#), "t"),
            Ok(1_460_989_507_000)
        );
    }

    #[test]
    fn garbage_and_out_of_range_are_errors_not_panics() {
        for bad in [
            r#""abc""#,
            r#""""#,
            "true",
            "null",
            "-5",
            r#""-0.5""#,
            "1e300",
            "18446744073709551615",
            r#""99999999999999999999""#,
            r#""1.2.3""#,
            r#""12.x""#,
            "253402300800",
        ] {
            assert!(seconds(&json(bad), "t").is_err(), "{bad}");
        }
        assert!(millis(&json("1.5"), "t").is_err());
        assert!(millis(&json("-1"), "t").is_err());
        assert!(text("2016-13-45T00:00:00Z", "t").is_err());
        assert!(
            text("2018-03-06 11:10:23", "t").is_err(),
            "no zone: ambiguous"
        );
    }
}
