//! Loading and validation, with env isolated by `figment::Jail`.

// figment::Jail closures must return figment::Error, which is large; that is its API.
#![allow(clippy::result_large_err)]

use super::*;
use figment::Jail;

/// Loads with `file` as the config file, in a jail whose environment was cleared of the
/// developer's (or `make test`'s) MAILPIPE_* variables.
fn load_in_jail(jail: &mut Jail, file: Option<&str>) -> Result<Settings, SettingsError> {
    let path = file.map(|body| {
        jail.create_file("mailpipe.toml", body).unwrap();
        jail.directory().join("mailpipe.toml")
    });
    Settings::load_from(path.as_deref())
}

#[test]
fn defaults_alone_are_valid() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = load_in_jail(jail, None).unwrap();
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(s.kafka.partitions.raw, 4);
        assert_eq!(s.telemetry.log_format, LogFormat::Text);
        Ok(())
    });
}

#[test]
fn file_overrides_defaults_and_env_overrides_file() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("MAILPIPE_KAFKA__SESSION_TIMEOUT_MS", "7000");
        jail.set_env("MAILPIPE_CONFIG", "ignored-by-load_from");
        let s = load_in_jail(
            jail,
            Some("[kafka]\nbrokers = \"10.0.0.1:9092\"\nsession_timeout_ms = 6000\n"),
        )
        .unwrap();
        assert_eq!(s.kafka.brokers, "10.0.0.1:9092");
        assert_eq!(s.kafka.session_timeout_ms, 7000);
        Ok(())
    });
}

#[test]
fn unknown_key_is_an_error_naming_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let err = load_in_jail(jail, Some("[kafka]\nbrokerz = \"x:1\"\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("brokerz"), "{msg}");
        assert!(msg.contains("kafka"), "{msg}");
        Ok(())
    });
}

#[test]
fn unknown_env_key_is_an_error_too() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("MAILPIPE_REDIS__URLL", "redis://x");
        let msg = load_in_jail(jail, None).unwrap_err().to_string();
        assert!(msg.contains("urll"), "{msg}");
        Ok(())
    });
}

#[test]
fn bad_value_type_names_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let msg = load_in_jail(jail, Some("[kafka.partitions]\nraw = \"four\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("kafka.partitions.raw"), "{msg}");
        Ok(())
    });
}

#[test]
fn every_semantic_problem_is_reported_at_once() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[kafka]\nbrokers = \"nohost\"\ncompression = \"brotli\"\n\
                    [kafka.partitions]\nraw = 0\n[clickhouse]\nurl = \"ftp://x\"\n";
        let SettingsError::Invalid(problems) = load_in_jail(jail, Some(body)).unwrap_err() else {
            panic!("expected Invalid");
        };
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "kafka.brokers",
                "kafka.compression",
                "kafka.partitions.raw",
                "clickhouse.url"
            ]
        );
        Ok(())
    });
}

#[test]
fn missing_explicit_file_is_an_error() {
    let err = Settings::load_from(Some(Path::new("/nonexistent/mailpipe.toml"))).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/mailpipe.toml"));
}

#[test]
fn committed_dev_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mailpipe.toml");
    Jail::expect_with(|jail| {
        jail.clear_env();
        Settings::load_from(Some(&path)).unwrap();
        Ok(())
    });
}

#[test]
fn sources_resolve_by_provider_and_id() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[sources.sendgrid]\nprovider = \"sendgrid\"\n\
                    [sources.acme-eu]\nprovider = \"mailgun\"\nsecrets = [\"k1\", \"k2\"]\n\
                    allowed_cidrs = [\"10.0.0.0/8\"]\n";
        let s = load_in_jail(jail, Some(body)).unwrap();
        assert_eq!(s.source(Provider::Sendgrid, None).unwrap().0, "sendgrid");
        let (id, acme) = s.source(Provider::Mailgun, Some("acme-eu")).unwrap();
        assert_eq!((id, acme.secrets.len()), ("acme-eu", 2));
        assert!(
            s.source(Provider::Sendgrid, Some("acme-eu")).is_none(),
            "wrong provider"
        );
        assert!(
            s.source(Provider::Mailgun, None).is_none(),
            "no source named mailgun"
        );
        Ok(())
    });
}

#[test]
fn bad_sources_name_the_key() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[sources.x]\nprovider = \"hotmail\"\n";
        let msg = load_in_jail(jail, Some(body)).unwrap_err().to_string();
        assert!(msg.contains("sources.x.provider"), "{msg}");
        let body = "[sources.x]\nprovider = \"postal\"\nallowed_cidrs = [\"10.0.0.0/33\"]\n";
        let msg = load_in_jail(jail, Some(body)).unwrap_err().to_string();
        assert!(msg.contains("sources.x.allowed_cidrs"), "{msg}");
        let body = "[sources.Bad]\nprovider = \"postal\"\n";
        let msg = load_in_jail(jail, Some(body)).unwrap_err().to_string();
        assert!(msg.contains("sources.Bad"), "{msg}");
        Ok(())
    });
}

