//! The verify stage's unit tests (its handler against in-process sources).

use super::*;
use mailpipe_avro::records::VerifiedKind;
use mailpipe_verify_core::{testing, SourceOptions};

fn settings_with(sources: &[(&str, Provider)]) -> Settings {
    let mut settings = Settings::load_from(None).unwrap();
    for (id, provider) in sources {
        let source = serde_json::json!({"provider": provider.as_str(), "secrets": ["k"]});
        settings
            .sources
            .insert(id.to_string(), serde_json::from_value(source).unwrap());
    }
    settings
}

fn envelope(provider: &str, source: &str) -> Envelope {
    Envelope {
        provider: provider.into(),
        source: source.into(),
        remote_addr: None,
    }
}

#[test]
fn a_source_is_found_only_under_its_own_provider() {
    let sources = Sources::new(&settings_with(&[
        ("acme", Provider::Mailgun),
        ("generic", Provider::Generic),
    ]));
    let found = |p: &str, s: &str| sources.find(&envelope(p, s)).map(|(id, _)| id.to_string());
    assert_eq!(found("mailgun", "acme").as_deref(), Some("acme"));
    assert_eq!(found("generic", "generic").as_deref(), Some("generic"));
    assert_eq!(found("sendgrid", "acme"), None, "provider mismatch");
    assert_eq!(found("mailgun", "other"), None, "not configured");
    assert_eq!(found("nosuch", "acme"), None, "unknown provider");
}

#[test]
fn unknown_sources_lose_every_providers_credential_headers() {
    let headers: Vec<(String, Vec<u8>)> = [
        "authorization",
        "x-twilio-email-event-webhook-signature",
        "svix-signature",
        "x-postal-signature-256",
        "x-mandrill-signature",
        "signature",
        "x-signature",
        "content-type",
    ]
    .iter()
    .map(|n| (n.to_string(), b"secret".to_vec()))
    .collect();
    let request = StrippedRequest::of_unknown_source(Request {
        headers,
        ..Request::default()
    });
    let headers = &request.request().headers;
    let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["content-type"]);
}

/// Every provider's signed example verifies through the stage's verifier (SES with its
/// certificate already cached: no fetch), and its verified record carries no credential.
#[tokio::test]
async fn signed_examples_verify_and_leave_no_credentials() {
    let now = 1_764_000_000;
    for provider in Provider::ALL {
        let example = testing::example(provider, now);
        let mut verifier = Verifier::new(&settings_with(&[])).unwrap();
        verifier.certificates = example.certificates.clone();
        let request = example.request.clone();
        let Checked::Done(verified) = verifier
            .verify(request, &example.source, Fetch::Later)
            .await
        else {
            panic!("{provider}: deferred although its certificate is cached");
        };
        let verified = verified.unwrap_or_else(|e| panic!("{provider}: {e}"));
        let labels = Labels {
            provider: provider.as_str(),
            source: "s".into(),
        };
        let outcome = verifier.act_on(&verified, &labels).await;
        assert_eq!(outcome, Outcome::Events, "{provider}");
        let record = records::verified_record(
            verified,
            envelope(provider.as_str(), "s"),
            &outcome,
            now * 1000,
        );
        assert_eq!(record.kind, VerifiedKind::Events);
        for header in &record.headers {
            let value = String::from_utf8_lossy(&header.value);
            assert!(
                !header.name.contains("signature") && header.name != "authorization",
                "{provider}: {} kept",
                header.name
            );
            for secret in testing::EXAMPLE_SECRETS {
                assert!(
                    !value.contains(secret),
                    "{provider}: secret in {}",
                    header.name
                );
            }
        }
    }
}

/// An SNS message whose certificate URL does not answer is deferred (its URL noted
/// once), the batch's fetch gives up after the budget, and from then on the URL is
/// refused at once as certificate_unavailable, without another fetch.
#[tokio::test]
async fn an_unanswering_certificate_url_costs_one_budget_then_is_refused_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let arn = "arn:aws:sns:us-east-1:1:t";
    let source = SourceConfig::new(
        Provider::Ses,
        &[],
        SourceOptions {
            sns_topic_arns: vec![arn.into()],
            sns_insecure_loopback: true,
            ..SourceOptions::default()
        },
    );
    let fields = [
        ("Type", "Notification"),
        ("MessageId", "m-1"),
        ("TopicArn", arn),
        ("Timestamp", "2023-11-14T22:13:20.000Z"),
        ("Message", "{}"),
    ];
    let url = format!("http://127.0.0.1:{port}/c.pem");
    let body = testing::sns_message(&testing::rsa_keys()[0], 2, &url, &fields);
    let request = testing::request(&[], &body, 1_700_000_000);
    let mut settings = settings_with(&[]);
    settings.verify.certificate_fetch_budget_ms = 1000;
    let mut verifier = Verifier::new(&settings).unwrap();
    for _ in 0..2 {
        assert!(matches!(
            verifier
                .verify(request.clone(), &source, Fetch::Later)
                .await,
            Checked::Deferred
        ));
    }
    assert_eq!(verifier.wanted.len(), 1, "one fetch per URL");
    let started = std::time::Instant::now();
    verifier.start_wanted();
    verifier.start_wanted();
    assert_eq!(verifier.fetching.len(), 1, "one fetch under way per URL");
    assert!(!verifier.collect_fetched(), "started in the background");
    verifier.await_fetches().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    for fetch in [Fetch::Now, Fetch::Later] {
        let started = std::time::Instant::now();
        let Checked::Done(Err(Rejected { rejection, .. })) =
            verifier.verify(request.clone(), &source, fetch).await
        else {
            panic!("not rejected");
        };
        assert_eq!(rejection.reason, Reason::CertificateUnavailable);
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "fetched again"
        );
    }
}

#[test]
fn clip_keeps_at_most_64_characters_on_a_char_boundary() {
    assert_eq!(clip("acme"), "acme");
    let long = "é".repeat(100);
    assert_eq!(clip(&long).chars().count(), 64);
}
