//! `mailpipe replay --from T --to T [--source S] [--provider P] [--dry-run]`: re-derives
//! the events of the raw requests received in a time range, after a parser fix, and puts
//! the corrected ones in place.
//!
//! How:
//! 1. Read `mail.raw` from the first offset at `from` to the last before `to` (per
//!    partition, as of the start), verify each request as of its receipt (the verify
//!    stage's own verifier, acting on nothing: [`Reverifier`]) and parse it (normalize-core).
//! 2. Compare each event with what `email_events` holds for its id, and find the rows of
//!    these requests no longer produced: unchanged, changed, new or obsolete ([`classify`]).
//! 3. Write the changed and new events to `mail.events.unique` with the
//!    `mailpipe-correction: <revision>` header (not through dedupe, which would drop them
//!    as seen); the aggregate stage loads them with that revision.
//! 4. Once they are loaded, delete the rows they supersede (same event id, lower revision)
//!    and the obsolete ones (a mutation, waited for), then recompute the one-minute windows
//!    they touched: `email_events` keeps one row per event and `email_stats_1m` stays equal
//!    to it.
//!
//! Resumable: progress (offsets done, what to delete, the windows) is saved after each batch
//! in the state file (`--state`); running the same command again continues from there. A
//! batch written again is harmless: its corrections carry the same revision and collapse.
//! `--dry-run` reads and compares only, and reports what would change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use mailpipe_avro::records::RawRecord;
use mailpipe_avro::{AvroCodec, TopicSchema, EMAIL_EVENT_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames, CORRECTION_HEADER};
use mailpipe_model::privacy::recipient_hash;
use mailpipe_model::{EmailEvent, Provider};
use mailpipe_settings::Settings;
use mailpipe_stage_2_verify::replay::{Reverified, Reverifier};
use mailpipe_stage_3_normalize::enrich::Enricher;
use mailpipe_stage_3_normalize::parse_verified;
use mailpipe_stage_5_aggregate::privacy::RecipientHasher;
use mailpipe_stage_5_aggregate::row::EventRow;
use mailpipe_stage_5_aggregate::windows::{
    delete_statements, recompute_statements, window_ranges, window_start,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Start of the range, by the receiver's receipt time: RFC 3339 or Unix seconds.
    #[arg(long)]
    from: String,
    /// End of the range (exclusive).
    #[arg(long)]
    to: String,
    /// Only requests of this source.
    #[arg(long)]
    source: Option<String>,
    /// Only requests of this provider.
    #[arg(long)]
    provider: Option<String>,
    /// Read and compare only; report what would change.
    #[arg(long)]
    dry_run: bool,
    /// Progress file (resumable). Default: mailpipe-replay-<from>-<to>.json in the current
    /// directory.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Raw requests per batch (one ClickHouse comparison, one write, one save each).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Seconds to wait for the aggregate stage to load the corrections.
    #[arg(long, default_value_t = 300)]
    wait: u64,
}

/// What the replay found, so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Raw requests read in the range (of the source/provider asked).
    pub requests: u64,
    pub rejected: u64,
    pub control: u64,
    pub unparseable: u64,
    pub undecodable: u64,
    /// Distinct events the requests give now.
    pub events: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub new: u64,
    /// Rows of these requests the parser no longer produces.
    pub obsolete: u64,
}

