//! Bad configuration fails at start with a message naming the key (no stack needed).

use std::process::Command;

fn check_config(body: &str, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mailpipe.toml");
    std::fs::write(&path, body).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailpipe"));
    cmd.arg("check-config").env("MAILPIPE_CONFIG", &path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unknown_key_fails_naming_it() {
    let (ok, text) = check_config("[kafka]\nbrokres = \"127.0.0.1:9092\"\n", &[]);
    assert!(!ok);
    assert!(text.contains("brokres"), "{text}");
}

#[test]
fn bad_value_fails_naming_the_key() {
    let (ok, text) = check_config("[kafka.partitions]\nraw = -3\n", &[]);
    assert!(!ok);
    assert!(text.contains("kafka.partitions.raw"), "{text}");
}

#[test]
fn bad_env_override_fails_naming_the_key() {
    let (ok, text) = check_config("", &[("MAILPIPE_KAFKA__COMPRESSION", "brotli")]);
    assert!(!ok);
    assert!(text.contains("kafka.compression"), "{text}");
}

#[test]
fn the_dev_config_is_accepted() {
    let dev = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/mailpipe.toml"),
    )
    .unwrap();
    let (ok, text) = check_config(&dev, &[]);
    assert!(ok, "{text}");
    assert!(text.contains("session_timeout_ms = 6000"), "{text}");
}
