//! `load` reports every problem of a rules file, each at its line and column: syntax and
//! shape errors (unknown fields, wrong types) per rule, and semantic ones (regex, zone,
//! expression, template, duration, duplicate id) at the offending value.

use mailpipe_rules_core::{load, RuleError, RuleErrorKind};

/// The 1-based line and column where `needle` first appears on line `line`.
fn at(text: &str, line: usize, needle: &str) -> (usize, usize) {
    let content = text.lines().nth(line - 1).unwrap();
    let byte = content
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not on line {line}"));
    (line, content[..byte].chars().count() + 1)
}

fn located(errors: &[RuleError]) -> Vec<(usize, usize, String)> {
    errors
        .iter()
        .map(|e| {
            let kind = format!("{:?}", e.kind);
            let variant = kind.split('(').next().unwrap().to_string();
            (e.location.line, e.location.column, variant)
        })
        .collect()
}

const MANY_ERRORS: &str = r#"# every rule below is wrong in its own way
[[rule]]
id = "first"
[rule.when]
recipient_matches = ["^ok$", "(unclosed"]
time_window = { zone = "Mars/Base", from = "9am", to = "17:00" }
expression = "recipent == 'x' && size(tags) > 0"
[[rule.then]]
action = "suppress"
reason = "{{ recipient.name }}"

[[rule]]
id = "first"
[rule.when]
event_types = ["opened"]
[[rule.then]]
action = "score"
add = 1.0
delay = "soon"

[[rule]]
id = "typo"
[rule.when]
event_typse = ["opened"]
[[rule.then]]
action = "score"
add = 1.0

[[rule]]
id = "Bad Id"
[rule.when]
event_types = ["clicked"]
threshold = { events = ["clicked"], per = "recipient", within = "48h" }
[[rule.then]]
action = "webhook"
url = "https://x.example/{{ nope }}"
body = "{{ event_id"
reason = "not for webhooks"
"#;

#[test]
fn every_error_with_its_line_and_column() {
    let errors = load(MANY_ERRORS).expect_err("the file is invalid");
    let text = MANY_ERRORS;
    let want = vec![
        (
            at(text, 5, "\"(unclosed").0,
            at(text, 5, "\"(unclosed").1,
            "InvalidRegex".to_string(),
        ),
        (6, at(text, 6, "\"Mars").1, "UnknownTimeZone".into()),
        (6, at(text, 6, "\"9am").1, "InvalidTimeOfDay".into()),
        (
            7,
            at(text, 7, "\"recipent").1,
            "UnknownExpressionVariable".into(),
        ),
        (10, at(text, 10, "\"{{").1, "UnknownTemplateVariable".into()),
        (13, at(text, 13, "\"first").1, "DuplicateId".into()),
        (19, at(text, 19, "\"soon").1, "InvalidDuration".into()),
        (24, 1, "Syntax".into()),
        (30, at(text, 30, "\"Bad").1, "InvalidId".into()),
        (33, at(text, 33, "\"48h").1, "Invalid".into()),
        (35, at(text, 35, "\"webhook").1, "Invalid".into()),
        (
            36,
            at(text, 36, "\"https").1,
            "UnknownTemplateVariable".into(),
        ),
        (37, at(text, 37, "\"{{").1, "InvalidTemplate".into()),
    ];
    assert_eq!(located(&errors), want, "{errors:#?}");
    // Every error names its rule, the unreadable one included.
    let ids: Vec<Option<&str>> = errors.iter().map(|e| e.rule_id.as_deref()).collect();
    assert!(ids.iter().all(Option::is_some), "{ids:?}");
    assert_eq!(ids[7], Some("typo"));
}

#[test]
fn messages_read_as_rules_check_prints_them() {
    let errors = load(MANY_ERRORS).err().unwrap();
    let printed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        printed[1],
        "6:24: rule `first`: unknown time zone `Mars/Base` (an IANA name such as `Europe/Paris`)"
    );
    assert_eq!(
        printed[5],
        "13:6: rule `first`: duplicate rule id `first` (first defined at 3:6)"
    );
    assert!(
        printed[7].starts_with("24:1: rule `typo`: unknown field `event_typse`"),
        "{}",
        printed[7]
    );
    assert_eq!(
        printed[10],
        "35:10: rule `Bad Id`: `reason` does not apply to a webhook action"
    );
    assert!(printed.iter().all(|p| !p.contains('\n')), "{printed:#?}");
}

#[test]
fn shape_errors() {
    let cases: &[(&str, usize, &str)] = &[
        ("[[rule]]\nid = \"a\"\n[rule.when]\nevent_types = [\"opened\"]\n", 1, "missing field `then`"),
        ("[[rule]]\nid = \"a\"\n[[rule.then]]\naction = \"score\"\nadd = 1.0\n", 1, "when has no conditions"),
        ("[[rule]]\nid = \"a\"\n[rule.when]\nevent_types = [\"opend\"]\n[[rule.then]]\naction = \"score\"\nadd = 1.0\n", 4, "unknown variant `opend`"),
        ("[[rule]]\nid = \"a\"\n[rule.when]\nat_least = 3\nevent_types = [\"opened\"]\n[[rule.then]]\naction = \"score\"\nadd = 1.0\n", 4, "at_least = 3 but it has 1 conditions"),
        ("[[rule]]\nid = \"a\"\n[rule.when]\ntags = [\"x\"]\n[[rule.then]]\naction = \"publish\"\ntopic = \"bad topic\"\nvalue = \"v\"\n", 7, "invalid topic name"),
        ("[[rule]]\nid = \"a\"\n[rule.when]\ntags = [\"x\"]\n[[rule.then]]\naction = \"score\"\nadd = 1.0\n[rule.then.guard]\ntags = [\"y\"]\n", 6, "a guard needs a delay"),
        ("rule = 5\n", 1, "`rule` must be an array of tables"),
    ];
    for (text, line, message) in cases {
        let errors = load(text).err().unwrap_or_else(|| panic!("{text} loaded"));
        let first = &errors[0];
        assert_eq!(first.location.line, *line, "{text}: {errors:#?}");
        assert!(first.to_string().contains(message), "{text}: {first}");
        if let RuleErrorKind::Syntax(m) = &first.kind {
            assert!(!m.contains('\n'), "{m}");
        }
    }
}
