//! `mailpipe erase <recipient> --by <who>`: a privacy request. Removes the recipient from
//! ClickHouse (mutations, waited for; the touched one-minute windows rebuilt), from the
//! rules' Redis state (scores, segments, counters, cooldowns, delayed actions, the
//! suppression lookup) and from the compacted `mail.suppressions` (a tombstone per key);
//! keeps suppressing them, if they were suppressed, under their keyed hash
//! (`[privacy] hash_key`), which the rules stage looks up too; and records an audit entry in
//! `privacy_erasures` (who, when, what was removed; the recipient only as its hash).
//!
//! Order: the hashed suppression is written before the address is removed, so there is no
//! moment in which a suppressed recipient is not suppressed. Kafka topics other than
//! `mail.suppressions` keep the address until their retention deletes the segment (see the
//! README's privacy section for the settings that bound it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::privacy::{hashed_address, recipient_hash};
use mailpipe_settings::Settings;
use mailpipe_stage_5_aggregate::windows::{delete_statements, recompute_statements, window_ranges};
use rdkafka::producer::{FutureProducer, FutureRecord};
use redis::aio::ConnectionManager;
use serde::Serialize;

#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The address to erase.
    recipient: String,
    /// Who asks (recorded in the audit entry), e.g. a ticket or an operator's name.
    #[arg(long)]
    by: String,
    /// Seconds to wait for ClickHouse's deletions.
    #[arg(long, default_value_t = 300)]
    wait: u64,
}

/// What one erasure removed, for the audit entry and the operator.
#[derive(Debug, Default, Serialize)]
pub struct Removed {
    /// Rows per ClickHouse table.
    pub clickhouse: BTreeMap<&'static str, u64>,
    /// Redis keys deleted, and set members / hash fields / sorted-set members removed.
    pub redis_keys: u64,
    pub redis_entries: u64,
    /// Tombstones written on mail.suppressions.
    pub suppression_tombstones: u64,
    /// Scopes the recipient stays suppressed in, by hash.
    pub suppressed_scopes: Vec<String>,
}

/// The ClickHouse tables holding recipients, and how a row of the recipient is told (`?`:
/// the address; `??`: its hashed form under `hash_recipients`).
const TABLES: [(&str, &str); 5] = [
    ("email_events", "recipient IN (?, ?)"),
    (
        "rule_executions",
        "recipient IN (?, ?) OR match(concat(arrayStringConcat(parameter_values, ' '), ' ', detail), ?)",
    ),
    ("suppressions", "recipient IN (?, ?)"),
    ("rejected_requests", "match(concat(body_excerpt, ' ', detail), ?)"),
    ("dead_letters", "match(concat(payload_excerpt, ' ', detail), ?)"),
];