#[test]
fn env_vars_without_a_section_are_not_config_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        // The scripts' run directory and other tools' variables share the prefix.
        jail.set_env("MAILPIPE_RUN_DIR", "/tmp/x");
        jail.set_env("MAILPIPE_REGISTRY_LISTEN", "127.0.0.1:1");
        load_in_jail(jail, None).unwrap();
        Ok(())
    });
}

#[test]
fn receiver_defaults_match_the_contract() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let r = load_in_jail(jail, None).unwrap().receiver;
        assert_eq!(r.max_body_bytes, 5 * 1024 * 1024);
        assert_eq!(r.produce_timeout_ms, 5000);
        assert_eq!(r.listen.port(), 8080);
        assert!(r.trusted_proxies.is_empty());
        assert_eq!(r.rate_limit.backend, RateLimitBackend::Memory);
        // Never throttle an ESP's normal volume: no per-source limit, a per-IP limit far
        // above what one ESP address sends.
        assert_eq!(r.rate_limit.per_source_per_second, 0.0);
        assert!(r.rate_limit.per_ip_per_second >= 10_000.0);
        assert!(r.rate_limit.per_ip_burst >= 20_000);
        Ok(())
    });
}

#[test]
fn receiver_env_overrides_reach_nested_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("MAILPIPE_RECEIVER__LISTEN", "127.0.0.1:0");
        jail.set_env("MAILPIPE_RECEIVER__RATE_LIMIT__BACKEND", "redis");
        jail.set_env("MAILPIPE_RECEIVER__RATE_LIMIT__PER_IP_PER_SECOND", "0");
        jail.set_env("MAILPIPE_RECEIVER__TRUSTED_PROXIES", "[\"10.0.0.0/8\"]");
        let r = load_in_jail(jail, None).unwrap().receiver;
        assert_eq!(r.listen.port(), 0);
        assert_eq!(r.rate_limit.backend, RateLimitBackend::Redis);
        assert_eq!(r.rate_limit.per_ip_per_second, 0.0);
        assert_eq!(r.trusted_proxies, ["10.0.0.0/8".parse().unwrap()]);
        Ok(())
    });
}

#[test]
fn receiver_problems_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[receiver]\nmax_header_bytes = 100\nproduce_timeout_ms = 0\n\
                    [receiver.rate_limit]\nper_ip_per_second = -1.0\n";
        let SettingsError::Invalid(problems) = load_in_jail(jail, Some(body)).unwrap_err() else {
            panic!("expected Invalid");
        };
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "receiver.produce_timeout_ms",
                "receiver.max_header_bytes",
                "receiver.rate_limit.per_ip_per_second"
            ]
        );
        let msg = load_in_jail(jail, Some("[receiver]\nlisten = \"nowhere\"\n"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("receiver.listen"), "{msg}");
        let msg = load_in_jail(
            jail,
            Some("[receiver]\ntrusted_proxies = [\"10.0.0.0/40\"]\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("receiver.trusted_proxies"), "{msg}");
        Ok(())
    });
}

#[test]
fn verify_defaults_and_provider_extras_load() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[verify]\ntimestamp_tolerance_seconds = 600\n\
                    [sources.ses]\nprovider = \"ses\"\n\
                    sns_topic_arns = [\"arn:aws:sns:us-east-1:123456789012:ses-events\"]\n\
                    sns_certificate_hosts = [\"sns.*.amazonaws.com\"]\n\
                    sns_max_age_seconds = 7200\n\
                    [sources.mandrill]\nprovider = \"mandrill\"\nsecrets = [\"k\"]\n\
                    webhook_url = \"https://hooks.example.com/webhooks/mandrill\"\n\
                    [sources.generic]\nprovider = \"generic\"\nsignature_header = \"X-Hub-Sig\"\n\
                    signature_encoding = \"base64\"\ntimestamp_tolerance_seconds = 60\n\
                    [sources.postmark]\nprovider = \"postmark\"\ntoken_header = \"x-webhook-token\"\n";
        let s = load_in_jail(jail, Some(body)).unwrap();
        assert_eq!(s.verify.timestamp_tolerance_seconds, 600);
        assert_eq!(s.verify.redis_timeout_ms, 2000);
        assert_eq!(s.verify.certificate_fetch_budget_ms, 30_000);
        assert_eq!(s.verify.certificate_failure_cache_seconds, 60);
        assert_eq!(s.sources["ses"].sns_topic_arns.len(), 1);
        assert_eq!(s.sources["ses"].sns_max_age_seconds, Some(7200));
        assert_eq!(s.sources["generic"].sns_max_age_seconds, None);
        let generic = &s.sources["generic"];
        assert_eq!(generic.signature_encoding, SignatureEncoding::Base64);
        assert_eq!(generic.timestamp_tolerance_seconds, Some(60));
        assert_eq!(
            s.sources["postmark"].signature_encoding,
            SignatureEncoding::Hex
        );
        Ok(())
    });
}

