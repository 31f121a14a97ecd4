//! `mailpipe summary`: what went through the pipeline, read back from Kafka (records per
//! topic) and ClickHouse (distinct events per provider and type, with `FINAL`). `make run`
//! prints it after the sample burst; it is also a quick health check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::Deserialize;

/// The topics of the flow, in pipeline order (the rules stage's last: what the rules did,
/// and the suppressions they made).
const FLOW: [Topic; 8] = [
    Topic::Raw,
    Topic::Verified,
    Topic::Rejected,
    Topic::Events,
    Topic::EventsUnique,
    Topic::Dlq,
    Topic::Actions,
    Topic::Suppressions,
];

#[derive(Debug, Deserialize, clickhouse::Row)]
struct TypeCount {
    provider: String,
    event_type: String,
    n: u64,
}

/// Records currently held by each flow topic (sum over partitions of high - low watermark).
pub fn topic_records(settings: &Settings) -> anyhow::Result<Vec<(String, i64)>> {
    let consumer: BaseConsumer =
        mailpipe_kafka::consumer_config(&settings.kafka, "mailpipe-summary")
            .create()
            .context("creating a Kafka client")?;
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let timeout = Duration::from_secs(10);
    let mut out = Vec::new();
    for topic in FLOW {
        let name = names.name(topic);
        let metadata = consumer
            .fetch_metadata(Some(&name), timeout)
            .with_context(|| {
                format!("reading metadata of {name} from {}", settings.kafka.brokers)
            })?;
        let mut records = 0;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(&name, p.id(), timeout)
                    .with_context(|| format!("reading offsets of {name}/{}", p.id()))?;
                records += (high - low).max(0);
            }
        }
        out.push((name, records));
    }
    Ok(out)
}

/// Distinct events per (provider, event type) in `email_events FINAL`, and the sum of
/// `email_stats_1m FINAL` (equal when the roll-up is complete).
pub async fn clickhouse_counts(
    settings: &Settings,
) -> anyhow::Result<(BTreeMap<(String, String), u64>, u64)> {
    let ch = mailpipe_clickhouse::client(&settings.clickhouse);
    let db = &settings.clickhouse.database;
    let sql = format!(
        "SELECT provider, event_type, count() AS n FROM {db}.email_events FINAL \
         GROUP BY provider, event_type"
    );
    let rows: Vec<TypeCount> =
        mailpipe_clickhouse::with_timeout(&settings.clickhouse, ch.query(&sql).fetch_all())
            .await
            .with_context(|| format!("querying ClickHouse at {}", settings.clickhouse.url))?;
    let sql = format!("SELECT toUInt64(sum(events)) FROM {db}.email_stats_1m FINAL");
    let stats: u64 =
        mailpipe_clickhouse::with_timeout(&settings.clickhouse, ch.query(&sql).fetch_one())
            .await
            .with_context(|| format!("querying ClickHouse at {}", settings.clickhouse.url))?;
    let counts = rows
        .into_iter()
        .map(|r| ((r.provider, r.event_type), r.n))
        .collect();
    Ok((counts, stats))
}

#[derive(Debug, serde::Deserialize, clickhouse::Row)]
struct Labelled {
    label: String,
    n: u64,
}

