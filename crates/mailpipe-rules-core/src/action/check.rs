//! Checking one `[[rule.then]]` at load: its kind's fields present and no others, templates
//! valid, topic and method plausible, delay and guard well-formed.

use crate::compile::Sink;
use crate::condition::when;
use crate::error::RuleErrorKind;
use crate::file::{RawAction, RawActionKind};
use crate::template::Templates;

use super::{Action, ActionKind};

const WEBHOOK_METHODS: [&str; 5] = ["POST", "PUT", "PATCH", "GET", "DELETE"];

impl Action {
    /// Checks one `[[rule.then]]`; `name` prefixes its templates' names.
    pub(crate) fn compile(
        raw: &RawAction,
        name: &str,
        templates: &mut Templates,
        env: &cel::Env,
        sink: &mut Sink<'_>,
    ) -> Option<Action> {
        let errors_before = sink.errors.len();
        let kind = *raw.action.get_ref();
        check_fields_apply(raw, kind, sink);
        let mut text =
            |field: &str, value: &Option<toml::Spanned<String>>, sink: &mut Sink<'_>| match value {
                Some(value) => templates.add(format!("{name}/{field}"), value, sink),
                None => {
                    sink.at(
                        raw.action.span(),
                        RuleErrorKind::Invalid(format!(
                            "{} action needs `{field}`",
                            kind_name(kind)
                        )),
                    );
                    None
                }
            };
        let default_scope = Some(toml::Spanned::new(raw.action.span(), "global".to_string()));
        let compiled = match kind {
            RawActionKind::Suppress | RawActionKind::Unsuppress => {
                let reason = text("reason", &raw.reason, sink);
                let scope = text(
                    "scope",
                    if raw.scope.is_some() {
                        &raw.scope
                    } else {
                        &default_scope
                    },
                    sink,
                );
                Some(ActionKind::Suppress {
                    reason: reason?,
                    scope: scope?,
                    lift: kind == RawActionKind::Unsuppress,
                })
            }
            RawActionKind::Score => match &raw.add {
                Some(add) if add.get_ref().is_finite() => Some(ActionKind::Score {
                    add: *add.get_ref(),
                }),
                Some(add) => {
                    sink.at(
                        add.span(),
                        RuleErrorKind::Invalid("score add must be a finite number".into()),
                    );
                    None
                }
                None => text("add", &None, sink).and(None),
            },
            RawActionKind::Segment => {
                let segment = text("segment", &raw.segment, sink);
                Some(ActionKind::Segment {
                    name: segment?,
                    remove: raw.remove.unwrap_or(false),
                })
            }
            RawActionKind::Publish => {
                let topic = raw.topic.as_ref().filter(|t| !valid_topic(t.get_ref()));
                if let Some(topic) = topic {
                    sink.at(
                        topic.span(),
                        RuleErrorKind::Invalid(format!("invalid topic name `{}`", topic.get_ref())),
                    );
                }
                let key = raw
                    .key
                    .as_ref()
                    .map(|k| text("key", &Some(k.clone()), sink));
                let value = text("value", &raw.value, sink);
                let topic = raw.topic.as_ref().map(|t| t.get_ref().clone());
                if topic.is_none() {
                    text("topic", &None, sink);
                }
                let key = match key {
                    Some(k) => Some(k?),
                    None => None,
                };
                Some(ActionKind::Publish {
                    topic: topic?,
                    key,
                    value: value?,
                })
            }
            RawActionKind::Webhook => {
                let url = text("url", &raw.url, sink);
                let body = text("body", &raw.body, sink);
                let method = raw
                    .method
                    .as_ref()
                    .map_or("POST".to_string(), |m| m.get_ref().to_ascii_uppercase());
                if let Some(m) = raw
                    .method
                    .as_ref()
                    .filter(|_| !WEBHOOK_METHODS.contains(&method.as_str()))
                {
                    sink.at(
                        m.span(),
                        RuleErrorKind::Invalid(format!("unsupported method `{}`", m.get_ref())),
                    );
                }
                let mut headers = Vec::new();
                for (header, value) in raw.headers.iter().flatten() {
                    if let Some(value) =
                        templates.add(format!("{name}/headers/{header}"), value, sink)
                    {
                        headers.push((header.clone(), value));
                    }
                }
                Some(ActionKind::Webhook {
                    url: url?,
                    method,
                    headers,
                    body: body?,
                })
            }
        };
        let delay_ms = match &raw.delay {
            None => 0,
            Some(delay) => {
                crate::duration::parse_duration_ms(delay.get_ref()).unwrap_or_else(|| {
                    sink.at(
                        delay.span(),
                        RuleErrorKind::InvalidDuration(delay.get_ref().clone()),
                    );
                    0
                })
            }
        };
        let guard = raw
            .guard
            .as_ref()
            .and_then(|g| when::compile(g, "guard", env, sink));
        if raw.guard.is_some() && raw.delay.is_none() {
            sink.at(
                raw.action.span(),
                RuleErrorKind::Invalid(
                    "a guard needs a delay (without one, put the conditions in `when`)".into(),
                ),
            );
        }
        let kind = compiled?;
        (sink.errors.len() == errors_before).then_some(Action {
            kind,
            delay_ms,
            guard,
        })
    }
}

fn kind_name(kind: RawActionKind) -> &'static str {
    match kind {
        RawActionKind::Suppress => "suppress",
        RawActionKind::Unsuppress => "unsuppress",
        RawActionKind::Score => "score",
        RawActionKind::Segment => "segment",
        RawActionKind::Publish => "publish",
        RawActionKind::Webhook => "webhook",
    }
}

/// A field set that the action's kind does not take is an error, not silently ignored.
fn check_fields_apply(raw: &RawAction, kind: RawActionKind, sink: &mut Sink<'_>) {
    let allowed: &[&str] = match kind {
        RawActionKind::Suppress | RawActionKind::Unsuppress => &["reason", "scope"],
        RawActionKind::Score => &["add"],
        RawActionKind::Segment => &["segment", "remove"],
        RawActionKind::Publish => &["topic", "key", "value"],
        RawActionKind::Webhook => &["url", "method", "headers", "body"],
    };
    let present = [
        ("reason", raw.reason.is_some()),
        ("scope", raw.scope.is_some()),
        ("add", raw.add.is_some()),
        ("segment", raw.segment.is_some()),
        ("remove", raw.remove.is_some()),
        ("topic", raw.topic.is_some()),
        ("key", raw.key.is_some()),
        ("value", raw.value.is_some()),
        ("url", raw.url.is_some()),
        ("method", raw.method.is_some()),
        ("headers", raw.headers.is_some()),
        ("body", raw.body.is_some()),
    ];
    for (field, _) in present
        .iter()
        .filter(|(f, set)| *set && !allowed.contains(f))
    {
        let message = format!("`{field}` does not apply to a {} action", kind_name(kind));
        sink.at(raw.action.span(), RuleErrorKind::Invalid(message));
    }
}

/// Kafka's topic name rule: 1–249 of `a-zA-Z0-9._-`, not `.` or `..`.
fn valid_topic(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}
