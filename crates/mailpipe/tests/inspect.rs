//! `mailpipe inspect` prints one canonical event per line and fails clearly on garbage.

use std::io::Write;
use std::process::{Command, Stdio};

fn inspect(provider: &str, body: &[u8], headers: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailpipe"));
    cmd.args(["inspect", provider, "-"]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_batch_becomes_one_json_line_per_event() {
    let body = br#"[
      {"email":"A@Example.com","timestamp":1700000000,"event":"delivered","sg_event_id":"ev-1","sg_message_id":"m1"},
      {"email":"b@example.org","timestamp":1700000001,"event":"open","sg_event_id":"ev-2","sg_message_id":"m2"}
    ]"#;
    let (ok, stdout, stderr) = inspect("sendgrid", body, &["Content-Type: application/json"]);
    assert!(ok, "{stderr}");
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["event_type"], "delivered");
    assert_eq!(events[0]["recipient"], "a@example.com");
    assert_eq!(events[0]["recipient_domain"], "example.com");
    assert_eq!(events[1]["event_type"], "opened");
    assert_eq!(events[1]["event_id"], "ev-2");
}

#[test]
fn garbage_fails_with_the_reason() {
    let (ok, stdout, stderr) = inspect("sendgrid", b"{not json", &[]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("not_json"), "{stderr}");
    let (ok, _, stderr) = inspect("hotmail", b"[]", &[]);
    assert!(!ok);
    assert!(stderr.contains("unknown provider"), "{stderr}");
}
