//! `mailpipe read <topic>`: prints the records of `mail.rejected`, `mail.dlq`, `mail.events`
//! or `mail.events.unique` as JSON lines (Avro decoded through the schema registry), oldest
//! first, with the bytes fields as (lossy) UTF-8 text. For looking at what was rejected or
//! dead-lettered and why; it reads with no consumer group commits.

use std::time::Duration;

use anyhow::Context;
use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord};
use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde_json::json;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReadTopic {
    /// mail.rejected: requests that failed verification, with the reason.
    Rejected,
    /// mail.dlq: messages a stage could not process, with the reason and coordinates.
    Dlq,
    /// mail.events: canonical events before deduplication.
    Events,
    /// mail.events.unique: canonical events, each once.
    EventsUnique,
}

#[derive(Debug, clap::Args)]
pub struct ReadArgs {
    topic: ReadTopic,
    /// Stop after this many records.
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// Stop when no record arrived for this many seconds.
    #[arg(long, default_value_t = 3)]
    idle: u64,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub async fn run(settings: &Settings, args: &ReadArgs) -> anyhow::Result<()> {
    let topic = match args.topic {
        ReadTopic::Rejected => Topic::Rejected,
        ReadTopic::Dlq => Topic::Dlq,
        ReadTopic::Events => Topic::Events,
        ReadTopic::EventsUnique => Topic::EventsUnique,
    };
    let name = TopicNames::new(&settings.kafka.topic_prefix).name(topic);
    let group = format!("mailpipe-read-{}", std::process::id());
    let consumer: StreamConsumer = mailpipe_kafka::consumer_config(&settings.kafka, &group)
        .create()
        .context("creating a Kafka consumer")?;
    consumer.subscribe(&[name.as_str()])?;
    let codec = AvroCodec::new(&settings.schema_registry.url)?;
    let mut printed = 0;
    while printed < args.limit {
        let message =
            match tokio::time::timeout(Duration::from_secs(args.idle), consumer.recv()).await {
                Err(_) => break,
                Ok(message) => message.with_context(|| format!("reading {name}"))?,
            };
        let payload = message.payload().unwrap_or_default();
        let coordinates = json!({"partition": message.partition(), "offset": message.offset()});
        let line = match args.topic {
            ReadTopic::Rejected => {
                let r: RejectedRecord = codec.decode(payload).await?;
                json!({"at": coordinates, "reason": r.reason, "detail": r.detail,
                       "provider": r.provider, "source": r.source, "request_id": r.request_id,
                       "received_at": r.received_at, "path": r.path, "body": text(&r.body)})
            }
            ReadTopic::Dlq => {
                let d: DeadLetterRecord = codec.decode(payload).await?;
                json!({"at": coordinates, "stage": d.stage, "reason": d.reason, "detail": d.detail,
                       "input": {"topic": d.topic, "partition": d.partition, "offset": d.offset},
                       "raw_request_id": d.raw_request_id, "provider": d.provider,
                       "source": d.source, "payload": text(&d.payload)})
            }
            ReadTopic::Events | ReadTopic::EventsUnique => {
                let e: EmailEvent = codec.decode(payload).await?;
                serde_json::to_value(e)?
            }
        };
        println!("{line}");
        printed += 1;
    }
    eprintln!("{printed} record(s) from {name}");
    Ok(())
}
