//! What the rules stage's integration tests share: times, events, the state in the real
//! local Redis under a prefix of the test's own, the processing settings.
#![allow(dead_code)] // each test file uses its own part

use mailpipe_model::{BounceClass, EmailEvent, EventType};
use mailpipe_stage_6_rules::process::ProcessConfig;
use mailpipe_stage_6_rules::RulesState;
use mailpipe_test_support::{delivered_event, redis_url};

pub const HOUR: i64 = 3_600_000;
pub const T0: i64 = 1_717_000_000_000;

/// The rules' state in the local Redis (`make up`; `MAILPIPE_REDIS__URL`) under `prefix`.
pub async fn state(prefix: &str) -> RulesState {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let connection = client
        .get_connection_manager()
        .await
        .expect("redis is up (make up)");
    RulesState::new(connection, prefix.to_string())
}

/// 90-day scores; `publish` allowed to `crm.events` and `marketing.reengage`.
pub fn config() -> ProcessConfig {
    ProcessConfig {
        score_window_ms: 90 * 24 * HOUR,
        publish_topics: vec!["crm.events".into(), "marketing.reengage".into()],
    }
}

/// Event `seq` of `recipient`, of `event_type` (and bounce class) at `at`.
pub fn event(
    seq: usize,
    recipient: &str,
    event_type: EventType,
    class: Option<BounceClass>,
    at: i64,
) -> EmailEvent {
    let mut e = delivered_event(seq, 0, 1);
    e.event_type = event_type;
    e.bounce_class = class;
    e.recipient = Some(recipient.to_string());
    e.recipient_domain = recipient.rsplit_once('@').map(|(_, d)| d.to_string());
    e.occurred_at = at;
    e
}
