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
        // The scripts' run directory and the dev registry's own flags share the prefix.
        jail.set_env("MAILPIPE_RUN_DIR", "/tmp/x");
        jail.set_env("MAILPIPE_REGISTRY_LISTEN", "127.0.0.1:1");
        load_in_jail(jail, None).unwrap();
        Ok(())
    });
}