pub async fn run(settings: &Settings, args: &EraseArgs) -> anyhow::Result<()> {
    let key = settings.privacy.hash_key.as_bytes();
    if key.is_empty() {
        bail!("[privacy] hash_key is not set: erase needs it to keep suppressing the recipient without the address");
    }
    let address = args.recipient.trim().to_lowercase();
    if !address.contains('@') || address.len() < 3 {
        bail!("{:?} is not an email address", args.recipient);
    }
    if args.by.trim().is_empty() {
        bail!("--by must say who asks");
    }
    // The audit keeps `--by` in clear: no address in it (it would also undo the erasure of
    // the suppression record that names it).
    if args.by.contains('@') {
        bail!("--by must not hold an email address: say who asks (a ticket, a name), not whose data it is");
    }
    let hash = recipient_hash(key, &address);
    let hashed = hashed_address(key, &address);
    let mut removed = Removed::default();
    // 0. What is on the topics now is loaded first (a record of the recipient still in
    // flight would bring the address back after the erasure): until the stages that load
    // ClickHouse and the rules' state have caught up, nothing is changed.
    let deadline = Instant::now() + Duration::from_secs(args.wait);
    let in_flight = high_watermarks(settings)?;
    wait_caught_up(settings, &in_flight, deadline).await?;

    // 1. Redis: suppressed? Then keep it by hash first; then scrub every rules key.
    let rules = &settings.rules;
    let mut redis = mailpipe_runtime::redis::connect(
        &settings.redis.url,
        Duration::from_millis(rules.redis_timeout_ms),
    )?;
    let scopes = suppressed_scopes(&mut redis, &rules.redis_prefix, &address, &hash).await?;
    // 2. Kafka, before the address leaves Redis (a rerun after a failure here still
    // finds the scopes, by hash): tombstones for the compacted suppression list.
    if !scopes.is_empty() {
        let names = TopicNames::new(&settings.kafka.topic_prefix);
        let topic = names.name(Topic::Suppressions);
        let producer: FutureProducer = mailpipe_kafka::producer_config(&settings.kafka)
            .create()
            .context("creating the Kafka producer")?;
        for (_, scope) in &scopes {
            let record_key = format!("{scope}:{address}");
            producer
                .send(
                    FutureRecord::<String, [u8]>::to(&topic).key(&record_key),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow::anyhow!("writing a tombstone to {topic}: {e}"))?;
            removed.suppression_tombstones += 1;
        }
    }

    for (key, scope) in &scopes {
        let record = serde_json::json!({
            "reason": "erased",
            "origin": format!("erase:{}", args.by.trim()),
            "at": mailpipe_stage::now_ms(),
        });
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg(&hash)
            .arg(record.to_string())
            .query_async(&mut redis)
            .await
            .context("keeping the suppression by hash")?;
        removed.suppressed_scopes.push(scope.clone());
    }
    scrub_redis(&mut redis, &rules.redis_prefix, &address, &mut removed).await?;

    // 3. ClickHouse: count, delete, wait, rebuild the touched windows.
    let database = &settings.clickhouse.database;
    let clickhouse = mailpipe_clickhouse::client(&settings.clickhouse).with_database(database);
    let domain = address.rsplit_once('@').map_or("", |(_, d)| d).to_string();
    let mut minutes: BTreeSet<u32> = clickhouse
        .query("SELECT DISTINCT toUInt32(toStartOfMinute(occurred_at)) FROM email_events WHERE recipient IN (?, ?)")
        .bind(&address)
        .bind(&hashed)
        .fetch_all::<u32>()
        .await
        .context("reading the recipient's event minutes")?
        .into_iter()
        .collect();
    minutes.extend(disagreeing_windows(&clickhouse, &domain).await?);
    for (table, predicate) in TABLES {
        let count_sql = format!("SELECT count() FROM {table} WHERE {predicate}");
        let delete_sql = format!("ALTER TABLE {table} DELETE WHERE {predicate}");
        let n: u64 = bind_recipient(clickhouse.query(&count_sql), predicate, &address, &hashed)
            .fetch_one()
            .await
            .with_context(|| format!("counting in {table}"))?;
        removed.clickhouse.insert(table, n);
        if n > 0 {
            bind_recipient(clickhouse.query(&delete_sql), predicate, &address, &hashed)
                .execute()
                .await
                .with_context(|| format!("deleting from {table}"))?;
        }
    }
    for (table, _) in TABLES {
        mailpipe_clickhouse::wait_for_mutations(&clickhouse, database, table, deadline).await?;
    }
    if !minutes.is_empty() {
        let ranges = window_ranges(&minutes);
        for sql in delete_statements(database, &ranges) {
            clickhouse.query(&sql).execute().await?;
        }
        mailpipe_clickhouse::wait_for_mutations(&clickhouse, database, "email_stats_1m", deadline)
            .await?;
        for sql in recompute_statements(database, &ranges) {
            clickhouse.query(&sql).execute().await?;
        }
    }

    // 4. The audit entry.
    let removed_json = serde_json::to_string(&removed)?;
    let at = mailpipe_stage::now_ms();
    clickhouse
        .query("INSERT INTO privacy_erasures (erased_at, erased_at_ms, operator, recipient_hash, recipient_domain, was_suppressed, removed) VALUES (toDateTime(?), ?, ?, ?, ?, ?, ?)")
        .bind(at / 1000)
        .bind(at)
        .bind(args.by.trim())
        .bind(&hash)
        .bind(&domain)
        .bind(u8::from(!scopes.is_empty()))
        .bind(&removed_json)
        .execute()
        .await
        .context("recording the audit entry")?;
    println!("erased {hash} (@{domain}): {removed_json}");
    Ok(())
}

fn bind_recipient(
    mut query: clickhouse::query::Query,
    predicate: &str,
    address: &str,
    hashed: &str,
) -> clickhouse::query::Query {
    if predicate.contains("IN (?, ?)") {
        query = query.bind(address).bind(hashed);
    }
    if predicate.contains("match(") {
        query = query.bind(address_pattern(address));
    }
    query
}