impl Counts {
    /// Events whose stored row changes: changed, new or removed.
    pub fn would_change(&self) -> u64 {
        self.changed + self.new + self.obsolete
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    Reading,
    Finishing,
    Done,
}

/// The resumable progress of one replay.
#[derive(Debug, Serialize, Deserialize)]
struct ReplayState {
    from_ms: i64,
    to_ms: i64,
    source: Option<String>,
    provider: Option<String>,
    /// The revision corrections carry: Unix ms of the replay's start.
    revision: u64,
    phase: Phase,
    /// Per partition: the next offset to read and the end (exclusive).
    next: BTreeMap<i32, i64>,
    end: BTreeMap<i32, i64>,
    counts: Counts,
    /// Distinct corrected events written.
    written: u64,
    /// Event ids the parser gave (a later copy of one, another request's, is skipped).
    seen: BTreeSet<String>,
    /// Stored event ids of the replayed requests that the parser has not given (yet): the
    /// obsolete ones once the range is read, with their windows.
    obsolete: BTreeMap<String, Vec<u32>>,
    /// Event ids whose rows below `revision` are to be deleted.
    superseded: BTreeSet<String>,
    /// Per partition of `mail.events.unique`: the offset after the last correction written;
    /// the aggregate stage has loaded them (and recomputed their windows) once its group's
    /// committed offsets reach these.
    written_to: BTreeMap<i32, i64>,
    /// Keyed hashes of erased recipients (`privacy_erasures`): their events are not
    /// re-derived.
    #[serde(default)]
    erased: BTreeSet<String>,
    /// One-minute windows to recompute.
    windows: BTreeSet<u32>,
}

impl ReplayState {
    /// Raw requests of the range still to read.
    fn left(&self) -> i64 {
        self.end
            .iter()
            .map(|(p, e)| (e - self.next.get(p).copied().unwrap_or(*e)).max(0))
            .sum()
    }
}

/// What to do with one event id after comparing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged,
    /// Write the event; delete the stored rows of its id (`old_windows`: their minutes).
    Changed {
        old_windows: Vec<u32>,
    },
    New,
}

/// Compares a re-derived event with the stored rows of its id (any revision), ignoring
/// what a replay cannot reproduce (which copy's request and receipt, when it was inserted).
pub fn classify(new: &EventRow, stored: &[EventRow]) -> Verdict {
    if stored.is_empty() {
        return Verdict::New;
    }
    let same = |row: &EventRow| comparable(row) == comparable(new);
    if stored.len() == 1 && same(&stored[0]) {
        return Verdict::Unchanged;
    }
    Verdict::Changed {
        old_windows: stored.iter().map(|r| window_start(r.occurred_at)).collect(),
    }
}

/// The row without the fields a replay does not decide.
fn comparable(row: &EventRow) -> EventRow {
    EventRow {
        raw_request_id: String::new(),
        received_at: 0,
        received_at_ms: 0,
        inserted_at_ms: 0,
        revision: 0,
        ..row.clone()
    }
}

/// One line of progress: done / total, rate, time left.
pub fn progress_line(done: i64, total: i64, elapsed: Duration) -> String {
    let width = 30;
    let fraction = if total > 0 {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let filled = (fraction * width as f64).round() as usize;
    let rate = done as f64 / elapsed.as_secs_f64().max(0.001);
    let eta = if rate > 0.0 {
        format!("{:.0} s", (total - done).max(0) as f64 / rate)
    } else {
        "?".into()
    };
    format!(
        "[{}{}] {:>3.0} % {done}/{total} raw requests, {rate:.0}/s, ETA {eta}",
        "#".repeat(filled),
        " ".repeat(width - filled),
        fraction * 100.0
    )
}

pub async fn run(settings: &Settings, args: &ReplayArgs) -> anyhow::Result<()> {
    let now = mailpipe_stage::now_ms();
    let from_ms = instant_ms(&args.from).context("--from")?;
    let to_ms = instant_ms(&args.to).context("--to")?;
    if from_ms >= to_ms {
        bail!("--from must be before --to");
    }
    if let Some(p) = &args.provider {
        p.parse::<Provider>()
            .map_err(|e| anyhow::anyhow!("--provider: {e}"))?;
    }
    let state_path = args
        .state
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("mailpipe-replay-{from_ms}-{to_ms}.json")));
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let raw_topic = names.name(Topic::Raw);
    let consumer: BaseConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, "mailpipe-replay")
            .set("enable.partition.eof", "false")
            .create()
            .context("creating the Kafka consumer")?;
    let mut state = match (args.dry_run, load_state(&state_path)?) {
        (false, Some(state)) => {
            if (state.from_ms, state.to_ms, &state.source, &state.provider)
                != (from_ms, to_ms, &args.source, &args.provider)
            {
                bail!(
                    "{} belongs to another replay (its range or filters differ); remove it or pass --state",
                    state_path.display()
                );
            }
            eprintln!("resuming from {} ({:?})", state_path.display(), state.phase);
            state
        }
        _ => new_state(&consumer, &raw_topic, from_ms, to_ms, args, now)?,
    };
    if state.phase == Phase::Done {
        report(&state.counts, args.dry_run, state.written);
        return Ok(());
    }

    let codec = AvroCodec::new(&settings.schema_registry.url)?;
    let clickhouse = mailpipe_clickhouse::client(&settings.clickhouse)
        .with_database(&settings.clickhouse.database);
    if state.phase == Phase::Reading && state.erased.is_empty() {
        state.erased = erased_hashes(&clickhouse).await?;
    }
    if state.phase == Phase::Reading {
        read_all(
            settings,
            args,
            &consumer,
            &codec,
            &clickhouse,
            &mut state,
            &state_path,
        )
        .await?;
        close_obsolete(&mut state);
        if args.dry_run {
            report(&state.counts, true, 0);
            return Ok(());
        }
        state.phase = Phase::Finishing;
        save_state(&state_path, &state)?;
    }
    finish(settings, args, &clickhouse, &mut state).await?;
    state.phase = Phase::Done;
    save_state(&state_path, &state)?;
    report(&state.counts, false, state.written);
    Ok(())
}

