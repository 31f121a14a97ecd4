//! Shared by the integration tests: a receiver on port 0 with its own topic prefix, a
//! raw-topic reader that decodes records with the shipped schema, and a bare HTTP/1.1
//! client whose bytes on the wire are exactly the test's.
#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use mailpipe_settings::Settings;
use mailpipe_test_support::{create_topic, dev_settings, unique_name};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Dev settings (stack addresses from `MAILPIPE_*`), a fresh topic prefix and no rate
/// limits (tests that want them set them).
pub fn test_settings(label: &str) -> Settings {
    let mut settings = dev_settings();
    settings.kafka.topic_prefix = format!("{}.", unique_name(label));
    settings.receiver.rate_limit.per_source_per_second = 0.0;
    settings.receiver.rate_limit.per_ip_per_second = 0.0;
    settings.receiver.readiness_interval_ms = 250;
    settings
}

pub fn raw_topic(settings: &Settings) -> String {
    format!("{}mail.raw", settings.kafka.topic_prefix)
}

/// A receiver running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Cancels and waits for `run` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("receiver task")
    }
}

/// Creates the raw topic (1 partition) and starts a receiver on 127.0.0.1:0.
pub async fn start_with_topic(settings: Settings) -> Running {
    create_topic(&raw_topic(&settings), 1).await;
    start(settings, true).await
}

/// Starts `run` on a port-0 listener; waits for `/readyz` when `wait_ready`.
pub async fn start(settings: Settings, wait_ready: bool) -> Running {
    if std::env::var_os("RUST_LOG").is_some() {
        mailpipe_telemetry::init_logging(&settings.telemetry).unwrap();
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(mailpipe_stage_1_receiver::run(
        settings,
        listener,
        shutdown.clone(),
    ));
    let running = Running {
        addr,
        shutdown,
        task,
    };
    if wait_ready {
        let deadline = Instant::now() + Duration::from_secs(30);
        while get_status(&running.url("/readyz")).await != 200 {
            assert!(Instant::now() < deadline, "receiver not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    running
}

/// The status of a GET, 0 when there is no answer (within 10 s).
pub async fn get_status(url: &str) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    match client.get(url).send().await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// One raw record, decoded.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub key: String,
    pub schema_id: u32,
    pub fields: Vec<(String, Value)>,
}

impl Decoded {
    pub fn field(&self, name: &str) -> &Value {
        &self.fields.iter().find(|(n, _)| n == name).expect(name).1
    }

    pub fn string(&self, name: &str) -> String {
        match self.field(name) {
            Value::String(s) => s.clone(),
            other => panic!("{name} is {other:?}"),
        }
    }

    pub fn bytes(&self, name: &str) -> Vec<u8> {
        match self.field(name) {
            Value::Bytes(b) => b.clone(),
            other => panic!("{name} is {other:?}"),
        }
    }

    /// Headers as (name, value bytes), in record order.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        let Value::Array(items) = self.field("headers") else {
            panic!("headers not an array")
        };
        items
            .iter()
            .map(|item| match item {
                Value::Record(f) => match (&f[0].1, &f[1].1) {
                    (Value::String(n), Value::Bytes(v)) => (n.clone(), v.clone()),
                    other => panic!("bad header {other:?}"),
                },
                other => panic!("bad header {other:?}"),
            })
            .collect()
    }
}

/// Reads `count` records of partition 0 of `topic` from the beginning, on `brokers`.
pub async fn read_raw(brokers: &str, topic: &str, count: usize) -> Vec<Decoded> {
    read_raw_until(brokers, topic, move |records| records.len() >= count).await
}

/// Reads partition 0 of `topic` from the beginning until `done` says so (30 s at most).
pub async fn read_raw_until(
    brokers: &str,
    topic: &str,
    done: impl Fn(&[Decoded]) -> bool + Send + 'static,
) -> Vec<Decoded> {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let schema = mailpipe_avro::parse_schema(mailpipe_avro::RAW_REQUEST_SCHEMA).unwrap();
        let reader = apache_avro::reader::datum::GenericDatumReader::builder(&schema)
            .build()
            .unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", unique_name("raw-reader"))
            .set("enable.auto.commit", "false")
            // A raw record can be as large as a body (5 MiB) plus headers.
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.max.bytes", "67108864")
            .create()
            .unwrap();
        let mut partitions = TopicPartitionList::new();
        partitions
            .add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&partitions).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut out = Vec::new();
        while !done(&out) {
            assert!(
                Instant::now() < deadline,
                "gave up after {} records",
                out.len()
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.unwrap();
            let payload = message.payload().unwrap();
            let schema_id = mailpipe_avro::schema_id(payload).expect("Confluent framing");
            let Value::Record(fields) = reader.read_value(&mut &payload[5..]).unwrap() else {
                panic!("not a record")
            };
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            out.push(Decoded {
                key,
                schema_id,
                fields,
            });
        }
        out
    })
    .await
    .unwrap()
}

/// High watermark of partition 0 (records acknowledged so far).
pub async fn high_watermark(brokers: &str, topic: &str) -> i64 {
    let (brokers, topic) = (brokers.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .unwrap();
        consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .unwrap()
            .1
    })
    .await
    .unwrap()
}

/// A response read off the wire.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends `request` bytes as they are on a new connection (which should ask for
/// `Connection: close`) and reads until the server closes.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    read_response(&mut stream).await
}

/// Reads one response until EOF (or reset, keeping what arrived).
pub async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut bytes)).await;
    parse_response(&bytes)
}

pub fn parse_response(bytes: &[u8]) -> RawResponse {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body) = match split {
        Some(at) => (&bytes[..at], bytes[at + 4..].to_vec()),
        None => (bytes, Vec::new()),
    };
    let head = String::from_utf8_lossy(head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    RawResponse { status, head, body }
}
