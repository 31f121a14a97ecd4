//! Durations as rules write them (`90s`, `30m`, `72h`, `7d`, `2w`, `500ms`), in milliseconds.
//!
//! One number and one unit: compound forms like `1h30m` are refused rather than guessed at.
//! Durations are capped at a year, so window arithmetic on `i64` milliseconds cannot
//! overflow.

/// The longest duration a rule may name: 366 days.
pub const MAX_DURATION_MS: u64 = 366 * 24 * 3_600_000;

/// Milliseconds of `text`, or `None` when it is not one number and a known unit, or is
/// longer than [`MAX_DURATION_MS`].
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit_ms: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 24 * 3_600_000,
        "w" => 7 * 24 * 3_600_000,
        _ => return None,
    };
    let total = number.checked_mul(unit_ms)?;
    (total <= MAX_DURATION_MS).then_some(total)
}

/// A duration as a short human text, for explanations (`72h`, `90s`, `1500ms`).
pub fn format_duration_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (7 * 24 * 3_600_000, "w"),
        (24 * 3_600_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    if ms == 0 {
        return "0s".to_string();
    }
    for (unit_ms, unit) in UNITS {
        if ms.is_multiple_of(unit_ms) {
            return format!("{}{unit}", ms / unit_ms);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        let cases = [
            ("500ms", 500),
            ("90s", 90_000),
            ("30m", 1_800_000),
            ("72h", 259_200_000),
            ("7d", 604_800_000),
            ("2w", 1_209_600_000),
            (" 0s ", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration_ms(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for text in [
            "",
            "h",
            "10",
            "1h30m",
            "-5m",
            "1.5h",
            "3y",
            "400d",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration_ms(text), None, "{text}");
        }
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format_duration_ms(259_200_000), "3d");
        assert_eq!(format_duration_ms(3_600_000 * 5), "5h");
        assert_eq!(format_duration_ms(1_500), "1500ms");
        assert_eq!(format_duration_ms(0), "0s");
    }
}
