//! `mailpipe suppressions` against the real broker, registry and Redis: add, check, list and
//! remove a recipient; every change is on `mail.suppressions` (origin `operator:<by>`) and in
//! the lookup store the rules stage reads; `check` of a recipient not suppressed exits 1.

use std::process::{Command, Output};

use mailpipe_avro::AvroCodec;
use mailpipe_kafka::{Topic, TopicNames};
use mailpipe_test_support::{
    consume_exactly, create_topic, dev_config_path, dev_settings, unique_name, workspace_binary,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Suppression {
    recipient: String,
    scope: String,
    suppressed: bool,
    reason: String,
    origin: String,
}

struct Cli {
    prefix: String,
    redis_prefix: String,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(workspace_binary("mailpipe", "cargo build -p mailpipe"))
            .arg("suppressions")
            .args(args)
            .env("MAILPIPE_CONFIG", dev_config_path())
            .env("MAILPIPE_KAFKA__TOPIC_PREFIX", &self.prefix)
            .env("MAILPIPE_RULES__REDIS_PREFIX", &self.redis_prefix)
            .output()
            .expect("mailpipe runs")
    }
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn operators_add_check_list_and_remove_suppressions_on_record() {
    let cli = Cli {
        prefix: format!("{}.", unique_name("suppressions")),
        redis_prefix: format!("{}:", unique_name("suppressions")),
    };
    let topic = TopicNames::new(&cli.prefix).name(Topic::Suppressions);
    create_topic(&topic, 1).await;

    let not_yet = cli.run(&["check", "Ann@Example.com"]);
    assert_eq!(not_yet.status.code(), Some(1), "{}", text(&not_yet));

    let add = [
        "add",
        "Ann@Example.com",
        "--reason",
        "asked by phone",
        "--by",
        "sam",
    ];
    let added = cli.run(&add);
    assert!(added.status.success(), "{added:?}");
    let checked = cli.run(&["check", "ann@example.com"]);
    assert!(checked.status.success(), "{checked:?}");
    assert!(
        text(&checked).contains("asked by phone"),
        "{}",
        text(&checked)
    );
    let listed = text(&cli.run(&["list"]));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        listed.contains("\"recipient\":\"ann@example.com\""),
        "{listed}"
    );
    assert!(listed.contains("operator:sam"), "{listed}");

    let removed = cli.run(&[
        "remove",
        "ann@example.com",
        "--reason",
        "resubscribed",
        "--by",
        "sam",
    ]);
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(
        cli.run(&["check", "ann@example.com"]).status.code(),
        Some(1)
    );
    assert_eq!(text(&cli.run(&["list"])).lines().count(), 0);

    let codec = AvroCodec::new(&dev_settings().schema_registry.url).unwrap();
    let mut changes = Vec::new();
    for (key, value) in consume_exactly(&topic, 2).await {
        let record: Suppression = codec.decode(&value).await.unwrap();
        assert_eq!(key.as_deref(), Some(&b"global:ann@example.com"[..]));
        changes.push((
            record.recipient,
            record.scope,
            record.suppressed,
            record.reason,
            record.origin,
        ));
    }
    let who = |suppressed: bool, reason: &str| {
        (
            "ann@example.com".to_string(),
            "global".to_string(),
            suppressed,
            reason.to_string(),
            "operator:sam".to_string(),
        )
    };
    assert_eq!(
        changes,
        [who(true, "asked by phone"), who(false, "resubscribed")]
    );
}
