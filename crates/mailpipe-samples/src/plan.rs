//! What to send, decided from the seed alone: how many events of which provider and type,
//! how they are grouped into requests, each event's ids and recipient, which requests are
//! posted twice and, with `--bad`, how each request is spoiled. Pure and deterministic:
//! the same [`PlanOptions`] always give the same [`Plan`]. Bodies and signatures are made
//! later, at send time, by [`crate::render`].

use mailpipe_model::{EventType, Provider};

use crate::fake;
use crate::providers;
use crate::rng::Rng;

/// One event type a provider sends, by its own name (plus the detail that decides the
/// canonical type, e.g. SendGrid `bounce/blocked`), and the canonical type mailpipe maps
/// it to.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    pub event_type: EventType,
}

/// How a request is spoiled in `--bad` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bad {
    /// Signed with the wrong key (or wrong credentials): verify rejects it, `bad_signature`.
    Forged,
    /// Correctly signed, but the signed timestamp is outside the source's tolerance: verify
    /// rejects it, `stale_timestamp`. Only for providers that sign a timestamp.
    Stale,
    /// Correctly signed, but the body cannot be parsed: verify passes it, normalize
    /// dead-letters it.
    Malformed,
}

impl Bad {
    pub fn as_str(self) -> &'static str {
        match self {
            Bad::Forged => "forged",
            Bad::Stale => "stale",
            Bad::Malformed => "malformed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub seed: u64,
    /// ESP events in total (canonical events: an SES message to two recipients is two),
    /// spread evenly over `providers`.
    pub count: usize,
    pub providers: Vec<Provider>,
    /// Fraction of requests posted a second time, unchanged (0..=1).
    pub duplicates: f64,
    /// Every request spoiled (see [`Bad`]) instead of correct.
    pub bad: bool,
    /// Events are dated in the ten minutes before this (Unix milliseconds).
    pub now_ms: i64,
}

/// One planned ESP event.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedEvent {
    pub kind: &'static Kind,
    /// The provider's id of the event where it has one (`sg_event_id`, SparkPost
    /// `event_id`, the Resend `svix-id`, MailerSend `data.id`, Postal `uuid`, generic
    /// `event_id`, Mailgun `event-data.id`); for the others what makes it unique (the
    /// message id; SES: SNS `MessageId:recipient`).
    pub id: String,
    pub message_id: String,
    pub recipient: String,
    pub occurred_at_ms: i64,
    pub campaign: Option<&'static str>,
    /// Seeds the event's other details (links, user agents, IPs…).
    pub seed: u64,
}

/// One planned request.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Position in [`Plan::batches`].
    pub index: usize,
    pub provider: Provider,
    pub events: Vec<PlannedEvent>,
    /// Sent as a JSON array, for providers that send either one object or an array.
    pub array: bool,
    /// Posted a second time, byte for byte, as an ESP retry would.
    pub duplicate: bool,
    pub bad: Option<Bad>,
    /// The request's own id where the provider has one: SNS `MessageId`, the Mailgun
    /// signature token, SparkPost's `X-MessageSystems-Batch-ID`.
    pub request_id: String,
    pub seed: u64,
}

/// One post: a batch, first or second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub batch: usize,
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub batches: Vec<Batch>,
    /// Posting order: every batch once, each duplicate a few posts after its original.
    pub schedule: Vec<Slot>,
}

impl Plan {
    pub fn events(&self) -> usize {
        self.batches.iter().map(|b| b.events.len()).sum()
    }
}

