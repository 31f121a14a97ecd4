//! Durations as delivery settings write them (`500ms`, `5s`, `2m`, `1h`, `1d`): retry
//! delays, cooldowns, timeouts.
//!
//! The grammar is the rules engine's (`mailpipe_rules_core::parse_duration_ms`: one whole
//! number, one unit, no compound `1h30m`), so an operator writes durations one way
//! everywhere. It is repeated here rather than imported because importing it would link the
//! whole rules engine (CEL, templates, time zones) into every user of this small crate.

use std::time::Duration;

use crate::DeliveryError;

/// The longest duration a delivery setting may name. A single retry delay or cooldown of
/// more than a week is a typo, and the cap keeps millisecond arithmetic far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The duration `text` names: one whole number and one of `ms`, `s`, `m`, `h`, `d`,
/// surrounding whitespace ignored. Refused (with the text quoted) when it is anything else or
/// longer than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, DeliveryError> {
    parse_ms(text.trim())
        .map(Duration::from_millis)
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| DeliveryError::InvalidDuration {
            text: text.to_string(),
        })
}

fn parse_ms(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 24 * 3_600_000,
        _ => return None,
    };
    number.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("2m", Duration::from_secs(120)),
            ("8h", Duration::from_secs(8 * 3600)),
            ("1d", Duration::from_secs(86_400)),
            ("7d", MAX_DURATION),
            (" 0s ", Duration::ZERO),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn refuses_anything_else_and_quotes_it() {
        for text in [
            "",
            "s",
            "10",
            "1h30m",
            "-5s",
            "1.5h",
            "5 s",
            "5S",
            "3w",
            "8d",
            "5sec",
            "99999999999999999999s",
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DeliveryError::InvalidDuration {
                    text: text.to_string()
                }),
                "{text}"
            );
        }
    }
}
