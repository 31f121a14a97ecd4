//! The sender against a stub receiver on loopback: retries after 503, 429 and a dropped
//! answer until every request is accepted, posts duplicates byte for byte, counts what was
//! accepted, and gives up (and says so) when the receiver never answers 2xx.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use mailpipe_model::Provider;
use mailpipe_samples::send::{run, Progress, RetryPolicy, SendSamples};
use mailpipe_settings::Settings;
use tokio_util::sync::CancellationToken;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn settings() -> Settings {
    Settings::load_from(Some(&repo().join("config/mailpipe.toml"))).unwrap()
}

fn options(url: String, count: usize) -> SendSamples {
    SendSamples {
        url,
        count,
        rate: 0.0,
        concurrency: 4,
        prerender: false,
        providers: Provider::ALL.to_vec(),
        duplicates: 0.0,
        seed: 9,
        bad: false,
        sns_certificate_url: mailpipe_samples::DEFAULT_SNS_CERT_URL.into(),
        dev_keys_dir: repo().join("config/dev-keys"),
        summary_json: None,
        retry: RetryPolicy {
            max_attempts: 6,
            retry_for: Duration::from_secs(20),
            attempt_timeout: Duration::from_secs(5),
        },
        progress: Progress::Off,
    }
}

/// Every POST seen: (path, body), in arrival order.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A receiver that answers the first attempt of a body 503 (Retry-After: 0), the second
/// 429 when the body is long, and 200 from then on.
async fn flaky_receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let attempts: Arc<Mutex<HashMap<Vec<u8>, u32>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |uri: Uri, _: HeaderMap, body: Bytes| {
        let (log, attempts) = (log.clone(), attempts.clone());
        async move {
            log.lock()
                .unwrap()
                .push((uri.path().to_string(), body.to_vec()));
            let attempt = {
                let mut attempts = attempts.lock().unwrap();
                let n = attempts.entry(body.to_vec()).or_default();
                *n += 1;
                *n
            };
            let retry_after = [("retry-after", "0")];
            match attempt {
                1 => (StatusCode::SERVICE_UNAVAILABLE, retry_after).into_response(),
                2 if body.len().is_multiple_of(2) => {
                    (StatusCode::TOO_MANY_REQUESTS, retry_after).into_response()
                }
                _ => (StatusCode::OK, "{\"request_id\":\"x\"}").into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn retries_until_accepted_and_posts_duplicates_unchanged() {
    let (url, seen) = flaky_receiver().await;
    let summary_path = std::env::temp_dir().join(format!(
        "mailpipe-samples-summary-{}.json",
        std::process::id()
    ));
    let options = SendSamples {
        duplicates: 0.5,
        summary_json: Some(summary_path.clone()),
        ..options(url.clone(), 120)
    };
    let summary = run(&settings(), &options, CancellationToken::new())
        .await
        .unwrap();
    assert!(summary.complete(), "{summary}");
    assert_eq!(summary.events.sent, 120);
    assert_eq!(summary.events.accepted, 120);
    assert!(summary.requests.duplicates > 0);
    assert_eq!(summary.requests.accepted, summary.requests.sent);
    assert!(summary.requests.retries >= summary.requests.sent - summary.requests.duplicates);
    let accepted: usize = summary.accepted.values().flat_map(|t| t.values()).sum();
    assert_eq!(accepted, 120);
    assert_eq!(
        summary.accepted.len(),
        Provider::ALL.len(),
        "every provider"
    );

    // Each request's bytes were posted until accepted; a duplicate is the same bytes again.
    let seen = seen.lock().unwrap();
    let mut distinct: HashMap<&[u8], usize> = HashMap::new();
    for (path, body) in seen.iter() {
        assert!(path.starts_with("/webhooks/"), "{path}");
        *distinct.entry(body.as_slice()).or_default() += 1;
    }
    assert_eq!(
        distinct.len(),
        summary.requests.sent - summary.requests.duplicates
    );
    assert_eq!(seen.len(), summary.requests.sent + summary.requests.retries);

    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    std::fs::remove_file(&summary_path).unwrap();
    assert_eq!(written["events"]["accepted"], 120);
    assert_eq!(written["seed"], 9);
    let ses: u64 = written["accepted"]["ses"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(ses as usize, 120 / Provider::ALL.len(), "an even share");
}

#[tokio::test]
async fn prerendered_requests_are_all_accepted_and_duplicates_stay_identical() {
    let (url, seen) = flaky_receiver().await;
    let options = SendSamples {
        duplicates: 0.5,
        prerender: true,
        ..options(url.clone(), 120)
    };
    let summary = run(&settings(), &options, CancellationToken::new())
        .await
        .unwrap();
    assert!(summary.complete(), "{summary}");
    assert_eq!(summary.events.accepted, 120);
    assert!(summary.requests.duplicates > 0);
    assert_eq!(
        summary.accepted.len(),
        Provider::ALL.len(),
        "every provider"
    );
    let seen = seen.lock().unwrap();
    let mut distinct: HashMap<&[u8], usize> = HashMap::new();
    for (_, body) in seen.iter() {
        *distinct.entry(body.as_slice()).or_default() += 1;
    }
    assert_eq!(
        distinct.len(),
        summary.requests.sent - summary.requests.duplicates
    );
}

#[tokio::test]
async fn gives_up_on_a_receiver_that_never_accepts() {
    let app = axum::Router::new().fallback(|| async { StatusCode::BAD_GATEWAY });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let options = SendSamples {
        providers: vec![Provider::Generic, Provider::Postmark],
        retry: RetryPolicy {
            max_attempts: 3,
            retry_for: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
        },
        ..options(url, 4)
    };
    let summary = run(&settings(), &options, CancellationToken::new())
        .await
        .unwrap();
    assert!(!summary.complete());
    assert_eq!(summary.requests.gave_up, summary.requests.sent);
    assert_eq!(summary.requests.retries, summary.requests.sent * 2);
    assert_eq!(summary.events.accepted, 0);

    // Nobody listening at all: no answer, retried, then given up.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let summary = run(
        &settings(),
        &SendSamples {
            url,
            ..options.clone()
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!(summary.requests.gave_up, summary.requests.sent);
    assert!(
        summary.to_string().contains("gave up:         "),
        "{summary}"
    );
}

#[tokio::test]
async fn final_statuses_are_not_retried_and_options_are_checked() {
    let app = axum::Router::new().fallback(|| async { StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let options = SendSamples {
        providers: vec![Provider::Mailjet],
        ..options(url, 3)
    };
    let summary = run(&settings(), &options, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        summary.requests.rejected.get(&404),
        Some(&summary.requests.sent)
    );
    assert_eq!(summary.requests.retries, 0);
    assert!(summary.complete(), "a final answer is not a give-up");

    for bad in [
        SendSamples {
            duplicates: 1.5,
            ..options.clone()
        },
        SendSamples {
            url: "ftp://x".into(),
            ..options.clone()
        },
        SendSamples {
            providers: vec![],
            ..options.clone()
        },
    ] {
        assert!(run(&settings(), &bad, CancellationToken::new())
            .await
            .is_err());
    }
}
