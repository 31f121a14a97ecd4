//! The rules' shared state against the real local Redis (`make up`; `MAILPIPE_REDIS__URL`):
//! windows count exactly and idempotently, claims are atomic across concurrent callers,
//! scores sum their contributions once, suppressions and segments read back.

use mailpipe_stage_6_rules::{Answer, Op, RulesState};
use mailpipe_test_support::{redis_url, unique_name};

async fn state() -> RulesState {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let connection = client
        .get_connection_manager()
        .await
        .expect("redis is up (make up)");
    RulesState::new(connection, format!("{}:", unique_name("rules-state")))
}

fn add(series: &str, member: &str, at_ms: i64) -> Op {
    Op::WindowAdd {
        series: series.into(),
        member: member.into(),
        at_ms,
        window_ms: 1_000,
    }
}

#[tokio::test]
async fn a_window_counts_each_event_once_within_its_bounds() {
    let mut state = state().await;
    let answers = state
        .apply(&[
            add("s", "a", 1_000),
            add("s", "b", 1_500),
            add("s", "a", 1_000),
            add("s", "c", 2_000),
        ])
        .await
        .unwrap();
    // "a" again is not added twice and answers as it did the first time (its window
    // (0, 1000] holds only itself); at 2000 the window (1000, 2000] no longer holds "a".
    assert_eq!(
        answers,
        vec![
            Answer::Count(1),
            Answer::Count(2),
            Answer::Count(1),
            Answer::Count(2)
        ]
    );
    // A late event one window behind still sees the members of its own window.
    let late = state.apply(&[add("s", "d", 1_600)]).await.unwrap();
    assert_eq!(
        late,
        vec![Answer::Count(3)],
        "a, b and d lie in (600, 1600]"
    );
    let count = Op::WindowCount {
        series: "s".into(),
        at_ms: 2_000,
        window_ms: 1_000,
    };
    assert_eq!(
        state.apply(&[count]).await.unwrap(),
        vec![Answer::Count(3)],
        "b, d, c"
    );
}

#[tokio::test]
async fn a_cooldown_is_granted_once_and_again_to_its_holder() {
    let mut state = state().await;
    let claim = |claimant: &str| Op::Cooldown {
        key: "rule-1:bob@example.com".into(),
        claimant: claimant.into(),
        cooldown_ms: 60_000,
    };
    let answers = state
        .apply(&[claim("e1"), claim("e2"), claim("e1")])
        .await
        .unwrap();
    assert_eq!(
        answers,
        vec![
            Answer::Granted(true),
            Answer::Granted(false),
            Answer::Granted(true)
        ]
    );
}

#[tokio::test]
async fn concurrent_limit_claims_grant_exactly_the_limit() {
    let prefix = format!("{}:", unique_name("rules-limit"));
    let mut tasks = Vec::new();
    for replica in 0..4 {
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let client = redis::Client::open(redis_url()).unwrap();
            let mut state = RulesState::new(client.get_connection_manager().await.unwrap(), prefix);
            let ops: Vec<Op> = (0..25)
                .map(|i| Op::Limit {
                    key: "rule-2".into(),
                    claimant: format!("r{replica}-e{i}"),
                    at_ms: 10_000,
                    window_ms: 60_000,
                    max: 10,
                })
                .collect();
            state.apply(&ops).await.unwrap()
        }));
    }
    let mut granted = 0;
    for task in tasks {
        granted += task
            .await
            .unwrap()
            .iter()
            .filter(|a| **a == Answer::Granted(true))
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
    let answers = state
        .apply(&[
            score("r:e1:0", 2.5, 1_000),
            score("r:e2:0", -1.0, 2_000),
            score("r:e1:0", 2.5, 1_000),
        ])
        .await
        .unwrap();
    // The repeated contribution is not added again and answers as it did the first time.
    assert_eq!(
        answers,
        vec![Answer::Score(2.5), Answer::Score(1.5), Answer::Score(2.5)]
    );
    let later = Op::ScoreGet {
        recipient: "ann@example.com".into(),
        at_ms: 11_500,
        window_ms: 10_000,
    };
    assert_eq!(
        state.apply(&[later]).await.unwrap(),
        vec![Answer::Score(-1.0)],
        "e1 left the window"
    );
}

#[tokio::test]
async fn suppressions_and_segments_read_back() {
    let mut state = state().await;
    let (scope, who) = (String::from("all"), String::from("cy@example.com"));
    let answers = state
        .apply(&[
            Op::Suppressed {
                scope: scope.clone(),
                recipient: who.clone(),
            },
            Op::Suppress {
                scope: scope.clone(),
                recipient: who.clone(),
                record: r#"{"reason":"complaint"}"#.into(),
            },
            Op::Suppressed {
                scope: scope.clone(),
                recipient: who.clone(),
            },
            Op::Unsuppress {
                scope: scope.clone(),
                recipient: who.clone(),
            },
            Op::Suppressed {
                scope,
                recipient: who.clone(),
            },
            Op::SegmentAdd {
                segment: "openers".into(),
                recipient: who.clone(),
            },
            Op::SegmentHas {
                segment: "openers".into(),
                recipient: who.clone(),
            },
            Op::SegmentRemove {
                segment: "openers".into(),
                recipient: who.clone(),
            },
            Op::SegmentHas {
                segment: "openers".into(),
                recipient: who,
            },
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
        state.apply(&[add("f", "a", 1)]).await.unwrap(),
        vec![Answer::Count(1)]
    );
    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(
        state.apply(&[add("f", "b", 2)]).await.unwrap(),
        vec![Answer::Count(2)]
    );
}
