//! What happened to every post, counted: the progress line, the final summary and the
//! machine-readable summary (`--summary-json`) the end-to-end tests and `make run` compare
//! with ClickHouse. Pure bookkeeping, no IO.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use mailpipe_model::{EventType, Provider};
use serde::Serialize;

use crate::plan::Bad;
use crate::render::WebhookRequest;

/// How one post ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the receiver has the raw request in Kafka.
    Accepted { status: u16 },
    /// A status an ESP does not retry (4xx other than 408 and 429).
    Rejected { status: u16 },
    /// No 2xx within the attempts or time allowed; `last` says what the last attempt got.
    GaveUp { last: String },
    /// Stopped (Ctrl-C) before an answer.
    Interrupted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// Requests in the plan (originals).
    pub planned: usize,
    /// Posts made, duplicates included.
    pub sent: usize,
    /// Of which re-posts of an earlier request.
    pub duplicates: usize,
    /// Posts answered 2xx.
    pub accepted: usize,
    /// Posts refused with a final status, by status code.
    pub rejected: BTreeMap<u16, usize>,
    pub gave_up: usize,
    pub interrupted: usize,
    /// Posts never started (the run was stopped).
    pub not_sent: usize,
    /// Attempts beyond the first (after no answer, a 5xx, a 408 or a 429).
    pub retries: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    /// ESP events in the plan.
    pub planned: usize,
    /// ESP events in posted originals.
    pub sent: usize,
    /// Distinct ESP events in at least one accepted post.
    pub accepted: usize,
}

/// Posts of one provider answered 2xx, and how many distinct requests they were: the
/// difference is accepted duplicates (for Mailgun, verify rejects those as `replayed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AcceptedRequests {
    pub posts: usize,
    pub distinct: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub seed: u64,
    pub url: String,
    pub bad: bool,
    pub elapsed_ms: u64,
    pub requests: RequestCounts,
    pub events: EventCounts,
    /// Distinct events accepted, by provider and canonical type: what must end up in
    /// `email_events` (`FINAL`), exactly once each.
    pub accepted: BTreeMap<Provider, BTreeMap<EventType, usize>>,
    pub accepted_requests: BTreeMap<Provider, AcceptedRequests>,
    /// `--bad`: distinct spoiled requests accepted by the receiver, by kind and provider.
    /// Forged → `mail.rejected` (`bad_signature`), stale → `mail.rejected`
    /// (`stale_timestamp`), malformed → `mail.dlq`; none reaches ClickHouse.
    pub bad_accepted: BTreeMap<Bad, BTreeMap<Provider, usize>>,
    /// The canonical `event_id` of every distinct event accepted (good requests only):
    /// the exact set `email_events` and `mail.events.unique` must hold.
    pub accepted_event_ids: BTreeSet<String>,
}

/// Accumulates outcomes into a [`Summary`].
#[derive(Debug, Clone, Default)]
pub struct Tally {
    summary: Summary,
    accepted_batches: BTreeSet<usize>,
    scheduled_posts: usize,
}

impl Tally {
    /// `scheduled_posts`: the requests plus their planned duplicates.
    pub fn new(
        seed: u64,
        url: &str,
        bad: bool,
        planned_requests: usize,
        scheduled_posts: usize,
        planned_events: usize,
    ) -> Tally {
        let mut summary = Summary {
            seed,
            url: url.to_string(),
            bad,
            ..Summary::default()
        };
        summary.requests.planned = planned_requests;
        summary.events.planned = planned_events;
        Tally {
            summary,
            accepted_batches: BTreeSet::new(),
            scheduled_posts,
        }
    }

    /// A post that ended with `outcome` after `attempts` attempts.
    pub fn record(
        &mut self,
        request: &WebhookRequest,
        duplicate: bool,
        attempts: u32,
        outcome: &Outcome,
    ) {
        let s = &mut self.summary;
        s.requests.sent += 1;
        s.requests.retries += attempts.saturating_sub(1) as usize;
        if duplicate {
            s.requests.duplicates += 1;
        } else {
            s.events.sent += request.events.len();
        }
        match outcome {
            Outcome::Accepted { .. } => {
                s.requests.accepted += 1;
                let per_provider = s.accepted_requests.entry(request.provider).or_default();
                per_provider.posts += 1;
                if self.accepted_batches.insert(request.batch) {
                    per_provider.distinct += 1;
                    s.events.accepted += request.events.len();
                    let types = s.accepted.entry(request.provider).or_default();
                    for event in &request.events {
                        *types.entry(event.event_type).or_default() += 1;
                    }
                    if request.bad.is_none() {
                        s.accepted_event_ids.extend(request.canonical_event_ids());
                    }
                    if let Some(bad) = request.bad {
                        *s.bad_accepted
                            .entry(bad)
                            .or_default()
                            .entry(request.provider)
                            .or_default() += 1;
                    }
                }
            }
            Outcome::Rejected { status } => *s.requests.rejected.entry(*status).or_default() += 1,
            Outcome::GaveUp { .. } => s.requests.gave_up += 1,
            Outcome::Interrupted => s.requests.interrupted += 1,
        }
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    pub fn finish(mut self, elapsed_ms: u64) -> Summary {
        self.summary.elapsed_ms = elapsed_ms;
        self.summary.requests.not_sent = self
            .scheduled_posts
            .saturating_sub(self.summary.requests.sent);
        self.summary
    }
}

impl Summary {
    /// Whether every planned post was made and got a final answer (none gave up, none was
    /// interrupted or left unsent).
    pub fn complete(&self) -> bool {
        self.requests.gave_up == 0 && self.requests.interrupted == 0 && self.requests.not_sent == 0
    }