/// The enrichment at a glance: opens by verdict (and machine reason), the top clients and
/// devices of opens and clicks, and how many events the IP database located.
async fn enrichment_lines(settings: &Settings) -> anyhow::Result<Vec<String>> {
    let ch = mailpipe_clickhouse::client(&settings.clickhouse)
        .with_database(&settings.clickhouse.database);
    let engagement = "event_type IN ('opened', 'clicked')";
    let queries = [
        (
            "opens",
            "SELECT multiIf(ifNull(machine_open, 2) = 1, concat('machine (', machine_reason, ')'), \
             ifNull(machine_open, 2) = 0, 'human', 'not judged') AS label, count() AS n \
             FROM email_events FINAL WHERE event_type = 'opened' GROUP BY label ORDER BY n DESC"
                .to_string(),
        ),
        (
            "clients",
            format!(
                "SELECT if(client_name = '', '(unknown)', client_name) AS label, count() AS n \
                 FROM email_events FINAL WHERE {engagement} GROUP BY label ORDER BY n DESC, label LIMIT 6"
            ),
        ),
        (
            "devices",
            format!(
                "SELECT if(device_class = '', '(no user agent)', device_class) AS label, count() AS n \
                 FROM email_events FINAL WHERE {engagement} GROUP BY label ORDER BY n DESC, label"
            ),
        ),
        (
            "geo source",
            format!(
                "SELECT if(geo_source = '', '(none)', geo_source) AS label, count() AS n \
                 FROM email_events FINAL WHERE {engagement} GROUP BY label ORDER BY n DESC, label"
            ),
        ),
    ];
    let mut lines = Vec::new();
    for (name, sql) in queries {
        let rows: Vec<Labelled> =
            mailpipe_clickhouse::with_timeout(&settings.clickhouse, ch.query(&sql).fetch_all())
                .await
                .with_context(|| format!("querying ClickHouse at {}", settings.clickhouse.url))?;
        let parts: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}", r.label, r.n))
            .collect();
        lines.push(format!("  {name:<11} {}", parts.join(", ")));
    }
    Ok(lines)
}

/// The events table as text: one line per provider, one column per event type seen.
pub fn render_counts(counts: &BTreeMap<(String, String), u64>) -> String {
    let types: BTreeSet<&str> = counts.keys().map(|(_, t)| t.as_str()).collect();
    let providers: BTreeSet<&str> = counts.keys().map(|(p, _)| p.as_str()).collect();
    let width = |t: &str| t.len().max(6);
    let mut out = format!("{:<12}", "provider");
    for t in &types {
        out.push_str(&format!(" {:>w$}", t, w = width(t)));
    }
    out.push_str(&format!(" {:>8}\n", "total"));
    let mut column_totals: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &providers {
        out.push_str(&format!("{p:<12}"));
        let mut total = 0;
        for t in &types {
            let n = counts
                .get(&(p.to_string(), t.to_string()))
                .copied()
                .unwrap_or(0);
            total += n;
            *column_totals.entry(t).or_default() += n;
            out.push_str(&format!(" {:>w$}", n, w = width(t)));
        }
        out.push_str(&format!(" {total:>8}\n"));
    }
    out.push_str(&format!("{:<12}", "all"));
    for t in &types {
        out.push_str(&format!(" {:>w$}", column_totals[t], w = width(t)));
    }
    out.push_str(&format!(" {:>8}\n", column_totals.values().sum::<u64>()));
    out
}

/// Options of `mailpipe summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// A `send-samples --summary-json` file: wait until ClickHouse holds every event it
    /// says was accepted, then compare per provider and type.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<std::path::PathBuf>,
    /// How long to wait for the expected events, in seconds.
    #[arg(long, default_value_t = 120)]
    pub wait: u64,
}

/// Accepted events per (provider, event type) of a send-samples summary file.
pub fn expected_counts(json: &str) -> anyhow::Result<BTreeMap<(String, String), u64>> {
    let value: serde_json::Value = serde_json::from_str(json).context("not JSON")?;
    let accepted = value
        .get("accepted")
        .and_then(|a| a.as_object())
        .context("no \"accepted\" object (is this a send-samples --summary-json file?)")?;
    let mut out = BTreeMap::new();
    for (provider, types) in accepted {
        let types = types
            .as_object()
            .with_context(|| format!("accepted.{provider} is not an object"))?;
        for (event_type, n) in types {
            let n = n
                .as_u64()
                .with_context(|| format!("accepted.{provider}.{event_type} is not a count"))?;
            if n > 0 {
                out.insert((provider.clone(), event_type.clone()), n);
            }
        }
    }
    Ok(out)
}

/// The (provider, type) pairs whose counts differ: (key, expected, found).
pub fn differences(
    expected: &BTreeMap<(String, String), u64>,
    found: &BTreeMap<(String, String), u64>,
) -> Vec<((String, String), u64, u64)> {
    let keys: BTreeSet<&(String, String)> = expected.keys().chain(found.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (e, f) = (
                expected.get(k).copied().unwrap_or(0),
                found.get(k).copied().unwrap_or(0),
            );
            (e != f).then(|| (k.clone(), e, f))
        })
        .collect()
}

