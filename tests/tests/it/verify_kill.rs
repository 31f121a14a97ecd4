//! Kill test of the verify stage (issue 16): the real `mailpipe-verify` binary works through
//! 50,000 raw requests on 4 partitions — signed samples of all twelve providers
//! (`mailpipe-samples` with the development keys of config/; SES with the certificate of a
//! loopback `mailpipe serve-dev-cert`), one in twenty of each provider's forged, stale or
//! malformed — and is
//! SIGKILLed at seeded random points spread over the input (`VERIFY_KILL_COUNT` kills,
//! default 6, at least 5), restarted each time with the same instance id, until its consumer
//! group has committed the whole input. Then `mail.verified`, `mail.rejected` and `mail.dlq`,
//! read `read_committed`, must hold exactly one output per request (0 missing, 0 extra), keyed
//! by its request id, on the topic its signature decides. With
//! `MAILPIPE_KAFKA__EXACTLY_ONCE=false` (the at-least-once path) extra copies are printed,
//! not asserted. The harness: `mailpipe_test_support::kill`.
//!
//! Ignored in `make test`; `make chaos` (scripts/chaos.sh) runs it, or by hand against a
//! running stack:
//! `cargo test -p mailpipe-tests --test it -- verify_kill:: --ignored --nocapture`.
//! The binaries must be built (`cargo build -p mailpipe-stage-2-verify -p mailpipe`).
//! `VERIFY_KILL_SEED` replays one schedule.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use mailpipe_avro::records::{DeadLetterRecord, RejectedRecord, VerifiedRecord};
use mailpipe_avro::{AvroCodec, TopicSchema, RAW_REQUEST_SCHEMA};
use mailpipe_kafka::Topic;
use mailpipe_model::Provider;
use mailpipe_samples::{plan, render, Bad, DevKeys, PlanOptions, WebhookRequest};
use mailpipe_stage::Stage;
use mailpipe_telemetry::names;
use mailpipe_test_support::kill::{compare, partition_of, Expected, Input, KillTest, Observed};
use mailpipe_test_support::pipeline::DevCertServer;
use mailpipe_test_support::{dev_config_path, raw_record, Rng};

const REQUESTS: usize = 50_000;
/// Every BAD_EVERY-th request of each provider is spoiled (forged, stale or malformed).
const BAD_EVERY: usize = 20;
const PARTITIONS: i32 = 4;

/// Requests of `provider` among the REQUESTS: SES and Postal samples are signed with RSA
/// (~5 ms a signature in this build), so they get 1,000 each and the other ten 4,800.
fn share(provider: Provider) -> usize {
    match provider {
        Provider::Ses | Provider::Postal => 1_000,
        _ => (REQUESTS - 2_000) / 10,
    }
}

