//! Actions: what a matched rule does, checked at load and rendered per event.
//!
//! `suppress` / `unsuppress` the recipient, `score` (add to the engagement score), `segment`
//! (add or remove), `publish` (a record to a topic), `webhook` (the delivery record; the HTTP
//! delivery is the stage's). Each may wait `delay` and, if delayed, re-check a `guard` when
//! due. Rendering yields [`ActionParams`]: everything the stage needs, nothing left to look up.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::compile::Sink;
use crate::condition::when::{self, When};
use crate::error::RuleErrorKind;
use crate::file::{RawAction, RawActionKind};
use crate::template::{Templates, Text};

/// One checked action of a rule.
#[derive(Debug)]
pub(crate) struct Action {
    pub kind: ActionKind,
    pub delay_ms: u64,
    /// Conditions re-checked when a delayed action comes due.
    pub guard: Option<When>,
}

#[derive(Debug)]
pub(crate) enum ActionKind {
    Suppress {
        reason: Text,
        scope: Text,
        lift: bool,
    },
    Score {
        add: f64,
    },
    Segment {
        name: Text,
        remove: bool,
    },
    Publish {
        topic: String,
        key: Option<Text>,
        value: Text,
    },
    Webhook {
        url: Text,
        method: String,
        headers: Vec<(String, Text)>,
        body: Text,
    },
}

/// An action with its fields rendered for one event: what the stage executes and records.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ActionParams {
    /// Put the recipient on the suppression list in `scope`.
    Suppress {
        recipient: String,
        reason: String,
        scope: String,
    },
    /// Take the recipient off the suppression list in `scope`.
    Unsuppress {
        recipient: String,
        reason: String,
        scope: String,
    },
    /// Add `add` (may be negative) to the recipient's engagement score.
    Score { recipient: String, add: f64 },
    /// Add the recipient to (or remove it from) a segment.
    Segment {
        recipient: String,
        segment: String,
        remove: bool,
    },
    /// Produce one record on `topic`.
    Publish {
        topic: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        value: String,
    },
    /// Deliver one HTTP request (the outbound-delivery issue's job).
    Webhook {
        url: String,
        method: String,
        headers: BTreeMap<String, String>,
        body: String,
    },
}

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

impl Action {
    /// Renders the fields for one event (`vars` from [`crate::template::context`]).
    pub(crate) fn render(
        &self,
        templates: &Templates,
        vars: &minijinja::Value,
        recipient: Option<&str>,
    ) -> Result<ActionParams, String> {
        let recipient = || {
            recipient
                .map(str::to_string)
                .ok_or("event has no recipient".to_string())
        };
        let render = |text: &Text| templates.render(text, vars);
        Ok(match &self.kind {
            ActionKind::Suppress {
                reason,
                scope,
                lift: false,
            } => ActionParams::Suppress {
                recipient: recipient()?,
                reason: render(reason)?,
                scope: render(scope)?,
            },
            ActionKind::Suppress {
                reason,
                scope,
                lift: true,
            } => ActionParams::Unsuppress {
                recipient: recipient()?,
                reason: render(reason)?,
                scope: render(scope)?,
            },
            ActionKind::Score { add } => ActionParams::Score {
                recipient: recipient()?,
                add: *add,
            },
            ActionKind::Segment { name, remove } => ActionParams::Segment {
                recipient: recipient()?,
                segment: render(name)?,
                remove: *remove,
            },
            ActionKind::Publish { topic, key, value } => ActionParams::Publish {
                topic: topic.clone(),
                key: key.as_ref().map(render).transpose()?,
                value: render(value)?,
            },
            ActionKind::Webhook {
                url,
                method,
                headers,
                body,
            } => ActionParams::Webhook {
                url: render(url)?,
                method: method.clone(),
                headers: headers
                    .iter()
                    .map(|(name, value)| Ok((name.clone(), render(value)?)))
                    .collect::<Result<_, String>>()?,
                body: render(body)?,
            },
        })
    }
}