/// Prints the summary, first waiting for the expected events when asked to.
pub async fn run(settings: &Settings, args: &SummaryArgs) -> anyhow::Result<()> {
    let Some(path) = &args.expect else {
        return print(settings).await;
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let expected = expected_counts(&text).with_context(|| format!("reading {}", path.display()))?;
    let total: u64 = expected.values().sum();
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait);
    eprintln!(
        "waiting up to {} s for {total} accepted events to reach ClickHouse…",
        args.wait
    );
    let mut found;
    loop {
        found = clickhouse_counts(settings).await?.0;
        let complete = expected
            .iter()
            .all(|(k, n)| found.get(k).copied().unwrap_or(0) >= *n);
        if complete || std::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    print(settings).await?;
    let diff = differences(&expected, &found);
    println!();
    if diff.is_empty() {
        println!(
            "All {total} events accepted by the receiver (per {}) are in ClickHouse, each once.",
            path.display()
        );
        return Ok(());
    }
    println!(
        "Differences from {} (provider, type: expected -> found):",
        path.display()
    );
    for ((provider, event_type), e, f) in &diff {
        println!("  {provider}, {event_type}: {e} -> {f}");
    }
    anyhow::bail!(
        "ClickHouse does not hold exactly the accepted events ({} differences)",
        diff.len()
    )
}

/// Prints records per topic and the ClickHouse table.
async fn print(settings: &Settings) -> anyhow::Result<()> {
    println!("Kafka records per topic ({}):", settings.kafka.brokers);
    for (name, records) in topic_records(settings)? {
        println!("  {name:<32} {records:>10}");
    }
    let (counts, stats) = clickhouse_counts(settings).await?;
    let total: u64 = counts.values().sum();
    println!();
    println!(
        "ClickHouse {}.email_events FINAL: {total} distinct events \
         (email_stats_1m FINAL sum(events): {stats})",
        settings.clickhouse.database
    );
    if !counts.is_empty() {
        print!("{}", render_counts(&counts));
        println!();
        println!("Enrichment of opens and clicks (README \"Enrichment\"):");
        for line in enrichment_lines(settings).await? {
            println!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_come_from_the_accepted_map() {
        let json =
            r#"{"seed":1,"accepted":{"sendgrid":{"delivered":2,"opened":0},"ses":{"bounced":1}}}"#;
        let expected = expected_counts(json).unwrap();
        assert_eq!(expected.len(), 2, "zero counts are left out");
        assert_eq!(
            expected[&("sendgrid".to_string(), "delivered".to_string())],
            2
        );
        assert!(expected_counts("{}").is_err());
        let found = BTreeMap::from([
            (("sendgrid".to_string(), "delivered".to_string()), 2),
            (("ses".to_string(), "bounced".to_string()), 2),
            (("ses".to_string(), "opened".to_string()), 1),
        ]);
        let diff = differences(&expected, &found);
        assert_eq!(
            diff,
            vec![
                (("ses".to_string(), "bounced".to_string()), 1, 2),
                (("ses".to_string(), "opened".to_string()), 0, 1),
            ]
        );
    }

    #[test]
    fn counts_render_as_a_provider_by_type_table_with_totals() {
        let counts = BTreeMap::from([
            (("mailgun".to_string(), "delivered".to_string()), 3),
            (("sendgrid".to_string(), "delivered".to_string()), 2),
            (("sendgrid".to_string(), "opened".to_string()), 5),
        ]);
        let text = render_counts(&counts);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("provider") && lines[0].contains("delivered"));
        assert!(lines[1].starts_with("mailgun") && lines[1].ends_with(" 3"));
        assert!(lines[2].starts_with("sendgrid") && lines[2].ends_with(" 7"));
        assert!(lines[3].starts_with("all") && lines[3].ends_with(" 10"));
    }
}