fn new_state(
    consumer: &BaseConsumer,
    topic: &str,
    from_ms: i64,
    to_ms: i64,
    args: &ReplayArgs,
    now: i64,
) -> anyhow::Result<ReplayState> {
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        bail!("topic {topic} not found");
    }
    let at = |ms: i64| -> anyhow::Result<BTreeMap<i32, i64>> {
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            tpl.add_partition_offset(topic, *p, Offset::Offset(ms))?;
        }
        let found = consumer.offsets_for_times(tpl, timeout)?;
        let mut out = BTreeMap::new();
        for p in &partitions {
            let (_, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
            let offset = match found.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => high,
            };
            out.insert(*p, offset.min(high));
        }
        Ok(out)
    };
    let next = at(from_ms)?;
    let end = at(to_ms)?;
    Ok(ReplayState {
        from_ms,
        to_ms,
        source: args.source.clone(),
        provider: args.provider.clone(),
        revision: u64::try_from(now).unwrap_or(0),
        phase: Phase::Reading,
        next,
        end,
        counts: Counts::default(),
        written: 0,
        seen: BTreeSet::new(),
        obsolete: BTreeMap::new(),
        superseded: BTreeSet::new(),
        written_to: BTreeMap::new(),
        erased: BTreeSet::new(),
        windows: BTreeSet::new(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn read_all(
    settings: &Settings,
    args: &ReplayArgs,
    consumer: &BaseConsumer,
    codec: &AvroCodec,
    clickhouse: &clickhouse::Client,
    state: &mut ReplayState,
    state_path: &Path,
) -> anyhow::Result<()> {
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let raw_topic = names.name(Topic::Raw);
    let unique_topic = names.name(Topic::EventsUnique);
    let mut tpl = TopicPartitionList::new();
    for (p, next) in &state.next {
        if *next < state.end[p] {
            tpl.add_partition_offset(&raw_topic, *p, Offset::Offset(*next))?;
        }
    }
    consumer.assign(&tpl)?;
    let mut deriver = Deriver {
        verifier: Reverifier::new(settings)?,
        enricher: Enricher::from_settings(&settings.enrichment)?,
        hash_key: settings.privacy.hash_key.as_bytes().to_vec(),
        hasher: RecipientHasher::from_settings(&settings.privacy),
    };
    let producer: FutureProducer = mailpipe_kafka::producer_config(&settings.kafka)
        .create()
        .context("creating the Kafka producer")?;
    let schema = codec
        .register(&TopicSchema::new(&unique_topic, EMAIL_EVENT_SCHEMA)?)
        .await?;
    let started = Instant::now();
    let total = state.left();
    let mut last_print = Instant::now();
    while state.left() > 0 {
        // One batch, in partition order.
        let mut batch: Vec<(i32, i64, Vec<u8>)> = Vec::new();
        let poll_started = Instant::now();
        while batch.len() < args.batch && state.left() > batch.len() as i64 {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    let (p, o) = (m.partition(), m.offset());
                    let next = state.next.get(&p).copied().unwrap_or(0);
                    if o >= state.end[&p] || o < next {
                        continue;
                    }
                    batch.push((p, o, m.payload().unwrap_or_default().to_vec()));
                }
                Some(Err(e)) => bail!("reading {raw_topic}: {e}"),
                None if poll_started.elapsed() > Duration::from_secs(30) => {
                    bail!(
                        "no record of {raw_topic} for 30 s while {} remain in the range",
                        state.left()
                    )
                }
                None => {}
            }
            // Transaction markers and aborted records take offsets without records: a
            // partition's end may be reached without a record at its last offset.
            for (p, end) in state.end.clone() {
                let position = consumer
                    .position()?
                    .find_partition(&raw_topic, p)
                    .map(|e| e.offset());
                if let Some(Offset::Offset(pos)) = position {
                    let pending = batch.iter().filter(|(bp, _, _)| *bp == p).count();
                    if pending == 0 && pos >= end {
                        state.next.insert(p, end);
                    }
                }
            }
            if batch.is_empty() && state.left() == 0 {
                break;
            }
        }
        let writes = process_batch(args, codec, clickhouse, &mut deriver, state, &batch).await?;
        if !args.dry_run && !writes.is_empty() {
            let revision = state.revision.to_string();
            let mut sends = Vec::with_capacity(writes.len());
            for event in &writes {
                let payload = schema.encode(event, 1024)?;
                let mut record = FutureRecord::to(&unique_topic).payload(&payload).headers(
                    OwnedHeaders::new().insert(Header {
                        key: CORRECTION_HEADER,
                        value: Some(revision.as_str()),
                    }),
                );
                // Keyed like normalize keys events: by recipient, when there is one.
                if let Some(recipient) = &event.recipient {
                    record = record.key(recipient);
                }
                sends.push(
                    producer
                        .send_result(record)
                        .map_err(|(e, _)| anyhow::anyhow!("writing a correction: {e}"))?,
                );
            }
            for send in sends {
                let delivery = send
                    .await
                    .map_err(|_| anyhow::anyhow!("the producer went away"))?
                    .map_err(|(e, _)| anyhow::anyhow!("writing a correction: {e}"))?;
                let to = state.written_to.entry(delivery.partition).or_default();
                *to = (*to).max(delivery.offset + 1);
            }
            state.written += writes.len() as u64;
        }
        for (p, o, _) in &batch {
            let next = state.next.entry(*p).or_default();
            *next = (*next).max(o + 1);
        }
        if !args.dry_run {
            save_state(state_path, state)?;
        }
        if last_print.elapsed() > Duration::from_millis(200) || state.left() == 0 {
            eprint!(
                "\r{}",
                progress_line(total - state.left(), total, started.elapsed())
            );
            let _ = std::io::stderr().flush();
            last_print = Instant::now();
        }
    }
    eprintln!();
    Ok(())
}

/// What re-derives events: the verifier, and the recipient hashing the aggregate stage
/// applies (`[privacy]`), so events compare as stored and erased recipients stay out.
struct Deriver {
    verifier: Reverifier,
    /// The normalize stage's enrichment, as configured (a replay fills in the enrichment
    /// of events normalized before it existed).
    enricher: Enricher,
    hash_key: Vec<u8>,
    hasher: Option<RecipientHasher>,
}

/// Verifies, parses and compares one batch; answers the events to write.
async fn process_batch(
    args: &ReplayArgs,
    codec: &AvroCodec,
    clickhouse: &clickhouse::Client,
    deriver: &mut Deriver,
    state: &mut ReplayState,
    batch: &[(i32, i64, Vec<u8>)],
) -> anyhow::Result<Vec<EmailEvent>> {
    let Deriver {
        verifier,
        enricher,
        hash_key,
        hasher,
    } = deriver;
    let (hash_key, hasher) = (hash_key.as_slice(), hasher.as_ref());
    let mut events: Vec<EmailEvent> = Vec::new();
    let mut requests: Vec<String> = Vec::new();
    for (_, _, payload) in batch {
        let raw: RawRecord = match codec.decode(payload).await {
            Ok(raw) => raw,
            Err(_) => {
                state.counts.undecodable += 1;
                continue;
            }
        };
        if args.source.as_ref().is_some_and(|s| *s != raw.source)
            || args.provider.as_ref().is_some_and(|p| *p != raw.provider)
        {
            continue;
        }
        state.counts.requests += 1;
        let request_id = raw.request_id.clone();
        let record = match verifier.verify(raw).await {
            Reverified::Events(record) => record,
            Reverified::Control => {
                state.counts.control += 1;
                continue;
            }
            Reverified::Rejected(_) => {
                state.counts.rejected += 1;
                continue;
            }
        };
        match parse_verified(&record, enricher) {
            Ok((_, parsed)) => {
                requests.push(request_id);
                for event in parsed {
                    if is_erased(&state.erased, hash_key, &event) {
                        continue;
                    }
                    if state.seen.insert(event.event_id.clone()) {
                        events.push(event);
                    }
                }
            }
            Err(_) => state.counts.unparseable += 1,
        }
    }
    state.counts.events += events.len() as u64;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let stored = stored_rows(clickhouse, &ids, &requests).await?;
    let mut by_id: BTreeMap<&str, Vec<EventRow>> = BTreeMap::new();
    for row in &stored {
        by_id
            .entry(row.event_id.as_str())
            .or_default()
            .push(row.clone());
    }
    let mut writes = Vec::new();
    for event in events {
        let mut row = EventRow::from_event(event.clone());
        // Compared as the aggregate stage would store it.
        if let Some(hasher) = hasher {
            hasher.event(&mut row);
        }
        let rows = by_id.remove(event.event_id.as_str()).unwrap_or_default();
        // Taken for obsolete by an earlier batch, given now by another request: it is
        // written (its stored rows are gone or about to be: they are below the revision).
        let was_obsolete = state.obsolete.remove(&event.event_id);
        let verdict = match (classify(&row, &rows), was_obsolete) {
            (Verdict::Unchanged | Verdict::New, Some(old_windows)) => {
                Verdict::Changed { old_windows }
            }
            (verdict, _) => verdict,
        };
        match verdict {
            Verdict::Unchanged => state.counts.unchanged += 1,
            Verdict::New => {
                state.counts.new += 1;
                state.windows.insert(window_start(row.occurred_at));
                writes.push(event);
            }
            Verdict::Changed { old_windows } => {
                state.counts.changed += 1;
                state.windows.extend(old_windows);
                state.windows.insert(window_start(row.occurred_at));
                state.superseded.insert(event.event_id.clone());
                writes.push(event);
            }
        }
    }
    // What is left: rows of these requests whose ids the parser has not given. Obsolete
    // unless a later request of the range gives them ([`close_obsolete`] decides).
    for (id, rows) in by_id {
        if state.seen.contains(id) {
            continue;
        }
        let windows = rows.iter().map(|r| window_start(r.occurred_at));
        state
            .obsolete
            .entry(id.to_string())
            .or_default()
            .extend(windows);
    }
    Ok(writes)
}

/// The stored rows of the given event ids or raw requests (`FINAL`: one per sorting key;
/// a correction whose fix changed a key field sits next to the row it supersedes until
/// that is deleted, and both are answered).
async fn stored_rows(
    clickhouse: &clickhouse::Client,
    ids: &[String],
    requests: &[String],
) -> anyhow::Result<Vec<EventRow>> {
    if ids.is_empty() && requests.is_empty() {
        return Ok(Vec::new());
    }
    let rows = clickhouse
        .query("SELECT ?fields FROM email_events FINAL WHERE has(?, event_id) OR has(?, raw_request_id)")
        .bind(non_empty(ids))
        .bind(non_empty(requests))
        .fetch_all::<EventRow>()
        .await
        .context("reading the stored events")?;
    Ok(rows)
}

/// Waits for the corrections to be loaded, deletes what they supersede, recomputes the
/// windows.
async fn finish(
    settings: &Settings,
    args: &ReplayArgs,
    clickhouse: &clickhouse::Client,
    state: &mut ReplayState,
) -> anyhow::Result<()> {
    let revision = state.revision;
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    // Loaded once the aggregate group's commits pass the corrections: it commits only
    // after a batch is inserted and its windows recomputed.
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let unique_topic = names.name(Topic::EventsUnique);
    let group = mailpipe_stage::Stage::Aggregate.group_id(settings);
    let watcher: BaseConsumer = mailpipe_kafka::consumer_config(&settings.kafka, &group)
        .create()
        .context("creating the Kafka client")?;
    loop {
        let mut tpl = TopicPartitionList::new();
        for p in state.written_to.keys() {
            tpl.add_partition(&unique_topic, *p);
        }
        let committed = if tpl.count() == 0 {
            TopicPartitionList::new()
        } else {
            watcher.committed_offsets(tpl, Duration::from_secs(10))?
        };
        let behind: Vec<(i32, i64)> = state
            .written_to
            .iter()
            .filter(|(p, to)| {
                let at = committed
                    .find_partition(&unique_topic, **p)
                    .map(|e| e.offset());
                !matches!(at, Some(Offset::Offset(o)) if o >= **to)
            })
            .map(|(p, to)| (*p, *to))
            .collect();
        if behind.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the aggregate stage has not loaded the corrections within {} s (partitions behind: {behind:?}); is it running? Run the same command again to resume",
                args.wait
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let ids: Vec<String> = state.superseded.iter().cloned().collect();
    for chunk in ids.chunks(1000) {
        clickhouse
            .query("ALTER TABLE email_events DELETE WHERE revision < ? AND has(?, event_id)")
            .bind(revision)
            .bind(chunk)
            .execute()
            .await
            .context("deleting superseded rows")?;
    }
    let database = &settings.clickhouse.database;
    mailpipe_clickhouse::wait_for_mutations(clickhouse, database, "email_events", deadline).await?;
    // The touched windows are rebuilt from scratch: their old rows keep the largest count.
    let ranges = window_ranges(&state.windows);
    for sql in delete_statements(database, &ranges) {
        clickhouse
            .query(&sql)
            .execute()
            .await
            .context("clearing windows")?;
    }
    mailpipe_clickhouse::wait_for_mutations(clickhouse, database, "email_stats_1m", deadline)
        .await?;
    for sql in recompute_statements(database, &ranges) {
        clickhouse
            .query(&sql)
            .execute()
            .await
            .context("recomputing one-minute windows")?;
    }
    Ok(())
}

/// Once the whole range is read: the stored ids no request gave are obsolete.
fn close_obsolete(state: &mut ReplayState) {
    for (id, windows) in std::mem::take(&mut state.obsolete) {
        state.counts.obsolete += 1;
        state.windows.extend(windows);
        state.superseded.insert(id);
    }
}

/// Whether `event`'s recipient was erased (`mailpipe erase`): not re-derived.
fn is_erased(erased: &BTreeSet<String>, hash_key: &[u8], event: &EmailEvent) -> bool {
    match (&event.recipient, erased.is_empty() || hash_key.is_empty()) {
        (Some(recipient), false) => erased.contains(&recipient_hash(hash_key, recipient)),
        _ => false,
    }
}

/// The keyed hashes of every erased recipient.
async fn erased_hashes(clickhouse: &clickhouse::Client) -> anyhow::Result<BTreeSet<String>> {
    let hashes: Vec<String> = clickhouse
        .query("SELECT DISTINCT recipient_hash FROM privacy_erasures")
        .fetch_all()
        .await
        .context("reading privacy_erasures")?;
    Ok(hashes.into_iter().collect())
}

fn report(c: &Counts, dry_run: bool, written: u64) {
    let verb = if dry_run { "would change" } else { "changed" };
    println!(
        "replay: {} raw requests ({} rejected, {} control, {} unparseable, {} undecodable), {} events: {verb} {} ({} corrected, {} new, {} removed), {} unchanged{}",
        c.requests,
        c.rejected,
        c.control,
        c.unparseable,
        c.undecodable,
        c.events,
        c.would_change(),
        c.changed,
        c.new,
        c.obsolete,
        c.unchanged,
        if dry_run {
            String::new()
        } else {
            format!("; {written} corrections written to mail.events.unique")
        }
    );
}

fn load_state(path: &Path) -> anyhow::Result<Option<ReplayState>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("reading the replay state {}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the state atomically (a crash leaves the old or the new file, whole).
fn save_state(path: &Path, state: &ReplayState) -> anyhow::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(state)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `values`, or `[""]` (which no id equals) for an empty list: an empty array literal has
/// no element type on older ClickHouse.
fn non_empty(values: &[String]) -> Vec<String> {
    if values.is_empty() {
        vec![String::new()]
    } else {
        values.to_vec()
    }
}

fn instant_ms(text: &str) -> anyhow::Result<i64> {
    if let Ok(seconds) = text.trim().parse::<i64>() {
        return Ok(seconds * 1000);
    }
    let t = chrono::DateTime::parse_from_rfc3339(text.trim())
        .with_context(|| format!("{text:?} is neither Unix seconds nor RFC 3339"))?;
    Ok(t.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailpipe_model::EventType;

    fn row(event_type: &str, at: u32) -> EventRow {
        let mut r = EventRow::from_event(mailpipe_model::EmailEvent {
            event_type: EventType::Delivered,
            ..sample_event()
        });
        r.event_type = event_type.into();
        r.occurred_at = at;
        r
    }

    fn sample_event() -> EmailEvent {
        serde_json::from_value(serde_json::json!({
            "event_id": "e1", "event_type": "delivered", "provider_event": "delivered",
            "provider": "sendgrid", "source": "s", "occurred_at": 1000, "received_at": 2000,
            "recipient": "a@x.example", "recipient_domain": "x.example", "message_id": null,
            "campaign_id": null, "tags": [], "metadata": {}, "reject_reason": null,
            "bounce_class": null, "url": null, "user_agent": null, "ip": null, "geo": null,
            "mta_response": null, "description": null, "raw_request_id": "r1", "raw_event": "{}"
        }))
        .unwrap()
    }

    #[test]
    fn an_event_is_unchanged_whatever_copy_or_insert_time_was_stored() {
        let new = row("delivered", 120);
        let mut stored = new.clone();
        stored.raw_request_id = "another-copy".into();
        stored.received_at_ms = 5;
        stored.inserted_at_ms = 99;
        assert_eq!(classify(&new, &[stored]), Verdict::Unchanged);
    }

    #[test]
    fn a_different_field_or_two_stored_rows_mean_changed_with_the_old_windows() {
        let new = row("delivered", 125);
        let old = row("opened", 61);
        assert_eq!(
            classify(&new, std::slice::from_ref(&old)),
            Verdict::Changed {
                old_windows: vec![60]
            }
        );
        assert_eq!(
            classify(&new, &[new.clone(), old]),
            Verdict::Changed {
                old_windows: vec![120, 60]
            },
            "a stored correction next to the row it supersedes: delete below the revision"
        );
        assert_eq!(classify(&new, &[]), Verdict::New);
    }

    #[test]
    fn progress_shows_share_rate_and_time_left() {
        let line = progress_line(50, 200, Duration::from_secs(5));
        assert!(
            line.contains(" 25 % 50/200 raw requests, 10/s, ETA 15 s"),
            "{line}"
        );
        assert!(progress_line(0, 0, Duration::ZERO).contains("100 %"));
    }
}
