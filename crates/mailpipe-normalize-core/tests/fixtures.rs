//! Every fixture through the parser, compared with its reviewed snapshot
//! (`tests/snapshots/`), plus properties that must hold across all of them.
//!
//! Updating snapshots after an intended change: `INSTA_UPDATE=always cargo test -p
//! mailpipe-normalize --test fixtures`, then review the diff before committing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use mailpipe_normalize_core::{EmailEvent, EventType, Provider};
use serde_json::Value;

/// The canonical output as reviewers read it: field names and order as in the Avro schema;
/// `raw_event` shortened to its size (it is the provider's input, checked separately).
fn render(result: &Result<Vec<EmailEvent>, mailpipe_normalize_core::ParseError>) -> String {
    match result {
        Err(e) => format!("error: {e}\n"),
        Ok(events) => {
            let shown: Vec<EmailEvent> = events
                .iter()
                .map(|event| EmailEvent {
                    raw_event: format!("<{} bytes>", event.raw_event.len()),
                    ..event.clone()
                })
                .collect();
            serde_json::to_string_pretty(&shown).unwrap() + "\n"
        }
    }
}

#[test]
fn every_fixture_matches_its_snapshot() {
    for fixture in common::all() {
        let name = fixture.name.replace('/', "__").replace('.', "_");
        insta::assert_snapshot!(name.as_str(), render(&fixture.parse()), &fixture.name);
    }
}

#[test]
fn fixtures_cover_every_provider_and_event_type_with_enough_events() {
    let mut per_provider: BTreeMap<Provider, usize> = BTreeMap::new();
    let mut types: BTreeSet<EventType> = BTreeSet::new();
    for fixture in common::all() {
        match fixture.parse() {
            Ok(events) => {
                assert!(!fixture.expects_error(), "{} should fail", fixture.name);
                *per_provider.entry(fixture.provider).or_default() += events.len();
                types.extend(events.iter().map(|e| e.event_type));
            }
            Err(e) => assert!(fixture.expects_error(), "{}: {e}", fixture.name),
        }
    }
    for provider in Provider::ALL {
        assert!(
            per_provider.get(&provider).copied().unwrap_or(0) >= 5,
            "{provider}: {per_provider:?}"
        );
    }
    let total: usize = per_provider.values().sum();
    assert!(total >= 80, "only {total} fixture events");
    let missing: Vec<_> = EventType::ALL
        .iter()
        .filter(|t| !types.contains(t))
        .collect();
    assert!(missing.is_empty(), "no fixture produces {missing:?}");
}

/// `email_events` collapses the copies of an event by its sorting key (source, event_type,
/// occurred_at, campaign_id, event_id) within its month partition (occurred_at): every one
/// of those must be a function of the event itself, so a copy that arrives much later (after
/// dedupe's TTL, or after Redis lost its data) lands on the same row.
#[test]
fn sorting_key_fields_do_not_depend_on_when_a_copy_arrives() {
    let key = |e: &EmailEvent| {
        (
            e.source.clone(),
            e.event_type,
            e.occurred_at,
            e.campaign_id.clone(),
            e.event_id.clone(),
        )
    };
    let mut checked = 0;
    for fixture in common::all() {
        let Ok(first) = fixture.parse() else { continue };
        let mut later_input = fixture.input();
        later_input.received_at_ms += 30 * 86_400_000;
        let later = mailpipe_normalize_core::parse(fixture.provider, &later_input).unwrap();
        let keys: Vec<_> = first.iter().map(key).collect();
        let later_keys: Vec<_> = later.iter().map(key).collect();
        assert_eq!(keys, later_keys, "{}", fixture.name);
        checked += first.len();
    }
    assert!(checked >= 80, "only {checked} events checked");
}