#[test]
fn verify_problems_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[verify]\ntimestamp_tolerance_seconds = 0\n\
                    [sources.a]\nprovider = \"sendgrid\"\nwebhook_url = \"https://x\"\n\
                    sns_max_age_seconds = 60\n\
                    [sources.b]\nprovider = \"ses\"\nsecrets = [\"x\"]\n\
                    sns_topic_arns = [\"topic\"]\nsns_certificate_hosts = [\"evil.*com\"]\n\
                    [sources.c]\nprovider = \"generic\"\nsignature_header = \"bad header\"\n\
                    [sources.d]\nprovider = \"mandrill\"\nwebhook_url = \"ftp://x\"\n\
                    token_header = \"x-token\"\n\
                    [sources.e]\nprovider = \"ses\"\ntimestamp_tolerance_seconds = 60\n\
                    sns_max_age_seconds = 0\n";
        let SettingsError::Invalid(problems) = load_in_jail(jail, Some(body)).unwrap_err() else {
            panic!("expected Invalid");
        };
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "verify.timestamp_tolerance_seconds",
                "sources.a.webhook_url",
                "sources.a.sns_max_age_seconds",
                "sources.b.secrets",
                "sources.b.sns_topic_arns",
                "sources.b.sns_certificate_hosts",
                "sources.c.signature_header",
                "sources.d.webhook_url",
                "sources.d.token_header",
                "sources.e.timestamp_tolerance_seconds",
                "sources.e.sns_max_age_seconds",
            ]
        );
        let msg = load_in_jail(
            jail,
            Some("[sources.e]\nprovider = \"generic\"\nsignature_encoding = \"hex64\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(msg.contains("signature_encoding"), "{msg}");
        Ok(())
    });
}

/// The wording of the provider-option problems, which the providers' specs now drive.
#[test]
fn provider_option_problems_keep_their_wording() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[sources.a]\nprovider = \"sendgrid\"\nwebhook_url = \"https://x\"\n\
                    sns_topic_arns = [\"arn:aws:sns:x:1:t\"]\nsns_insecure_loopback = true\n\
                    signature_encoding = \"base64\"\ntoken_header = \"x-t\"\n\
                    [sources.b]\nprovider = \"ses\"\nsecrets = [\"x\"]\n\
                    timestamp_tolerance_seconds = 60\n";
        assert_eq!(
            problems_of(jail, body),
            [
                "sources.a.webhook_url: only used by mandrill",
                "sources.a.sns_topic_arns: only used by ses",
                "sources.a.sns_insecure_loopback: only used by ses",
                "sources.a.signature_header: signature_header and signature_encoding are only \
                 used by generic",
                "sources.a.token_header: only used by postmark, sparkpost, brevo and mailjet",
                "sources.b.timestamp_tolerance_seconds: not used by ses (SNS retries keep their \
                 Timestamp, so no age is checked by default); set sns_max_age_seconds to limit \
                 the age",
                "sources.b.secrets: ses sources take no secrets: SNS messages are signed by \
                 Amazon; list sns_topic_arns",
            ]
        );
        Ok(())
    });
}

#[test]
fn dedupe_defaults_load_and_problems_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = load_in_jail(jail, None).unwrap();
        assert_eq!(s.dedupe.ttl_seconds, 7 * 24 * 3600);
        assert_eq!(s.dedupe.redis_timeout_ms, 2000);
        jail.set_env("MAILPIPE_DEDUPE__REDIS_TIMEOUT_MS", "0");
        let body = "[dedupe]\nttl_seconds = 60\n";
        let Err(SettingsError::Invalid(problems)) = load_in_jail(jail, Some(body)) else {
            panic!("a 60 s TTL and a 0 ms timeout must be refused");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("dedupe.ttl_seconds:"));
        assert!(problems[1].starts_with("dedupe.redis_timeout_ms:"));
        Ok(())
    });
}

#[test]
fn rules_defaults_load_and_problems_name_their_keys() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let s = load_in_jail(jail, None).unwrap();
        assert_eq!(s.rules.file, std::path::PathBuf::from("config/rules.toml"));
        assert_eq!(s.rules.score_window_days, 90);
        jail.set_env("MAILPIPE_RULES__REDIS_TIMEOUT_MS", "0");
        let body = "[rules]\nscore_window_days = 0\n";
        let Err(SettingsError::Invalid(problems)) = load_in_jail(jail, Some(body)) else {
            panic!("a 0-day score window and a 0 ms timeout must be refused");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("rules.score_window_days:"));
        assert!(problems[1].starts_with("rules.redis_timeout_ms:"));
        Ok(())
    });
}

