//! Hostile and broken input: every provider's parser must answer an error (never panic,
//! never hang) for garbage, and must keep its invariants for anything it does accept.
//! A deterministic generator stands in for a fuzzer on stable Rust, so failures replay.

mod common;

use mailpipe_normalize_core::{max_events, parse, EmailEvent, ParseFailure, ParseInput, Provider};
use mailpipe_samples::rng::Rng;

/// Uniform in `0..n`, as an index (the workspace's one seeded generator, SplitMix64).
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

fn run(
    provider: Provider,
    headers: &[(String, Vec<u8>)],
    body: &[u8],
) -> Result<Vec<EmailEvent>, mailpipe_normalize_core::ParseError> {
    let input = ParseInput {
        source: "main",
        raw_request_id: "r",
        received_at_ms: common::RECEIVED_AT,
        headers,
        query: "",
        body,
    };
    let result = parse(provider, &input);
    if let Ok(events) = &result {
        for e in events {
            assert!(
                !e.event_id.is_empty(),
                "{provider}: empty id from {:?}",
                String::from_utf8_lossy(body)
            );
            if let Some(r) = &e.recipient {
                assert_eq!(r, &r.to_lowercase());
            }
        }
    }
    result
}

fn json_headers() -> Vec<(String, Vec<u8>)> {
    vec![("content-type".to_string(), b"application/json".to_vec())]
}

/// Wraps a JSON text where each provider reads JSON, so garbage reaches the inner parsers
/// too (the SNS Message, Mandrill's form field, Mailgun's event-data, SparkPost's msys).
fn wrapped(provider: Provider, json: &str) -> Vec<Vec<u8>> {
    let mut bodies = vec![json.as_bytes().to_vec()];
    match provider {
        Provider::Ses => bodies.push(
            serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": json})
                .to_string()
                .into_bytes(),
        ),
        Provider::Mandrill => bodies.push(
            form_urlencoded::Serializer::new(String::new())
                .append_pair("mandrill_events", json)
                .finish()
                .into_bytes(),
        ),
        Provider::Mailgun => {
            bodies.push(format!(r#"{{"signature":{{}},"event-data":{json}}}"#).into_bytes())
        }
        Provider::Sparkpost => {
            bodies.push(format!(r#"[{{"msys":{{"message_event":{json}}}}}]"#).into_bytes())
        }
        _ => {}
    }
    bodies
}

#[test]
fn garbage_is_an_error_for_every_provider() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let many_numbers = format!("[{}1]", "1,".repeat(100_000));
    let garbage: Vec<&str> = vec![
        "",
        " ",
        "null",
        "true",
        "1",
        "-1e400",
        "\"text\"",
        "[1]",
        "[null]",
        "[[]]",
        "[\"x\"]",
        "{\"a\":1",
        "[{]",
        "{}x",
        "[{\"event\": 12345678901234567890123}]",
        "{\"event\": 1e999}",
        "\u{feff}{}",
        &deep,
        &deep_objects,
        &many_numbers,
    ];
    for provider in Provider::ALL {
        for text in &garbage {
            for body in wrapped(provider, text) {
                if let Ok(events) = run(provider, &json_headers(), &body) {
                    // A few shapes are valid for some providers (an empty wrapper is SparkPost's ping).
                    assert!(
                        events.is_empty(),
                        "{provider} accepted {:?}",
                        &text[..text.len().min(40)]
                    );
                }
            }
        }
        // Invalid UTF-8 where text is required.
        for body in [
            &b"\xff\xfe{}"[..],
            b"[{\"event\":\"open\",\"email\":\"\xc3\x28\"}]",
            b"\x80",
        ] {
            assert!(
                run(provider, &json_headers(), body).is_err(),
                "{provider}: invalid UTF-8 accepted"
            );
        }
    }
}

#[test]
fn batches_of_more_events_than_their_bytes_allow_are_refused_not_truncated() {
    // 2,000 elements of 6 bytes: over the floor of 1,000 and over one per 32 bytes.
    let tiny = r#"{"":0}"#;
    let huge = format!("[{}]", vec![tiny; 2_000].join(","));
    assert!(2_000 > max_events(huge.len()));
    for provider in [
        Provider::Sendgrid,
        Provider::Brevo,
        Provider::Mailjet,
        Provider::Generic,
    ] {
        let err = run(provider, &json_headers(), huge.as_bytes()).unwrap_err();
        assert_eq!(err.failure, ParseFailure::TooManyEvents, "{provider}");
    }
}

#[test]
fn a_large_batch_of_small_real_events_is_accepted() {
    // 30,000 small SendGrid events (~110 bytes each, 3.3 MB: within the default 5 MiB
    // body limit). A fixed cap of 20,000 used to refuse this legitimate batch.
    let events: Vec<String> = (0..30_000)
        .map(|i| {
            format!(
                r#"{{"email":"a{i}@example.com","timestamp":1700000000,"event":"open","sg_event_id":"e{i}"}}"#
            )
        })
        .collect();
    let body = format!("[{}]", events.join(","));
    assert!(body.len() < 5 * 1024 * 1024);
    let parsed = run(Provider::Sendgrid, &json_headers(), body.as_bytes()).unwrap();
    assert_eq!(parsed.len(), 30_000);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    let alphabet = b"{}[]\":,0123456789.-eE truefalsnul\\/u\x00\xff\xc3event";
    for provider in Provider::ALL {
        for _ in 0..300 {
            let len = below(&mut rng, 200);
            let body: Vec<u8> = (0..len)
                .map(|_| {
                    if below(&mut rng, 2) == 0 {
                        rng.pick(alphabet)
                    } else {
                        rng.next_u64() as u8
                    }
                })
                .collect();
            let _ = run(provider, &json_headers(), &body);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    let mut rng = Rng::new(0xD1B5_4A32_D192_ED03);
    let fixtures = common::all();
    let tokens: [&[u8]; 12] = [
        b"{", b"}", b"[", b"]", b"\"", b",", b":", b"null", b"1e999", b"-1", b"\\u0000", b"\xff",
    ];
    for fixture in &fixtures {
        for _ in 0..60 {
            let mut body = fixture.body.clone();
            for _ in 0..=below(&mut rng, 4) {
                let at = below(&mut rng, body.len() + 1);
                match below(&mut rng, 4) {
                    0 if at < body.len() => body[at] ^= 1 << below(&mut rng, 8),
                    1 if at < body.len() => {
                        drop(body.drain(at..(at + below(&mut rng, 16)).min(body.len())))
                    }
                    2 => body
                        .splice(at..at, rng.pick(&tokens).iter().copied())
                        .for_each(drop),
                    _ => body.truncate(at),
                }
            }
            let _ = run(fixture.provider, &fixture.headers, &body);
        }
    }
}
