//! The rules' shared state against the real local Redis (`make up`; `MAILPIPE_REDIS__URL`):
//! counters count exactly and idempotently, claims are atomic across concurrent callers,
//! scores sum their contributions once, suppressions and segments read back.

use mailpipe_stage_6_rules::{Answer, ClaimAnswer, Op, RulesState};
use mailpipe_test_support::{redis_url, unique_name};

async fn state_with(prefix: String) -> RulesState {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let connection = client
        .get_connection_manager()
        .await
        .expect("redis is up (make up)");
    RulesState::new(connection, prefix)
}

async fn state() -> RulesState {
    state_with(format!("{}:", unique_name("rules-state"))).await
}

fn add(member: &str, at_ms: i64) -> Op {
    Op::Increment {
        series: "bounced:soft/recipient:a@x".into(),
        member: member.into(),
        at_ms,
        retain_ms: 1_000,
    }
}

fn count(from_ms: i64, until_ms: i64) -> Op {
    Op::Count {
        series: "bounced:soft/recipient:a@x".into(),
        from_ms,
        until_ms,
    }
}

#[tokio::test]
async fn a_counter_counts_each_event_once_within_its_bounds() {
    let mut state = state().await;
    let answers = state
        .apply(&[
            add("a", 1_000),
            add("b", 1_500),
            add("a", 1_000), // a redelivery: not a second entry
            add("c", 2_000),
            count(0, 2_000),
            count(1_000, 2_000), // from is exclusive
            count(0, 1_499),     // until is inclusive
        ])
        .await
        .unwrap();
    assert_eq!(
        answers[4..],
        [Answer::Count(3), Answer::Count(2), Answer::Count(1)]
    );
    // Entries are kept two windows (2 × retain) behind the newest: after d at 3400, a late
    // event one window behind (its window (1400, 2400]) still finds b and c, while a (1000)
    // is gone.
    state.apply(&[add("d", 3_400)]).await.unwrap();
    assert_eq!(
        state
            .apply(&[count(1_400, 2_400), count(0, 2_000)])
            .await
            .unwrap(),
        [Answer::Count(2), Answer::Count(2)]
    );
}

fn claim(
    claimant: &str,
    at_ms: i64,
    cooldown: Option<(&str, i64)>,
    limit: Option<(u64, i64)>,
) -> Op {
    Op::Claim {
        rule: "rule-1".into(),
        claimant: claimant.into(),
        at_ms,
        cooldown: cooldown.map(|(k, ms)| (k.to_string(), ms)),
        limit,
    }
}

#[tokio::test]
async fn a_cooldown_holds_by_event_time_and_grants_its_holder_again() {
    use ClaimAnswer::*;
    let mut state = state().await;
    let bob = Some(("recipient:bob@x", 60_000));
    let answers = state
        .apply(&[
            claim("e1", 100_000, bob, None),
            claim("e2", 130_000, bob, None), // 30 s later: cooled down
            claim("e1", 100_000, bob, None), // a redelivery of e1: granted again
            claim("e3", 100_000, Some(("recipient:ann@x", 60_000)), None), // another key
            claim("e4", 160_000, bob, None), // 60 s after e1: free again
        ])
        .await
        .unwrap();
    let expected = [Granted, CooledDown, Granted, Granted, Granted].map(Answer::Claim);
    assert_eq!(answers, expected);
}

#[tokio::test]
async fn a_late_older_event_does_not_move_the_cooldown_back() {
    use ClaimAnswer::*;
    let mut state = state().await;
    let hour = 3_600_000;
    let bob = Some(("recipient:bob@x", hour));
    let answers = state
        .apply(&[
            claim("b", 10 * hour, bob, None),            // 10:00 executes
            claim("a", 8 * hour, bob, None),             // a late 08:00 event: 2 h apart, executes
            claim("c", 10 * hour + hour / 2, bob, None), // 10:30: still within 10:00's hour
        ])
        .await
        .unwrap();
    assert_eq!(answers, [Granted, Granted, CooledDown].map(Answer::Claim));
}

