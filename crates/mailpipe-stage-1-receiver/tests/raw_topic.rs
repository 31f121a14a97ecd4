//! Against the local stack (broker + schema registry): a POST for each of the 12 providers
//! lands on the raw topic with body and headers byte-identical, the 200 is sent only once
//! the record is in the log, near-limit bodies fit in one record, and a receiver on port 0
//! drains in-flight requests on shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{high_watermark, raw_exchange, raw_topic, read_raw, start_with_topic, test_settings};
use mailpipe_model::Provider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Headers as sent: names in their original case, values as bytes.
type SentHeaders = Vec<(&'static str, Vec<u8>)>;

/// A provider's typical request: path, headers and body.
fn sample(provider: Provider) -> (String, SentHeaders, Vec<u8>) {
    let json = |s: &str| s.as_bytes().to_vec();
    let ct_json = ("Content-Type", json("application/json"));
    let (headers, body): (Vec<(&str, Vec<u8>)>, Vec<u8>) = match provider {
        Provider::Sendgrid => (
            vec![
                ct_json,
                ("X-Twilio-Email-Event-Webhook-Signature", json("MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2jEMNNVBKz7vWU=")),
                ("X-Twilio-Email-Event-Webhook-Timestamp", json("1600112502")),
            ],
            json(r#"[{"email":"a@example.com","event":"delivered","sg_event_id":"x1","timestamp":1600112492}]"#),
        ),
        Provider::Mailgun => (
            vec![ct_json],
            json(r#"{"signature":{"timestamp":"1529006854","token":"a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0","signature":"d2271d12299f6592d9d44cd9d250f0704e4674c30d79d07c47a66f95ce71cf55"},"event-data":{"event":"opened","id":"Ase7i2zsRYeDXztHGENqRA"}}"#),
        ),
        Provider::Postmark => (
            vec![ct_json, ("Authorization", json("Basic dXNlcjpwYXNz"))],
            json(r#"{"RecordType":"Delivery","MessageID":"00000000-0000-0000-0000-000000000000","Recipient":"john@example.com"}"#),
        ),
        Provider::Ses => (
            vec![
                ("Content-Type", json("text/plain; charset=UTF-8")),
                ("x-amz-sns-message-type", json("Notification")),
                ("x-amz-sns-message-id", json("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")),
                ("x-amz-sns-topic-arn", json("arn:aws:sns:us-west-2:123456789012:MyTopic")),
            ],
            json(r#"{"Type":"Notification","MessageId":"22b80b92","Message":"{\"notificationType\":\"Bounce\"}","SignatureVersion":"1","Signature":"EXAMPLEpH+=="}"#),
        ),
        Provider::Mandrill => (
            vec![
                ("Content-Type", json("application/x-www-form-urlencoded")),
                ("X-Mandrill-Signature", json("X2ZjNmQ3YjRiYzE0NWU0ZDQ1OTY=")),
            ],
            json("mandrill_events=%5B%7B%22event%22%3A%22send%22%2C%22_id%22%3A%22abc%22%7D%5D"),
        ),
        Provider::Sparkpost => (
            vec![ct_json, ("Authorization", json("Basic c3Bhcms6cG9zdA=="))],
            json(r#"[{"msys":{"message_event":{"type":"bounce","event_id":"92356927693813856"}}}]"#),
        ),
        Provider::Resend => (
            vec![
                ct_json,
                ("svix-id", json("msg_p5jXN8AQM9LWM0D4loKWxJek")),
                ("svix-timestamp", json("1614265330")),
                ("svix-signature", json("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1,bm9ldHUjKzFob2l1aGZ1")),
            ],
            json(r#"{"type":"email.delivered","created_at":"2024-02-22T23:41:12.126Z","data":{"email_id":"56761188"}}"#),
        ),
        Provider::Brevo => (
            vec![ct_json, ("Authorization", json("Bearer brevo-token"))],
            json(r#"{"event":"delivered","email":"example@domain.com","id":26224,"message-id":"<201798300811.5787683@relay.domain.com>"}"#),
        ),
        Provider::Mailjet => (
            vec![ct_json, ("Authorization", json("Basic bWo6cHc="))],
            json(r#"[{"event":"sent","time":1433333949,"MessageID":19421777835146490,"email":"api@mailjet.com"}]"#),
        ),
        Provider::Mailersend => (
            vec![ct_json, ("Signature", json("a5d3b7b8c9e2f1a0b4c6d8e0f2a4c6e8"))],
            json(r#"{"type":"activity.delivered","data":{"email":{"id":"62fb66bef54a112e920b5493"}}}"#),
        ),
        Provider::Postal => (
            vec![
                ct_json,
                ("X-Postal-Signature", json("kGx4F0qXN5S2mKvqXkE3bA==")),
                ("X-Postal-Signature-256", json("c2lnbmF0dXJlLTI1Ng==")),
            ],
            json(r#"{"event":"MessageDelivered","payload":{"message":{"id":12345}},"uuid":"e2e5b8a9"}"#),
        ),
        Provider::Generic => (
            vec![
                ("Content-Type", json("application/octet-stream")),
                ("X-Signature", json("3f1c2a")),
                // Not UTF-8 (obs-text): kept as bytes.
                ("X-Note", vec![b'c', b'a', b'f', 0xE9, b' ', b'x']),
                // Repeated, interleaved: grouped under the first occurrence.
                ("X-Dup", json("one")),
                ("X-Between", json("b")),
                ("X-Dup", json("two, three")),
            ],
            vec![0, 1, 2, 0xff, 0xfe, b'\r', b'\n', 0x80],
        ),
    };
    (format!("/webhooks/{provider}"), headers, body)
}

fn wire_request(
    path: &str,
    query: &str,
    host: &str,
    headers: &[(&str, Vec<u8>)],
    body: &[u8],
) -> (Vec<u8>, Vec<(String, Vec<u8>)>) {
    let mut all: Vec<(String, Vec<u8>)> = vec![("Host".into(), host.as_bytes().to_vec())];
    all.extend(headers.iter().map(|(n, v)| (n.to_string(), v.clone())));
    all.push(("Content-Length".into(), body.len().to_string().into_bytes()));
    all.push(("Connection".into(), b"close".to_vec()));
    let mut wire = format!("POST {path}?{query} HTTP/1.1\r\n").into_bytes();
    for (name, value) in &all {
        wire.extend_from_slice(name.as_bytes());
        wire.extend_from_slice(b": ");
        wire.extend_from_slice(value);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"\r\n");
    wire.extend_from_slice(body);
    // Expected in the record: names lower-cased, values as sent, repeated names grouped.
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in all {
        let name = name.to_ascii_lowercase();
        let at = expected
            .iter()
            .rposition(|(n, _)| *n == name)
            .map(|i| i + 1);
        match at {
            Some(i) => expected.insert(i, (name, value)),
            None => expected.push((name, value)),
        }
    }
    (wire, expected)
}

#[tokio::test]
async fn a_post_for_each_provider_lands_byte_identical() {
    let settings = test_settings("rcv-providers");
    let brokers = settings.kafka.brokers.clone();
    let registry = settings.schema_registry.url.clone();
    let topic = raw_topic(&settings);
    let receiver = start_with_topic(settings).await;
    let host = receiver.addr.to_string();
    let mut sent = Vec::new();
    for provider in Provider::ALL {
        let (path, headers, body) = sample(provider);
        let (wire, expected_headers) =
            wire_request(&path, "trace=1&x=%20y", &host, &headers, &body);
        let response = raw_exchange(receiver.addr, &wire).await;
        assert_eq!(response.status, 200, "{provider}: {}", response.head);
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let id = json["request_id"].as_str().unwrap().to_owned();
        sent.push((provider, id, path, expected_headers, body));
    }
    let records = read_raw(&brokers, &topic, sent.len()).await;
    let subject: serde_json::Value =
        reqwest::get(format!("{registry}/subjects/{topic}-value/versions/latest"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    for (provider, id, path, headers, body) in sent {
        let record = records
            .iter()
            .find(|r| r.key == id)
            .unwrap_or_else(|| panic!("{provider}: {id} not on {topic}"));
        assert_eq!(
            u64::from(record.schema_id),
            subject["id"].as_u64().unwrap(),
            "registered schema id"
        );
        assert_eq!(record.string("request_id"), id);
        assert_eq!(record.string("provider"), provider.as_str());
        assert_eq!(record.string("source"), provider.as_str());
        assert_eq!(
            (record.string("method"), record.string("path")),
            ("POST".into(), path)
        );
        assert_eq!(record.string("query"), "trace=1&x=%20y");
        assert_eq!(record.bytes("body"), body, "{provider}: body");
        assert_eq!(record.headers(), headers, "{provider}: headers");
        let remote = apache_avro::types::Value::Union(
            1,
            Box::new(apache_avro::types::Value::String("127.0.0.1".into())),
        );
        assert_eq!(record.field("remote_addr"), &remote);
    }
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn each_200_comes_after_the_record_is_in_the_log() {
    let settings = test_settings("rcv-ack");
    let brokers = settings.kafka.brokers.clone();
    let topic = raw_topic(&settings);
    let receiver = start_with_topic(settings).await;
    let client = reqwest::Client::new();
    for i in 1..=5 {
        let response = client
            .post(receiver.url("/webhooks/postmark"))
            .header("content-type", "application/json")
            .body(format!("{{\"n\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // Read right after the 200: the acknowledged record is already in the log.
        assert_eq!(high_watermark(&brokers, &topic).await, i);
    }
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_near_the_limit_fits_in_one_record() {
    let settings = test_settings("rcv-large");
    let brokers = settings.kafka.brokers.clone();
    let topic = raw_topic(&settings);
    let limit = settings.receiver.max_body_bytes as usize;
    let receiver = start_with_topic(settings).await;
    // Exactly the limit: the record is the body plus its headers, which the receiver's
    // producer and the local broker (message.max.bytes 16 MiB) both allow.
    let body: Vec<u8> = (0..limit).map(|i| (i % 251) as u8).collect();
    let response = reqwest::Client::new()
        .post(receiver.url("/webhooks/generic"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let records = read_raw(&brokers, &topic, 1).await;
    assert_eq!(records[0].bytes("body"), body);
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn end_to_end_on_port_0_with_graceful_shutdown() {
    let mut settings = test_settings("rcv-e2e");
    settings.receiver.shutdown_timeout_ms = 10_000;
    let brokers = settings.kafka.brokers.clone();
    let topic = raw_topic(&settings);
    let receiver = start_with_topic(settings).await;
    assert_ne!(receiver.addr.port(), 0);
    // A request whose body is still arriving when shutdown starts: its head asks for
    // `100 Continue`, which the server sends once the handler reads the body, so the
    // request is known to be in the handler before shutdown starts.
    let mut slow = TcpStream::connect(receiver.addr).await.unwrap();
    let head = "POST /webhooks/sendgrid HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                Content-Length: 9\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
    slow.write_all(head.as_bytes()).await.unwrap();
    let interim = read_until_blank_line(&mut slow).await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
    slow.write_all(b"[{\"a\"").await.unwrap();
    receiver.shutdown.cancel();
    // ...no longer accepts new connections (once the listener is dropped)...
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(receiver.addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 15 s after shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...but the in-flight request is finished and acknowledged.
    slow.write_all(b":1}]").await.unwrap();
    let response = common::read_response(&mut slow).await;
    assert_eq!(response.status, 200, "{}", response.head);
    let stopped = tokio::time::timeout(Duration::from_secs(15), receiver.task).await;
    stopped
        .expect("run returns after draining")
        .unwrap()
        .unwrap();
    let records = read_raw(&brokers, &topic, 1).await;
    assert_eq!(records[0].bytes("body"), b"[{\"a\":1}]");
}

/// Reads an interim response head (up to its blank line), at most 30 s.
async fn read_until_blank_line(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let read = async {
        let mut byte = [0u8; 1];
        while !bytes.ends_with(b"\r\n\r\n") {
            match stream.read(&mut byte).await {
                Ok(1) => bytes.push(byte[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("an interim response within 30 s");
    String::from_utf8_lossy(&bytes).into_owned()
}
