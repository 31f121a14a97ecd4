//! The normalize stage against the real broker and registry: verified requests of every
//! provider become canonical events on mail.events (key = recipient), enriched (user agent,
//! machine opens, IP geolocation from a MaxMind-format file the test writes), an unparseable one
//! becomes a dead letter with its reason, a control record becomes nothing, and offsets
//! are committed once the outputs are acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mailpipe_avro::records::{DeadLetterRecord, Header, VerifiedKind, VerifiedRecord};
use mailpipe_avro::{AvroCodec, TopicSchema, VERIFIED_REQUEST_SCHEMA};
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_model::{EmailEvent, Provider};
use mailpipe_normalize_core::{parse, ParseInput};
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_settings, unique_name, wait_for_committed_total,
};
use rdkafka::producer::FutureRecord;
use tokio_util::sync::CancellationToken;

/// Valid fixture bodies of the normalizer's tests, with the content type their extension
/// stands for (cases needing extra headers or meant to fail are skipped).
fn fixtures() -> Vec<(Provider, PathBuf, &'static str)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/mailpipe-normalize-core/tests/fixtures");
    let mut out = Vec::new();
    for provider in Provider::ALL {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(provider.as_str()))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let content_type = match path.extension().and_then(|e| e.to_str()) {
                Some("json") => "application/json",
                Some("txt") => "text/plain; charset=UTF-8",
                Some("form") => "application/x-www-form-urlencoded",
                _ => continue,
            };
            if name.starts_with("invalid-") || path.with_extension("headers").exists() {
                continue;
            }
            out.push((provider, path, content_type));
        }
    }
    out
}

fn verified(id: usize, provider: Provider, content_type: &str, body: Vec<u8>) -> VerifiedRecord {
    VerifiedRecord {
        request_id: format!("req-{id}"),
        received_at: 1_717_000_000_000,
        provider: provider.as_str().into(),
        source: "main".into(),
        method: "POST".into(),
        path: format!("/webhooks/{provider}"),
        query: String::new(),
        headers: vec![Header {
            name: "content-type".into(),
            value: content_type.as_bytes().to_vec(),
        }],
        remote_addr: None,
        body,
        verified_at: 1_717_000_000_001,
        kind: VerifiedKind::Events,
        control_action: None,
        key_index: Some(0),
    }
}

/// A geolocation file covering 203.0.113.0/24 (the documentation addresses many fixtures'
/// opens and clicks come from) and nothing else.
fn geo_database(dir: &Path) -> PathBuf {
    use mailpipe_enrich::mmdb_writer::write_city_database;
    let fields = mailpipe_enrich::GeoFields::new("NZ", "AUK", "Auckland");
    let bytes = write_city_database(&[("203.0.113.0".parse().unwrap(), 24, fields)], 6).unwrap();
    let path = dir.join("test-city.mmdb");
    std::fs::write(&path, bytes).unwrap();
    path
}

fn expected_events(record: &VerifiedRecord) -> Vec<EmailEvent> {
    let headers: Vec<(String, Vec<u8>)> = record
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    let input = ParseInput {
        source: &record.source,
        raw_request_id: &record.request_id,
        received_at_ms: record.received_at,
        headers: &headers,
        query: "",
        body: &record.body,
    };
    parse(record.provider.parse().unwrap(), &input).unwrap()
}