#[tokio::test]
async fn a_cooled_down_event_does_not_use_up_the_limit() {
    use ClaimAnswer::*;
    let mut state = state().await;
    let bob = Some(("recipient:bob@x", 60_000));
    let limit = Some((2, 3_600_000));
    let answers = state
        .apply(&[
            claim("e1", 1_000, bob, limit),
            claim("e2", 2_000, bob, limit), // cooled down, limit untouched
            claim("e3", 2_000, None, limit),
            claim("e4", 3_000, None, limit), // third execution in the hour: limited
            claim("e3", 2_000, None, limit), // holder again
        ])
        .await
        .unwrap();
    let expected = [Granted, CooledDown, Granted, Limited, Granted].map(Answer::Claim);
    assert_eq!(answers, expected);
}

#[tokio::test]
async fn concurrent_limit_claims_grant_exactly_the_limit() {
    let prefix = format!("{}:", unique_name("rules-limit"));
    let mut tasks = Vec::new();
    for replica in 0..4 {
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let mut state = state_with(prefix).await;
            let ops: Vec<Op> = (0..25)
                .map(|i| {
                    claim(
                        &format!("r{replica}-e{i}"),
                        10_000,
                        None,
                        Some((10, 60_000)),
                    )
                })
                .collect();
            state.apply(&ops).await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        let answers = task.await.unwrap();
        granted += answers
            .iter()
            .filter(|a| **a == Answer::Claim(ClaimAnswer::Granted))
            .count();
    }
    assert_eq!(granted, 10, "100 claims from 4 connections, limit 10");
}

#[tokio::test]
async fn a_score_sums_each_contribution_once_within_its_window() {
    let mut state = state().await;
    let score = |contribution: &str, delta: f64, at_ms: i64| Op::ScoreAdd {
        recipient: "ann@example.com".into(),
        contribution: contribution.into(),
        delta,
        at_ms,
        window_ms: 10_000,
    };
    let read = |at_ms: i64| Op::Score {
        recipient: "ann@example.com".into(),
        at_ms,
        window_ms: 10_000,
    };
    let answers = state
        .apply(&[
            score("r/e1/0", 2.5, 1_000),
            score("r/e2/0", -1.0, 2_000),
            score("r/e1/0", 2.5, 1_000), // a redelivery: not added again
            read(2_000),
            read(11_500), // e1 left the window
        ])
        .await
        .unwrap();
    assert_eq!(answers[3..], [Answer::Score(1.5), Answer::Score(-1.0)]);
}

#[tokio::test]
async fn suppressions_and_segments_read_back() {
    let mut state = state().await;
    let (scope, who) = (String::from("global"), String::from("cy@example.com"));
    let suppressed = || Op::Suppressed {
        scope: scope.clone(),
        recipient: who.clone(),
    };
    let has = || Op::SegmentHas {
        segment: "openers".into(),
        recipient: who.clone(),
    };
    let answers = state
        .apply(&[
            suppressed(),
            Op::Suppress {
                scope: scope.clone(),
                recipient: who.clone(),
                record: r#"{"reason":"complaint"}"#.into(),
            },
            suppressed(),
            Op::Unsuppress {
                scope: scope.clone(),
                recipient: who.clone(),
            },
            suppressed(),
            Op::SegmentAdd {
                segment: "openers".into(),
                recipient: who.clone(),
            },
            has(),
            Op::SegmentRemove {
                segment: "openers".into(),
                recipient: who.clone(),
            },
            has(),
        ])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            Answer::Suppression(None),
            Answer::Done,
            Answer::Suppression(Some(r#"{"reason":"complaint"}"#.into())),
            Answer::Done,
            Answer::Suppression(None),
            Answer::Done,
            Answer::Member(true),
            Answer::Done,
            Answer::Member(false),
        ]
    );
}

#[tokio::test]
async fn scripts_are_loaded_again_after_a_script_flush() {
    let mut state = state().await;
    assert_eq!(
        state.apply(&[add("a", 1), count(0, 1)]).await.unwrap(),
        [Answer::Done, Answer::Count(1)]
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        state.apply(&[add("b", 2), count(0, 2)]).await.unwrap(),
        [Answer::Done, Answer::Count(2)]
    );
}