/// `REQUESTS` signed requests at `now` (Unix seconds) of every provider, shuffled; one in
/// BAD_EVERY of each provider's is spoiled.
fn requests(seed: u64, now: i64, keys: &DevKeys) -> Vec<WebhookRequest> {
    let mut rng = Rng::new(seed);
    let mut batches = Vec::with_capacity(REQUESTS);
    for provider in Provider::ALL {
        let n = share(provider);
        let bad_n = n / BAD_EVERY;
        for (bad, wanted) in [(false, n - bad_n), (true, bad_n)] {
            // A request carries one to twelve events: plan enough events, take requests.
            let options = PlanOptions {
                seed: rng.next_u64(),
                count: wanted * 12,
                providers: vec![provider],
                duplicates: 0.0,
                bad,
                now_ms: now * 1000,
            };
            let planned = plan(&options).batches;
            assert!(
                planned.len() >= wanted,
                "{provider}: too few requests planned"
            );
            batches.extend(planned.into_iter().take(wanted));
        }
    }
    assert_eq!(batches.len(), REQUESTS);
    rng.shuffle(&mut batches);
    batches
        .iter()
        .map(|batch| render(batch, keys, now).expect("rendering a sample"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "chaos: minutes of broker load; run by `make chaos` (scripts/chaos.sh)"]
async fn sigkilled_verify_stage_emits_one_output_per_request() {
    let mut test = KillTest::new(Stage::Verify, 0x7665_7269_6679, PARTITIONS);
    test.create_topics(&[
        (Topic::Verified, PARTITIONS),
        (Topic::Rejected, 2),
        (Topic::Dlq, 1),
    ])
    .await;
    test.metrics = vec![
        names::VERIFY_VERIFIED,
        names::VERIFY_REJECTED,
        names::VERIFY_FETCHES,
    ];
    let cert_server = DevCertServer::start();
    test.env.push((
        "MAILPIPE_SOURCES__SES__SNS_INSECURE_LOOPBACK".into(),
        "true".into(),
    ));

    let keys_dir = dev_config_path().parent().unwrap().join("dev-keys");
    let keys = DevKeys::load(&test.settings, &keys_dir, &Provider::ALL, &cert_server.url)
        .expect("the development keys");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let seed = test.seed;
    let rendering = std::time::Instant::now();
    let requests = tokio::task::spawn_blocking(move || requests(seed, now, &keys))
        .await
        .unwrap();
    eprintln!(
        "verify kill test: {} requests rendered in {:.1} s",
        requests.len(),
        rendering.elapsed().as_secs_f64()
    );

    let codec = AvroCodec::new(&test.settings.schema_registry.url).unwrap();
    let schema = codec
        .register(&TopicSchema::new(&test.input_topic, RAW_REQUEST_SCHEMA).unwrap())
        .await
        .unwrap();
    let mut inputs = Vec::with_capacity(requests.len());
    let mut expected = Vec::with_capacity(requests.len());
    // Where each request must end: a spoiled signature or timestamp is rejected, a
    // malformed body verifies (normalize dead-letters it).
    let mut expected_topic = BTreeMap::new();
    for (i, request) in requests.iter().enumerate() {
        let id = format!("req-{i}");
        let record = raw_record(id.clone(), request, now * 1000);
        let partition = partition_of(id.as_bytes(), PARTITIONS);
        inputs.push(Input {
            key: id.clone().into_bytes(),
            payload: schema.encode(&record, record.body.len() + 512).unwrap(),
            partition,
        });
        let topic = match request.bad {
            Some(Bad::Forged | Bad::Stale) => Topic::Rejected,
            None | Some(Bad::Malformed) => Topic::Verified,
        };
        expected_topic.insert(id.clone(), test.topic(topic));
        expected.push(Expected {
            id,
            input_partition: partition,
        });
    }
    drop(requests);

    let run = test.run(inputs).await;

    let (verified_topic, rejected_topic) =
        (test.topic(Topic::Verified), test.topic(Topic::Rejected));
    let mut observed = Vec::with_capacity(run.outputs.len());
    let mut misrouted = Vec::new();
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for output in &run.outputs {
        let id = if output.topic == verified_topic {
            let r: VerifiedRecord = codec.decode(&output.payload).await.unwrap();
            r.request_id
        } else if output.topic == rejected_topic {
            let r: RejectedRecord = codec.decode(&output.payload).await.unwrap();
            *reasons.entry(r.reason).or_default() += 1;
            r.request_id
        } else {
            let letter: DeadLetterRecord = codec.decode(&output.payload).await.unwrap();
            let id = letter.raw_request_id.unwrap_or_default();
            format!("dead letter {id}: {} {}", letter.reason, letter.detail)
        };
        if expected_topic.contains_key(&id) {
            assert_eq!(
                output.key.as_deref(),
                Some(id.as_bytes()),
                "key = request id"
            );
        }
        if expected_topic.get(&id).is_some_and(|t| *t != output.topic) {
            misrouted.push(format!("{id} on {}", output.topic));
        }
        observed.push(Observed {
            topic: output.topic.clone(),
            key: output.key.clone(),
            id,
        });
    }
    eprintln!("verify kill test: rejections by reason {reasons:?}");
    test.check(&run, &compare(&expected, &observed), "raw requests");
    assert!(
        misrouted.is_empty(),
        "{} requests on the wrong topic, e.g. {:?}",
        misrouted.len(),
        &misrouted[..misrouted.len().min(10)]
    );
}
