//! The `Retry-After` response header (RFC 9110 §10.2.3): how long a target that answered 429
//! or 503 asks us to wait, either as delay-seconds (`120`) or as an HTTP-date (`Wed, 21 Oct
//! 2026 07:28:00 GMT`, or the two obsolete forms recipients must still read).
//!
//! A target's answer is honoured but bounded: clamped below so a `0` does not turn the retry
//! loop into a hammer, and above so a `Retry-After: 31536000` does not park a delivery for a
//! year (the retry schedule still decides when to give up).

use std::time::{Duration, UNIX_EPOCH};

/// The wait `value` asks for, clamped to `[min, max]`, or `None` when `value` is neither
/// delay-seconds nor an HTTP-date (the caller then follows its schedule alone).
///
/// An HTTP-date is read relative to `now_ms` (Unix milliseconds, from the caller's clock); a
/// date already past asks for no wait, so it gives `min`. Delay-seconds too large for any
/// clock give `max`. If `min > max`, `max` wins: the upper bound is the one that protects
/// deliveries.
pub fn parse_retry_after(
    value: &str,
    now_ms: i64,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let value = value.trim();
    let asked = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits, so the only parse failure is overflow: an absurdly long wait.
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let date = httpdate::parse_http_date(value).ok()?;
        let date_ms = date.duration_since(UNIX_EPOCH).ok()?.as_millis();
        let wait_ms = i128::try_from(date_ms).ok()? - i128::from(now_ms);
        Duration::from_millis(u64::try_from(wait_ms.max(0)).unwrap_or(u64::MAX))
    };
    Some(asked.max(min).min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);
    const MIN: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(3600);
    /// Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example date, in Unix milliseconds
    /// (`calendar.timegm` in Python gives 784111777).
    const NOW_MS: i64 = 784_111_777_000;

    #[test]
    fn reads_delay_seconds_and_every_http_date_form() {
        let cases = [
            ("120", Some(120 * SECOND)),
            (" 30 ", Some(30 * SECOND)),
            ("3600", Some(MAX)),
            ("3601", Some(MAX)),
            ("0", Some(MIN)),
            ("00000000000000000000007", Some(7 * SECOND)),
            ("99999999999999999999999999", Some(MAX)),
            // Two minutes after NOW_MS, in each of the three HTTP-date forms.
            ("Sun, 06 Nov 1994 08:51:37 GMT", Some(120 * SECOND)),
            ("Sunday, 06-Nov-94 08:51:37 GMT", Some(120 * SECOND)),
            ("Sun Nov  6 08:51:37 1994", Some(120 * SECOND)),
            // The date is now, or past: no wait asked, so the minimum.
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(MIN)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(MIN)),
            // Years ahead: the maximum.
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(MAX)),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_retry_after(value, NOW_MS, MIN, MAX),
                expected,
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_http_date_counts_from_the_injected_now_to_the_millisecond() {
        let date = "Sun, 06 Nov 1994 08:51:37 GMT";
        let wide = Duration::from_secs(86_400);
        assert_eq!(
            parse_retry_after(date, NOW_MS + 250, Duration::ZERO, wide),
            Some(Duration::from_millis(119_750))
        );
        assert_eq!(
            parse_retry_after(date, NOW_MS - 60_000, Duration::ZERO, wide),
            Some(180 * SECOND)
        );
        assert_eq!(
            parse_retry_after(date, i64::MIN, Duration::ZERO, wide),
            Some(wide)
        );
        assert_eq!(
            parse_retry_after(date, i64::MAX, Duration::ZERO, wide),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_is_none() {
        for value in [
            "",
            "   ",
            "-5",
            "+5",
            "1.5",
            "5s",
            "120, 60",
            "0x10",
            "soon",
            "٣",
            "Sun, 06 Nov 1994 08:51:37 UTC",
            "Sun, 06 Nov 1994 25:51:37 GMT",
            "Sun, 31 Feb 1994 08:51:37 GMT",
            "2026-10-21T07:28:00Z",
        ] {
            assert_eq!(
                parse_retry_after(value, NOW_MS, MIN, MAX),
                None,
                "{value:?}"
            );
        }
    }

    #[test]
    fn inverted_bounds_keep_the_upper_one() {
        let (min, max) = (10 * SECOND, 5 * SECOND);
        assert_eq!(parse_retry_after("1", NOW_MS, min, max), Some(max));
        assert_eq!(parse_retry_after("60", NOW_MS, min, max), Some(max));
    }
}
