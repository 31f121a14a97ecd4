//! `mailpipe predict send-time <recipient>`, `mailpipe predict evaluate --holdout DAYS`
//! and `mailpipe engagement <recipient|domain>`: the insight models (`mailpipe_insight`)
//! over the history in ClickHouse (`mailpipe_clickhouse::engagement`). Read-only.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mailpipe_clickhouse::engagement::{self, stored_key};
use mailpipe_insight::history::{EngagementHistory, Scope};
use mailpipe_insight::{evaluate, Evaluation, Params};
use mailpipe_settings::Settings;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Args)]
pub struct PredictArgs {
    #[command(subcommand)]
    command: PredictCommand,
}

#[derive(Debug, Subcommand)]
enum PredictCommand {
    /// The hours of the week a recipient most likely opens mail, and the chance they open
    /// the next message.
    SendTime {
        recipient: String,
        /// How many hours to list.
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// The source (account) whose history is the fallback after the recipient's domain;
        /// default: the one most of the recipient's events came from.
        #[arg(long)]
        source: Option<String>,
        /// Predict from the history before this time (RFC 3339) instead of now.
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Replays history: trains on everything before the last DAYS, predicts each held-out
    /// human open's hour and compares with the naive model (the overall busiest hours).
    Evaluate {
        /// Days held out at the end of the history.
        #[arg(long)]
        holdout: u32,
        /// Hours predicted per recipient (a hit is an open in one of them).
        #[arg(long, default_value_t = 3)]
        top: usize,
        /// The end of the history (RFC 3339) instead of now, for a reproducible evaluation.
        #[arg(long)]
        as_of: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct EngagementArgs {
    /// A recipient address, or a domain (no `@`).
    key: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `--as-of` as Unix milliseconds, or now.
fn as_of_ms(as_of: Option<&str>) -> anyhow::Result<i64> {
    match as_of {
        None => Ok(mailpipe_stage::now_ms()),
        Some(text) => chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .with_context(|| format!("--as-of {text:?} is not an RFC 3339 time")),
    }
}

fn client(settings: &Settings) -> clickhouse::Client {
    mailpipe_clickhouse::client(&settings.clickhouse).with_database(&settings.clickhouse.database)
}

fn hash_key(settings: &Settings) -> Option<&[u8]> {
    let privacy = &settings.privacy;
    privacy
        .hash_recipients
        .then_some(privacy.hash_key.as_bytes())
}

fn zone(settings: &Settings) -> anyhow::Result<chrono_tz::Tz> {
    let name = &settings.insight.time_zone;
    name.parse()
        .map_err(|_| anyhow::anyhow!("insight.time_zone {name:?} is not an IANA time zone"))
}

/// Bounds one ClickHouse call by `[insight] query_timeout_ms` (evaluation: ten times it,
/// it reads the whole window).
async fn bounded<T>(
    settings: &Settings,
    factor: u32,
    fut: impl std::future::Future<Output = Result<T, mailpipe_clickhouse::ClickHouseError>>,
) -> anyhow::Result<T> {
    let limit = Duration::from_millis(settings.insight.query_timeout_ms) * factor;
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => Ok(result.with_context(|| format!("querying {}", settings.clickhouse.url))?),
        Err(_) => bail!("ClickHouse did not answer within {limit:?} ([insight] query_timeout_ms)"),
    }
}

pub async fn run(settings: &Settings, args: &PredictArgs) -> anyhow::Result<()> {
    let zone = zone(settings)?;
    let client = client(settings);
    match &args.command {
        PredictCommand::SendTime {
            recipient,
            top,
            source,
            as_of,
            json,
        } => {
            let as_of = as_of_ms(as_of.as_deref())?;
            if !recipient.contains('@') {
                bail!("{recipient:?} is not an address (send-time predicts for one recipient)");
            }
            let params = Params {
                top: *top,
                ..Params::default()
            };
            params.validate()?;
            let key = stored_key(Scope::Recipient, recipient, hash_key(settings));
            let prediction = bounded(
                settings,
                1,
                engagement::predict(
                    &client,
                    &key,
                    source.as_deref(),
                    as_of,
                    settings.insight.history_days,
                    zone,
                    &params,
                ),
            )
            .await?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&prediction)?);
                return Ok(());
            }
            let s = &prediction.send_time;
            println!(
                "{} — best hours to send ({}, last {} days):",
                prediction.recipient, prediction.time_zone, settings.insight.history_days
            );
            for hour in &s.best {
                println!(
                    "  {}  {:.1} % of their expected human opens",
                    hour.label,
                    hour.probability * 100.0
                );
            }
            println!(
                "  basis: {} (confidence {:.2}; human opens: theirs {}, their domain's {}, source {:?}'s {}, everybody's {})",
                s.basis.as_str(),
                s.confidence,
                s.evidence.recipient_opens,
                s.evidence.domain_opens,
                prediction.source,
                s.evidence.source_opens,
                s.evidence.global_opens
            );
            let l = &prediction.likelihood;
            println!(
                "engagement likelihood of the next delivered message: {:.1} % (basis {}, confidence {:.2}; delivered/opened: theirs {}/{}, domain {}/{}, source {}/{}, everybody {}/{})",
                l.probability * 100.0,
                l.basis.as_str(),
                l.confidence,
                l.evidence.recipient_delivered,
                l.evidence.recipient_opened,
                l.evidence.domain_delivered,
                l.evidence.domain_opened,
                l.evidence.source_delivered,
                l.evidence.source_opened,
                l.evidence.global_delivered,
                l.evidence.global_opened
            );
        }
        PredictCommand::Evaluate {
            holdout,
            top,
            as_of,
            json,
        } => {
            if *holdout == 0 {
                bail!("--holdout must be at least 1 day");
            }
            let params = Params {
                top: *top,
                ..Params::default()
            };
            params.validate()?;
            let until = as_of_ms(as_of.as_deref())?;
            let cutoff = until - i64::from(*holdout) * DAY_MS;
            let since = cutoff - i64::from(settings.insight.history_days) * DAY_MS;
            let observations = bounded(
                settings,
                10,
                engagement::observations(&client, since, until),
            )
            .await?;
            let result = evaluate(&observations, cutoff, zone, &params);
            if *json {
                println!("{}", serde_json::to_string_pretty(&result)?);
            } else {
                print_evaluation(&result, *holdout, settings.insight.history_days);
            }
        }
    }
    Ok(())
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("n/a".into(), |r| format!("{:.1} %", r * 100.0))
}