/// A regular expression (RE2) matching `address` as a whole token, ignoring case.
fn address_pattern(address: &str) -> String {
    let mut escaped = String::new();
    for c in address.chars() {
        if !c.is_ascii_alphanumeric() {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    format!("(?i)(^|[^a-z0-9._%+-]){escaped}($|[^a-z0-9.-])")
}

/// Whether `text` holds `address` (lower-case) as a whole token: not inside a longer
/// address (`joann@x.example`, `ann@x.example.org`).
fn holds_address(text: &str, address: &str) -> bool {
    let lower = text.to_lowercase();
    let local_char = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain_char = |c: char| c.is_ascii_alphanumeric() || ".-".contains(c);
    lower.match_indices(address).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        let after = lower[at + address.len()..].chars().next();
        !before.is_some_and(local_char) && !after.is_some_and(domain_char)
    })
}

/// One-minute windows of `domain` whose count in `email_stats_1m` differs from
/// `email_events` (a run interrupted between its deletes and the rebuild left them).
async fn disagreeing_windows(
    clickhouse: &clickhouse::Client,
    domain: &str,
) -> anyhow::Result<Vec<u32>> {
    let sql = "SELECT w FROM \
        (SELECT toUInt32(window_start) AS w, toUInt64(sum(events)) AS s FROM email_stats_1m FINAL \
         WHERE recipient_domain = ? GROUP BY w) \
        ANY LEFT JOIN \
        (SELECT toUInt32(toStartOfMinute(occurred_at)) AS w, count() AS c FROM email_events FINAL \
         WHERE recipient_domain = ? GROUP BY w) USING w \
        WHERE s != c";
    clickhouse
        .query(sql)
        .bind(domain)
        .bind(domain)
        .fetch_all::<u32>()
        .await
        .context("finding windows to rebuild")
}

/// The stages whose consumption writes addresses to ClickHouse or Redis, and the topics they
/// read that carry addresses.
const LOADERS: [(mailpipe_stage::Stage, &[Topic]); 2] = [
    (
        mailpipe_stage::Stage::Aggregate,
        &[
            Topic::EventsUnique,
            Topic::Actions,
            Topic::Suppressions,
            Topic::Rejected,
            Topic::Dlq,
        ],
    ),
    (mailpipe_stage::Stage::Rules, &[Topic::EventsUnique]),
];

/// Per (group, topic, partition): the high watermark now.
fn high_watermarks(settings: &Settings) -> anyhow::Result<Vec<(String, String, i32, i64)>> {
    use rdkafka::consumer::Consumer;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let client: rdkafka::consumer::BaseConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, "mailpipe-erase")
            .create()
            .context("creating the Kafka client")?;
    let timeout = Duration::from_secs(10);
    let mut out = Vec::new();
    for (stage, topics) in LOADERS {
        let group = stage.group_id(settings);
        for topic in topics.iter().map(|t| names.name(*t)) {
            let metadata = client.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            for p in partitions {
                let (_, high) = client.fetch_watermarks(&topic, p, timeout)?;
                out.push((group.clone(), topic.clone(), p, high));
            }
        }
    }
    Ok(out)
}

