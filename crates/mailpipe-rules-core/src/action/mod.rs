//! Actions: what a matched rule does, checked at load and rendered per event.
//!
//! `suppress` / `unsuppress` the recipient, `score` (add to the engagement score), `segment`
//! (add or remove), `publish` (a record to a topic), `webhook` (the delivery record; the HTTP
//! delivery is the stage's). Each may wait `delay` and, if delayed, re-check a `guard` when
//! due. Rendering yields [`ActionParams`]: everything the stage needs, nothing left to look up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod check;

use crate::condition::when::When;
use crate::template::{LazyContext, Templates, Text};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

impl Action {
    /// Renders the fields for one event (`vars`: [`crate::template::context`], built only
    /// if a field is a template).
    pub(crate) fn render(
        &self,
        templates: &Templates,
        vars: &LazyContext<'_>,
        recipient: Option<&str>,
    ) -> Result<ActionParams, String> {
        let recipient = || {
            recipient
                .map(str::to_string)
                .ok_or("event has no recipient".to_string())
        };
        let render = |text: &Text| templates.render_lazy(text, vars);
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
