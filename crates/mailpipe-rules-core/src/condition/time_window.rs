//! The local time window: the event happened between `from` and `to` on one of `days`, in
//! an IANA time zone (`Europe/Paris`), daylight saving included.
//!
//! The time is the event's own (`occurred_at`, else `received_at`), never a clock, so a
//! replay decides the same. A window whose `to` is before its `from` wraps midnight
//! (`22:00`–`06:00`); its day is the local day of the event itself.

use chrono::{DateTime, Datelike, Timelike, Weekday};
use chrono_tz::Tz;

use super::EvalContext;
use crate::compile::Sink;
use crate::error::RuleErrorKind;
use crate::file::RawTimeWindow;
use crate::vars::event_time_ms;

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

#[derive(Debug, Clone)]
pub(crate) struct TimeWindow {
    zone: Tz,
    /// Minutes after local midnight; `from` inclusive, `to` exclusive.
    from: u32,
    to: u32,
    days: Vec<Weekday>,
}

impl TimeWindow {
    pub(crate) fn compile(raw: &RawTimeWindow, sink: &mut Sink<'_>) -> Option<TimeWindow> {
        let zone = raw.zone.get_ref().parse::<Tz>().ok();
        if zone.is_none() {
            sink.at(
                raw.zone.span(),
                RuleErrorKind::UnknownTimeZone(raw.zone.get_ref().clone()),
            );
        }
        let mut minutes = |text: &toml::Spanned<String>| {
            let parsed = parse_time_of_day(text.get_ref());
            if parsed.is_none() {
                sink.at(
                    text.span(),
                    RuleErrorKind::InvalidTimeOfDay(text.get_ref().clone()),
                );
            }
            parsed
        };
        let (from, to) = (minutes(&raw.from), minutes(&raw.to));
        let mut days = Vec::new();
        for day in raw.days.iter().flatten() {
            match DAYS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(day.get_ref()))
            {
                Some((_, weekday)) => days.push(*weekday),
                None => sink.at(day.span(), RuleErrorKind::InvalidDay(day.get_ref().clone())),
            }
        }
        if raw.days.as_ref().is_some_and(|d| d.is_empty()) {
            sink.at(
                raw.zone.span(),
                RuleErrorKind::Invalid("time_window.days is empty".into()),
            );
            return None;
        }
        if raw.days.is_none() {
            days = DAYS.iter().map(|(_, d)| *d).collect();
        }
        let ok = days.len() == raw.days.as_ref().map_or(7, Vec::len);
        Some(TimeWindow {
            zone: zone?,
            from: from?,
            to: to?,
            days,
        })
        .filter(|_| ok)
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        let Some(utc) = DateTime::from_timestamp_millis(event_time_ms(ctx.event)) else {
            return (false, ctx.detail(|| "event time out of range".into()));
        };
        let local = utc.with_timezone(&self.zone);
        let minute = local.hour() * 60 + local.minute();
        let in_hours = if self.from <= self.to {
            self.from <= minute && minute < self.to
        } else {
            minute >= self.from || minute < self.to
        };
        let on_day = self.days.contains(&local.weekday());
        let detail = ctx.detail(|| {
            format!(
                "local time {} in {}",
                local.format("%a %H:%M"),
                self.zone.name()
            )
        });
        (in_hours && on_day, detail)
    }
}

/// `HH:MM` (24-hour; `24:00` is the end of the day) as minutes after midnight.
fn parse_time_of_day(text: &str) -> Option<u32> {
    let (hours, minutes) = text.trim().split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= 24 * 60).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_for, event};
    use crate::error::LineIndex;
    use mailpipe_model::EventType;
    use toml::Spanned;

    fn window(
        zone: &str,
        from: &str,
        to: &str,
        days: Option<&[&str]>,
    ) -> (Option<TimeWindow>, usize) {
        let s = |t: &str| Spanned::new(0..1, t.to_string());
        let raw = RawTimeWindow {
            zone: s(zone),
            from: s(from),
            to: s(to),
            days: days.map(|d| d.iter().map(|t| s(t)).collect()),
        };
        let index = LineIndex::new("x");
        let mut sink = Sink::new(&index, 0);
        let compiled = TimeWindow::compile(&raw, &mut sink);
        (compiled, sink.errors.len())
    }

    #[test]
    fn local_hours_and_days_with_daylight_saving() {
        // 2026-07-01T07:30:00Z is a Wednesday, 09:30 in Paris (UTC+2 in summer).
        let mut e = event(EventType::Opened);
        e.occurred_at = 1_782_891_000_000;
        let ctx = context_for(&e);
        let check = |from, to, days| {
            window("Europe/Paris", from, to, days)
                .0
                .unwrap()
                .evaluate(&ctx)
                .0
        };
        assert!(check("09:00", "17:00", None));
        assert!(!check("10:00", "17:00", None));
        assert!(check("09:00", "17:00", Some(&["wed"])));
        assert!(!check("09:00", "17:00", Some(&["sat", "sun"])));
        // Wrapping midnight: 22:00–10:00 holds at 09:30.
        assert!(check("22:00", "10:00", None));
        assert!(!check("22:00", "09:00", None));
    }

    #[test]
    fn bad_zone_time_and_day_are_each_reported() {
        let (compiled, errors) = window("Mars/Olympus", "9:00", "25:00", Some(&["mon", "funday"]));
        assert!(compiled.is_none());
        assert_eq!(errors, 4);
        assert_eq!(window("UTC", "00:00", "24:00", Some(&[])).1, 1);
    }
}