#[test]
fn debug_output_never_shows_secrets() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[sources.x]\nprovider = \"postal\"\nsecrets = [\"hunter2-secret\"]\n\
                    [clickhouse]\npassword = \"ch-hunter3\"\n";
        let s = load_in_jail(jail, Some(body)).unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2-secret"), "{shown}");
        assert!(!shown.contains("ch-hunter3"), "{shown}");
        assert!(shown.contains("1 redacted"), "{shown}");
        Ok(())
    });
}

#[test]
fn derived_records_get_a_margin_over_the_raw_record_within_librdkafkas_range() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let mut r = load_in_jail(jail, None).unwrap().receiver;
        assert_eq!(
            r.max_derived_record_bytes(),
            r.max_record_bytes() + DERIVED_RECORD_MARGIN_BYTES
        );
        r.max_body_bytes = 512 * 1024 * 1024;
        assert!(r.max_derived_record_bytes() > r.max_record_bytes());
        assert_eq!(with_derived_record_margin(999_990_000), 1_000_000_000);
        Ok(())
    });
}

/// The problems of a config file that must not load.
fn problems_of(jail: &mut Jail, body: &str) -> Vec<String> {
    match load_in_jail(jail, Some(body)) {
        Err(SettingsError::Invalid(problems)) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn librdkafka_overrides_of_the_guarantees_are_refused_naming_key_and_reason() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[kafka.librdkafka]\n\"enable.auto.commit\" = \"true\"\n\
                    \"request.required.acks\" = \"1\"\n\
                    \"security.protocol\" = \"SASL_SSL\"\n\
                    [kafka.producer_librdkafka]\nacks = \"1\"\n\"enable.idempotence\" = \"false\"\n\
                    \"batch.num.messages\" = \"100\"\n\
                    [kafka.consumer_librdkafka]\n\"enable.auto.offset.store\" = \"true\"\n\
                    \"isolation.level\" = \"read_uncommitted\"\n\
                    \"auto.commit.enable\" = \"true\"\n\"offset.store.method\" = \"file\"\n\
                    \"fetch.wait.max.ms\" = \"100\"\n";
        let problems = problems_of(jail, body);
        let refused = |key: &str| {
            problems
                .iter()
                .find(|p| p.starts_with(key))
                .unwrap_or_else(|| panic!("{key} not refused: {problems:#?}"))
        };
        let acks = refused("kafka.librdkafka.\"request.required.acks\"");
        assert!(acks.contains("acks=all"), "{acks}");
        assert!(acks.contains("applied after"), "{acks}");
        assert!(acks.ends_with("Remove the key"), "{acks}");
        assert!(refused("kafka.librdkafka.\"enable.auto.commit\"").contains("contiguous prefix"));
        assert!(refused("kafka.producer_librdkafka.\"acks\"").contains("in-sync replica"));
        assert!(refused("kafka.producer_librdkafka.\"enable.idempotence\"").contains("idempotent"));
        refused("kafka.consumer_librdkafka.\"enable.auto.offset.store\"");
        refused("kafka.consumer_librdkafka.\"auto.commit.enable\"");
        refused("kafka.consumer_librdkafka.\"offset.store.method\"");
        let isolation = refused("kafka.consumer_librdkafka.\"isolation.level\"");
        assert!(isolation.contains("aborted transactions"), "{isolation}");
        assert_eq!(problems.len(), 8, "only the guarded keys: {problems:#?}");
        Ok(())
    });
}

#[test]
fn a_property_in_the_other_role_map_is_left_alone() {
    // In the other role's map a property has no effect (librdkafka warns and ignores it);
    // tuning and security properties are what the maps are for.
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[kafka.librdkafka]\n\"security.protocol\" = \"SASL_SSL\"\n\
                    [kafka.consumer_librdkafka]\nacks = \"1\"\n\"enable.idempotence\" = \"false\"\n\
                    [kafka.producer_librdkafka]\n\"isolation.level\" = \"read_uncommitted\"\n\
                    \"enable.auto.commit\" = \"true\"\n";
        let s = load_in_jail(jail, Some(body)).unwrap();
        assert_eq!(s.kafka.consumer_librdkafka["acks"], "1");
        Ok(())
    });
}

#[test]
fn guarded_names_are_matched_whatever_their_case() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        let body = "[kafka.librdkafka]\n\"Enable.Idempotence\" = \"false\"\n";
        let problems = problems_of(jail, body);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("kafka.librdkafka.\"Enable.Idempotence\": refused"),
            "{problems:#?}"
        );
        Ok(())
    });
}