    /// One line for the progress display.
    pub fn progress_line(&self, in_retry: usize) -> String {
        format!(
            "sent {}/{} requests ({} duplicates), events {}/{}, accepted {}, rejected {}, retrying {}, gave up {}",
            self.requests.sent,
            self.requests.planned + self.requests.duplicates,
            self.requests.duplicates,
            self.events.sent,
            self.events.planned,
            self.requests.accepted,
            self.requests.rejected.values().sum::<usize>(),
            in_retry,
            self.requests.gave_up,
        )
    }
}

/// The human summary printed at the end.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.requests;
        let secs = self.elapsed_ms as f64 / 1000.0;
        writeln!(
            f,
            "send-samples to {} (seed {}{}): {:.1} s",
            self.url,
            self.seed,
            if self.bad { ", --bad" } else { "" },
            secs
        )?;
        writeln!(
            f,
            "  requests sent:   {} ({} originals + {} duplicates, {} retries){}",
            r.sent,
            r.sent - r.duplicates,
            r.duplicates,
            r.retries,
            if secs > 0.0 {
                format!(", {:.0}/s", r.sent as f64 / secs)
            } else {
                String::new()
            }
        )?;
        writeln!(f, "  ESP events sent: {}", self.events.sent)?;
        writeln!(
            f,
            "  accepted (2xx):  {} requests, {} distinct events",
            r.accepted, self.events.accepted
        )?;
        let rejected: Vec<String> = r
            .rejected
            .iter()
            .map(|(status, n)| format!("{status} × {n}"))
            .collect();
        writeln!(
            f,
            "  rejected:        {}",
            if rejected.is_empty() {
                "none".to_string()
            } else {
                rejected.join(", ")
            }
        )?;
        write!(f, "  gave up:         {}", r.gave_up)?;
        if r.interrupted > 0 {
            write!(f, "\n  interrupted:     {}", r.interrupted)?;
        }
        if r.not_sent > 0 {
            write!(f, "\n  not sent:        {}", r.not_sent)?;
        }
        for (bad, providers) in &self.bad_accepted {
            let total: usize = providers.values().sum();
            let expected = match bad {
                Bad::Forged => "mail.rejected, bad_signature",
                Bad::Stale => "mail.rejected, stale_timestamp",
                Bad::Malformed => "mail.dlq",
            };
            write!(
                f,
                "\n  {:<9}        {total} accepted by the receiver (expected on {expected})",
                bad.as_str()
            )?;
        }
        if let Some(mailgun) = self.accepted_requests.get(&Provider::Mailgun) {
            let replays = mailgun.posts - mailgun.distinct;
            if replays > 0 {
                write!(
                    f,
                    "\n  mailgun:         {replays} duplicate posts reuse their token: verify rejects them as replayed"
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::DeclaredEvent;

    fn request(
        batch: usize,
        provider: Provider,
        types: &[EventType],
        bad: Option<Bad>,
    ) -> WebhookRequest {
        WebhookRequest {
            provider,
            source: provider.to_string(),
            path: format!("/webhooks/{provider}"),
            headers: vec![],
            body: vec![],
            events: types
                .iter()
                .enumerate()
                .map(|(i, t)| DeclaredEvent {
                    event_type: *t,
                    id: format!("{batch}-{i}"),
                })
                .collect(),
            bad,
            batch,
        }
    }

    #[test]
    fn duplicates_count_as_posts_not_as_events() {
        let mut tally = Tally::new(1, "http://x", false, 2, 4, 3);
        let a = request(
            0,
            Provider::Sendgrid,
            &[EventType::Delivered, EventType::Opened],
            None,
        );
        let b = request(1, Provider::Mailgun, &[EventType::Delivered], None);
        let ok = Outcome::Accepted { status: 200 };
        tally.record(&a, false, 1, &ok);
        tally.record(&a, true, 3, &ok);
        tally.record(&b, false, 1, &Outcome::Rejected { status: 404 });
        tally.record(&b, true, 2, &ok);
        let s = tally.finish(1000);
        assert_eq!(s.requests.sent, 4);
        assert_eq!(s.requests.duplicates, 2);
        assert_eq!(s.requests.accepted, 3);
        assert_eq!(s.requests.retries, 3);
        assert_eq!(s.requests.rejected, [(404, 1)].into());
        assert_eq!(s.events.sent, 3);
        assert_eq!(
            s.events.accepted, 3,
            "the duplicate of b carried its event in"
        );
        assert_eq!(s.accepted[&Provider::Sendgrid][&EventType::Opened], 1);
        assert_eq!(
            s.accepted_requests[&Provider::Sendgrid],
            AcceptedRequests {
                posts: 2,
                distinct: 1
            }
        );
        assert!(s.complete());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["accepted"]["sendgrid"]["delivered"], 1);
        assert_eq!(json["requests"]["rejected"]["404"], 1);
    }

    #[test]
    fn bad_requests_are_counted_by_kind_and_carry_no_events() {
        let mut tally = Tally::new(1, "http://x", true, 2, 4, 2);
        let forged = request(0, Provider::Resend, &[], Some(Bad::Forged));
        tally.record(&forged, false, 1, &Outcome::Accepted { status: 200 });
        tally.record(&forged, true, 1, &Outcome::Accepted { status: 200 });
        let stale = request(1, Provider::Resend, &[], Some(Bad::Stale));
        tally.record(
            &stale,
            false,
            8,
            &Outcome::GaveUp {
                last: "HTTP 503".into(),
            },
        );
        let s = tally.finish(10);
        assert_eq!(s.bad_accepted[&Bad::Forged][&Provider::Resend], 1);
        assert!(!s.bad_accepted.contains_key(&Bad::Stale));
        assert_eq!(s.events.accepted, 0);
        assert!(!s.complete());
        assert!(s.to_string().contains("gave up:         1"), "{s}");
    }
}