/// Waits until each group's committed offsets reach `marks`, skipping groups that never
/// committed on a topic (a stage not deployed here loads nothing).
async fn wait_caught_up(
    settings: &Settings,
    marks: &[(String, String, i32, i64)],
    deadline: Instant,
) -> anyhow::Result<()> {
    use rdkafka::consumer::Consumer;
    let mut by_group: BTreeMap<&str, Vec<&(String, String, i32, i64)>> = BTreeMap::new();
    for m in marks {
        by_group.entry(m.0.as_str()).or_default().push(m);
    }
    for (group, marks) in by_group {
        let client: rdkafka::consumer::BaseConsumer =
            mailpipe_kafka::consumer_config(&settings.kafka, group)
                .create()
                .context("creating the Kafka client")?;
        loop {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for (_, topic, p, _) in &marks {
                tpl.add_partition(topic, *p);
            }
            let committed = client.committed_offsets(tpl, Duration::from_secs(10))?;
            let at = |topic: &str, p: i32| match committed
                .find_partition(topic, p)
                .map(|e| e.offset())
            {
                Some(rdkafka::Offset::Offset(o)) => Some(o),
                _ => None,
            };
            let behind: Vec<String> = marks
                .iter()
                .filter(|(_, topic, p, high)| at(topic, *p).is_some_and(|o| o < *high))
                .map(|(_, topic, p, high)| {
                    format!("{topic}[{p}] {}/{high}", at(topic, *p).unwrap_or(0))
                })
                .collect();
            if behind.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{group} has not caught up with its topics ({}); nothing was erased: run erase again once it has (the console's lag panel)",
                    behind.join(", ")
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// The suppression hashes (key, scope) holding `address`.
async fn suppressed_scopes(
    redis: &mut ConnectionManager,
    prefix: &str,
    address: &str,
    hash: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let base = format!("{prefix}suppressions:");
    let mut out = Vec::new();
    for key in scan(redis, &format!("{}*", glob_escape(&base))).await? {
        // By address, or by hash when an earlier run already moved it.
        let held: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&key)
            .arg(address)
            .arg(hash)
            .query_async(redis)
            .await?;
        if held.iter().any(Option::is_some) {
            let scope = key[base.len()..].to_string();
            out.push((key, scope));
        }
    }
    Ok(out)
}

/// Removes `address` from every key under `prefix`: keys whose name holds it are deleted;
/// from the others, the set members, hash fields (by name or value) and sorted-set members
/// that hold it are removed.
async fn scrub_redis(
    redis: &mut ConnectionManager,
    prefix: &str,
    address: &str,
    removed: &mut Removed,
) -> anyhow::Result<()> {
    let holds = |text: &str| holds_address(text, address);
    for key in scan(redis, &format!("{}*", glob_escape(prefix))).await? {
        if holds(&key) {
            let _: () = redis::cmd("DEL").arg(&key).query_async(redis).await?;
            removed.redis_keys += 1;
            continue;
        }
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(redis).await?;
        match kind.as_str() {
            "set" => {
                let members: Vec<String> =
                    redis::cmd("SMEMBERS").arg(&key).query_async(redis).await?;
                for m in members.iter().filter(|m| holds(m)) {
                    let _: () = redis::cmd("SREM")
                        .arg(&key)
                        .arg(m)
                        .query_async(redis)
                        .await?;
                    removed.redis_entries += 1;
                }
            }
            "hash" => {
                let entries: BTreeMap<String, String> =
                    redis::cmd("HGETALL").arg(&key).query_async(redis).await?;
                for (field, _) in entries.iter().filter(|(f, v)| holds(f) || holds(v)) {
                    let _: () = redis::cmd("HDEL")
                        .arg(&key)
                        .arg(field)
                        .query_async(redis)
                        .await?;
                    removed.redis_entries += 1;
                }
            }
            "zset" => {
                let members: Vec<String> = redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(redis)
                    .await?;
                for m in members.iter().filter(|m| holds(m)) {
                    let _: () = redis::cmd("ZREM")
                        .arg(&key)
                        .arg(m)
                        .query_async(redis)
                        .await?;
                    removed.redis_entries += 1;
                }
            }
            "string" => {
                let value: Option<String> = redis::cmd("GET").arg(&key).query_async(redis).await?;
                if value.as_deref().is_some_and(holds) {
                    let _: () = redis::cmd("DEL").arg(&key).query_async(redis).await?;
                    removed.redis_keys += 1;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Every key matching `pattern` (SCAN: Redis stays responsive).
async fn scan(redis: &mut ConnectionManager, pattern: &str) -> anyhow::Result<Vec<String>> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .context("scanning Redis keys")?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// `text` with Redis glob characters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_matched_as_a_whole_token_only() {
        let a = "ann@x.example";
        for yes in [
            "ann@x.example",
            "score:ann@x.example",
            "to=<ANN@x.example>",
            "a|recipient|ann@x.example",
        ] {
            assert!(holds_address(yes, a), "{yes}");
        }
        for no in [
            "joann@x.example",
            "ann@x.example.org",
            "ann@x.examples",
            "jo.ann@x.example",
        ] {
            assert!(!holds_address(no, a), "{no}");
        }
        assert_eq!(
            address_pattern("a.b+c@x.example"),
            r"(?i)(^|[^a-z0-9._%+-])a\.b\+c\@x\.example($|[^a-z0-9.-])"
        );
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
        assert_eq!(glob_escape("mailpipe:rules:"), "mailpipe:rules:");
    }

    #[test]
    fn every_table_predicate_takes_the_arguments_it_binds() {
        for (table, predicate) in TABLES {
            let placeholders = predicate.matches('?').count();
            let bound = if predicate.contains("IN (?, ?)") {
                2
            } else {
                0
            } + usize::from(predicate.contains("match("));
            assert_eq!(placeholders, bound, "{table}");
        }
    }
}