fn print_evaluation(e: &Evaluation, holdout: u32, history_days: u32) {
    println!(
        "trained on {} events of the {history_days} days before the last {holdout}; {} held-out human opens",
        e.train_events, e.holdout_opens
    );
    println!(
        "send time (top {}): hit rate {} ({} hits) vs naive {} ({} hits, hours {}); lift {}",
        e.top,
        percent(e.hit_rate),
        e.hits,
        percent(e.baseline_hit_rate),
        e.baseline_hits,
        e.baseline_hours
            .iter()
            .map(|h| h.label.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        e.lift.map_or("n/a".into(), |l| format!("{l:.2}×"))
    );
    for (basis, f) in [
        ("recipient", &e.by_basis.recipient),
        ("domain", &e.by_basis.domain),
        ("source", &e.by_basis.source),
        ("global", &e.by_basis.global),
    ] {
        println!(
            "  basis {basis:<9} {:>7} opens: hit rate {} vs naive {}",
            f.opens,
            percent(f.hit_rate),
            percent(f.baseline_hit_rate)
        );
    }
    let l = &e.likelihood;
    println!(
        "engagement likelihood: Brier score {} vs naive {} (everyone at the overall rate {:.1} %), over {} recipients",
        l.brier.map_or("n/a".into(), |b| format!("{b:.4}")),
        l.baseline_brier.map_or("n/a".into(), |b| format!("{b:.4}")),
        l.baseline_rate * 100.0,
        l.recipients
    );
}

pub async fn engagement(settings: &Settings, args: &EngagementArgs) -> anyhow::Result<()> {
    let scope = if args.key.contains('@') {
        Scope::Recipient
    } else {
        Scope::Domain
    };
    let key = stored_key(scope, &args.key, hash_key(settings));
    if key.is_empty() {
        bail!("give a recipient address or a domain");
    }
    let history = bounded(
        settings,
        1,
        engagement::history(
            &client(settings),
            scope,
            &key,
            mailpipe_stage::now_ms(),
            settings.insight.history_days,
        ),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&history)?);
    } else {
        print_history(&history);
    }
    Ok(())
}

fn print_history(h: &EngagementHistory) {
    println!("{} {}", h.scope.as_str(), h.key);
    println!("  {:<36} {:>8}", "figure", "value");
    for (name, meaning) in mailpipe_insight::history::METRICS {
        let value = h.metric(name).map_or("—".to_string(), |v| format!("{v}"));
        println!("  {name:<36} {value:>8}   {meaning}");
    }
    if let Some(class) = &h.last_bounce_class {
        println!("  last bounce class: {class}");
    }
}
