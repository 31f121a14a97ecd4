//! The development sources of `config/mailpipe.toml` accept a sample signed the way each
//! provider signs, by the local sample sender with its keys (`config/dev-keys/` and the
//! shared secrets of the config itself). SES with the dev SNS key and certificate, cached
//! under an SNS URL as if fetched (locally it needs the loopback setting, see the README
//! there).

use std::path::{Path, PathBuf};

use mailpipe_model::Provider;
use mailpipe_samples::{DevKeys, PlanOptions};
use mailpipe_settings::Settings;
use mailpipe_verify_core::testing;
use mailpipe_verify_core::{
    required_certificate, verify, CertificateCache, Context, Request, SourceConfig,
};

/// Where the SES sample says its certificate is; the test caches the dev certificate under
/// it, as if fetched.
const SNS_CERTIFICATE_URL: &str =
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-dev.pem";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dev_key(name: &str) -> String {
    std::fs::read_to_string(repo().join("config/dev-keys").join(name)).unwrap()
}

/// A request of `provider` signed with the development keys at `now`, as the sample sender
/// (`mailpipe-samples`, which signs every provider the way it signs) makes one.
fn signed_sample(provider: Provider, settings: &Settings, now: i64) -> Request {
    let keys = DevKeys::load(
        settings,
        &repo().join("config/dev-keys"),
        &[provider],
        SNS_CERTIFICATE_URL,
    )
    .unwrap_or_else(|e| panic!("{provider}: {e}"));
    let options = PlanOptions {
        seed: 1,
        count: 1,
        providers: vec![provider],
        duplicates: 0.0,
        bad: false,
        now_ms: now * 1000,
    };
    let sample = mailpipe_samples::generate(&options, &keys, now)
        .unwrap_or_else(|e| panic!("{provider}: {e}"))
        .remove(0);
    let headers: Vec<(&str, &str)> = sample
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    testing::request(&headers, &sample.body, now)
}

#[test]
fn every_dev_source_verifies_a_sample_signed_with_the_dev_keys() {
    let settings = Settings::load_from(Some(&repo().join("config/mailpipe.toml"))).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for provider in Provider::ALL {
        let (id, source_settings) = settings
            .source(provider, None)
            .unwrap_or_else(|| panic!("no dev source for {provider}"));
        let source = SourceConfig::from_settings(source_settings, &settings.verify);
        assert!(
            source.problems().is_empty(),
            "{id}: {:?}",
            source.problems()
        );
        assert!(source.is_usable(), "{id}");
        let request = signed_sample(provider, &settings, now);
        let mut certificates = CertificateCache::new(1);
        if let Some(url) = required_certificate(&request, &source).unwrap() {
            certificates
                .insert_pem(url, dev_key("sns-signing-cert.pem").as_bytes())
                .unwrap();
        }
        let verified = verify(
            request,
            &source,
            &mut Context {
                certificates: &certificates,
            },
        )
        .unwrap_or_else(|e| panic!("{id}: {e}"));
        let expected_key = (provider != Provider::Ses).then_some(0);
        assert_eq!(verified.key_index(), expected_key, "{id}");
    }
}