/// The plan for `options`. Providers get `count / providers` events each (the first ones one
/// more); within a provider the event types follow its catalog round-robin, so every type is
/// present once a provider has as many events as types.
pub fn plan(options: &PlanOptions) -> Plan {
    let mut rng = Rng::new(options.seed);
    let providers: Vec<Provider> = Provider::ALL
        .into_iter()
        .filter(|p| options.providers.contains(p))
        .collect();
    let mut batches = Vec::new();
    for (i, &provider) in providers.iter().enumerate() {
        let share =
            options.count / providers.len() + usize::from(i < options.count % providers.len());
        let mut provider_rng = rng.fork(i as u64 + 1);
        plan_provider(provider, share, options, &mut provider_rng, &mut batches);
    }
    rng.shuffle(&mut batches);
    let mut bad_cursor = std::collections::BTreeMap::<Provider, usize>::new();
    for (index, batch) in batches.iter_mut().enumerate() {
        batch.index = index;
        batch.duplicate = rng.chance(options.duplicates);
        if options.bad {
            let kinds = bad_kinds(batch.provider);
            let cursor = bad_cursor.entry(batch.provider).or_default();
            batch.bad = Some(kinds[*cursor % kinds.len()]);
            *cursor += 1;
        }
    }
    let schedule = schedule(&batches, &mut rng);
    Plan { batches, schedule }
}

/// The spoilings that apply to `provider`: stale only where a timestamp is signed.
pub fn bad_kinds(provider: Provider) -> &'static [Bad] {
    if providers::signs_timestamp(provider) {
        &[Bad::Forged, Bad::Stale, Bad::Malformed]
    } else {
        &[Bad::Forged, Bad::Malformed]
    }
}

fn plan_provider(
    provider: Provider,
    share: usize,
    options: &PlanOptions,
    rng: &mut Rng,
    batches: &mut Vec<Batch>,
) {
    let kinds = providers::kinds(provider);
    let shape = providers::shape(provider);
    let mut next_kind = 0usize;
    let mut remaining = share;
    while remaining > 0 {
        let array = rng.chance(shape.array_chance);
        let kind = &kinds[next_kind % kinds.len()];
        let size = if provider == Provider::Ses {
            // One SES message, one event type; a delivery may name two recipients (fan-out).
            if shape.fan_out.contains(&kind.name) && rng.chance(0.3) {
                2
            } else {
                1
            }
        } else if array {
            rng.between(1, shape.max_batch as u64) as usize
        } else {
            1
        };
        let size = size.min(remaining);
        let request_id = providers::request_id(provider, rng);
        let mut events = Vec::with_capacity(size);
        for _ in 0..size {
            let kind = &kinds[next_kind % kinds.len()];
            if provider != Provider::Ses {
                next_kind += 1;
            }
            let (id, message_id) = providers::ids(provider, rng);
            events.push(PlannedEvent {
                kind,
                id,
                message_id,
                recipient: fake::recipient(rng),
                occurred_at_ms: options.now_ms - rng.below(600_000) as i64,
                campaign: rng.pick(fake::CAMPAIGNS),
                seed: rng.next_u64(),
            });
        }
        if provider == Provider::Ses {
            next_kind += 1;
            // One SES message: its message id, time and campaign are shared by the
            // recipients, and each recipient is one event.
            let first = events[0].clone();
            for event in &mut events {
                event.message_id = first.message_id.clone();
                event.occurred_at_ms = first.occurred_at_ms;
                event.campaign = first.campaign;
                event.id = format!("{request_id}:{}", event.recipient);
            }
        }
        remaining -= events.len();
        batches.push(Batch {
            index: 0,
            provider,
            events,
            array,
            duplicate: false,
            bad: None,
            request_id,
            seed: rng.next_u64(),
        });
    }
}

/// Originals in plan order; each duplicate 1 to 16 posts after its original (an ESP retry
/// arrives soon, possibly while the first copy is still in flight).
fn schedule(batches: &[Batch], rng: &mut Rng) -> Vec<Slot> {
    let mut keyed: Vec<(u64, Slot)> = Vec::with_capacity(batches.len() * 2);
    for (i, batch) in batches.iter().enumerate() {
        let position = i as u64 * 2;
        keyed.push((
            position,
            Slot {
                batch: i,
                duplicate: false,
            },
        ));
        if batch.duplicate {
            keyed.push((
                position + rng.between(1, 16) * 2 + 1,
                Slot {
                    batch: i,
                    duplicate: true,
                },
            ));
        }
    }
    keyed.sort_by_key(|(position, _)| *position);
    keyed.into_iter().map(|(_, slot)| slot).collect()
}