#[test]
fn every_event_is_well_formed() {
    for fixture in common::all() {
        for e in fixture.parse().unwrap_or_default() {
            let at = &fixture.name;
            assert!(!e.event_id.is_empty(), "{at}: empty event_id");
            assert_eq!(
                (e.provider, e.source.as_str()),
                (fixture.provider, "main"),
                "{at}"
            );
            assert_eq!(e.received_at, common::RECEIVED_AT, "{at}");
            assert!(e.occurred_at >= 0, "{at}");
            assert_eq!(
                e.raw_request_id, "01900000-0000-7000-8000-000000000001",
                "{at}"
            );
            assert!(!e.provider_event.is_empty(), "{at}");
            if let Some(r) = &e.recipient {
                assert_eq!(r, &r.to_lowercase(), "{at}");
                assert!(!r.contains('<') && !r.contains('>'), "{at}: {r}");
                assert_eq!(
                    e.recipient_domain.as_deref(),
                    r.rsplit_once('@').map(|(_, d)| d).filter(|d| !d.is_empty()),
                    "{at}"
                );
            }
            // raw_event is the provider's original event: a JSON object, taken from the body.
            let raw: Value = serde_json::from_str(&e.raw_event)
                .unwrap_or_else(|err| panic!("{at}: raw_event: {err}"));
            assert!(raw.is_object(), "{at}");
        }
    }
}

#[test]
fn reparsing_gives_identical_events_and_ids_are_unique() {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for fixture in common::all() {
        let first = fixture.parse().unwrap_or_default();
        assert_eq!(
            first,
            fixture.parse().unwrap_or_default(),
            "{}",
            fixture.name
        );
        for e in first {
            let here = format!("{} ({} {:?})", fixture.name, e.provider_event, e.recipient);
            if let Some(before) = seen.insert(e.event_id.clone(), here.clone()) {
                panic!("event_id {} shared by {before} and {here}", e.event_id);
            }
        }
    }
}

/// Changing one identifying field of an event without a provider id must change its id
/// and leave the others in the batch alone.
#[test]
fn one_identifying_field_changed_gives_a_different_id() {
    let cases = [
        ("brevo/batched.json", "1715994060000", "1715994060001"),
        (
            "brevo/batched.json",
            "\"complains@example.com\"",
            "\"complains2@example.com\"",
        ),
        ("mailjet/grouped.json", "1716203660", "1716203661"),
        (
            "mailjet/grouped.json",
            "https://shop.example.org/promo?x=1",
            "https://shop.example.org/promo?x=2",
        ),
        ("mandrill/message-events.form", "1715400200", "1715400201"),
        (
            "mailgun/delivered.json",
            "1714811203.660412",
            "1714811203.660413",
        ),
        (
            "mailgun/legacy-opened.form",
            "timestamp=1461263000",
            "timestamp=1461263001",
        ),
        ("postmark/open.json", "09:20:11.9876543", "09:20:12.9876543"),
        ("postmark/bounce-hard.json", "7001001", "7001009"),
        (
            "ses/event-delivery.txt",
            "6b1c2d3e-4f50-5a6b-8c7d-000000000002",
            "6b1c2d3e-4f50-5a6b-8c7d-000000000099",
        ),
        (
            "sendgrid/delivery-batch.json",
            "\"sg_event_id\": \"YmxvY2tlZC00NDIzLWJsb2NrZWQtMDE\",",
            "",
        ),
        (
            "generic/mixed-batch.json",
            "2024-05-22T14:29:00Z",
            "2024-05-22T14:29:01Z",
        ),
    ];
    let fixtures = common::all();
    for (name, from, to) in cases {
        let fixture = fixtures
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no fixture {name}"));
        let text = String::from_utf8(fixture.body.clone()).unwrap();
        assert!(text.contains(from), "{name} lacks {from:?}");
        let changed = text.replacen(from, to, 1);
        let before: BTreeSet<String> = fixture
            .parse()
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        let after: BTreeSet<String> = mailpipe_normalize_core::parse(
            fixture.provider,
            &fixture.input_with_body(changed.as_bytes()),
        )
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
        let new: Vec<_> = after.difference(&before).collect();
        assert!(!new.is_empty(), "{name}: changing {from:?} kept every id");
        assert!(
            new.len() <= 2,
            "{name}: changing {from:?} changed {} ids",
            new.len()
        );
    }
}