#[tokio::test]
async fn verified_requests_become_events_or_dead_letters() {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name("norm"));
    let geo_dir = tempfile::tempdir().unwrap();
    settings.enrichment.geoip_database = geo_database(geo_dir.path()).display().to_string();
    let enricher =
        mailpipe_stage_3_normalize::enrich::Enricher::from_settings(&settings.enrichment).unwrap();
    let names = TopicNames::new(&settings.kafka.topic_prefix);
    let (verified_topic, events_topic, dlq_topic) = (
        names.name(Topic::Verified),
        names.name(Topic::Events),
        names.name(Topic::Dlq),
    );
    // One input partition, so the input order is one total order the outputs must keep
    // per recipient (mail.events has two partitions: recipients spread over both).
    create_topic(&verified_topic, 1).await;
    create_topic(&events_topic, 2).await;
    create_topic(&dlq_topic, 1).await;

    // Inputs: every valid fixture, one garbage request, one control record.
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for (i, (provider, path, content_type)) in fixtures().into_iter().enumerate() {
        let record = verified(i, provider, content_type, std::fs::read(path).unwrap());
        expected.extend(expected_events(&record).into_iter().map(|mut e| {
            enricher.enrich(&mut e);
            e
        }));
        inputs.push(record);
    }
    let providers: BTreeSet<&str> = inputs.iter().map(|r| r.provider.as_str()).collect();
    assert_eq!(providers.len(), 12, "a fixture of every provider");
    let garbage = verified(
        10_000,
        Provider::Sendgrid,
        "application/json",
        b"{not json".to_vec(),
    );
    inputs.push(garbage.clone());
    let mut control = verified(10_001, Provider::Ses, "text/plain", b"{}".to_vec());
    control.kind = VerifiedKind::Control;
    control.control_action = Some("sns_subscription_confirmed".into());
    inputs.push(control);

    let codec = AvroCodec::new(&settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&verified_topic, VERIFIED_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let producer = mailpipe_kafka::create_producer(&settings.kafka).unwrap();
    let mut garbage_payload = Vec::new();
    for record in &inputs {
        let payload = schema.encode(record, record.body.len()).unwrap();
        if record.request_id == garbage.request_id {
            garbage_payload = payload.clone();
        }
        let r = FutureRecord::to(&verified_topic)
            .key(record.request_id.as_bytes())
            .payload(payload.as_slice());
        mailpipe_kafka::send_and_wait(&producer, r, Duration::from_secs(10))
            .await
            .unwrap();
    }

    let shutdown = CancellationToken::new();
    let stage = tokio::spawn(mailpipe_stage_3_normalize::run(
        settings.clone(),
        shutdown.clone(),
    ));

    let events = consume_exactly(&events_topic, expected.len()).await;
    let mut seen_ids = BTreeSet::new();
    let mut seen_order: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    let expected_by_id: BTreeMap<&str, &EmailEvent> =
        expected.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let (mut classified, mut located, mut machine) = (0, 0, 0);
    for (key, payload) in &events {
        let event: EmailEvent = codec.decode(payload).await.unwrap();
        // Every field as parsed and enriched here, enrichment included.
        assert_eq!(Some(&&event), expected_by_id.get(event.event_id.as_str()));
        classified += usize::from(event.client_name.is_some() || event.device_class.is_some());
        located += usize::from(event.geo_source.as_deref() == Some("ip_database"));
        machine += usize::from(event.machine_open == Some(true));
        assert_eq!(
            key.as_deref(),
            event.recipient.as_deref().map(str::as_bytes),
            "key = recipient"
        );
        seen_ids.insert(event.event_id.clone());
        seen_order
            .entry(event.recipient.clone())
            .or_default()
            .push(event.event_id.clone());
    }
    let expected_ids: BTreeSet<String> = expected.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(seen_ids, expected_ids);
    // The fixtures' opens and clicks gave the enrichment something to do.
    assert!(
        classified >= 5,
        "{classified} events with a client or device"
    );
    assert!(
        located >= 3,
        "{located} events located from the IP database"
    );
    assert!(
        machine >= 1,
        "{machine} machine opens (a provider's own flag)"
    );
    // Each recipient's events in input order (a recipient's key maps to one partition).
    // Events without a recipient carry no key: librdkafka spreads them over the
    // partitions, so no order is promised among them.
    let mut expected_order: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for event in &expected {
        expected_order
            .entry(event.recipient.clone())
            .or_default()
            .push(event.event_id.clone());
    }
    assert!(
        expected_order.keys().filter(|r| r.is_some()).count() > 1,
        "fixtures name several recipients"
    );
    seen_order.remove(&None);
    expected_order.remove(&None);
    assert_eq!(seen_order, expected_order, "per-recipient order");

    let dead = consume_exactly(&dlq_topic, 1).await;
    let letter: DeadLetterRecord = codec.decode(&dead[0].1).await.unwrap();
    assert_eq!(letter.reason, "not_json");
    assert_eq!(
        letter.raw_request_id.as_deref(),
        Some(garbage.request_id.as_str())
    );
    assert_eq!(letter.topic, verified_topic);
    assert_eq!(
        letter.payload, garbage_payload,
        "the input's value, byte for byte"
    );

    // Every input completed (outputs acknowledged) → the whole topic is committed.
    let group = format!("{}mailpipe-normalize", settings.kafka.topic_prefix);
    let total = inputs.len() as i64;
    let committed = wait_for_committed_total(&group, &verified_topic, 1, total).await;
    assert_eq!(committed, total);
    shutdown.cancel();
    stage.await.unwrap().unwrap();
    println!(
        "{} inputs -> {} events, 1 dead letter",
        inputs.len(),
        expected.len()
    );
}
