//! Templated action fields (minijinja): checked at load, rendered per event.
//!
//! Undefined variables are errors, not blanks (`UndefinedBehavior::Strict`): at load, every
//! variable a template names must be an event field (or `rule.*`), and the template is
//! rendered once against a sample event so unknown filters fail there too. At run time a
//! missing metadata key is a render error the engine reports on the action. Absent optional
//! fields render as empty text. Rendering is fuel-bounded, so no template runs away.

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value};
use serde::Serialize;
use toml::Spanned;

use crate::compile::Sink;
use crate::error::RuleErrorKind;
use crate::vars::{is_known_path, sample_event, EventVars, KNOWN_FIELDS};

/// Instructions one render may spend: ample for any field, a stop for runaway loops.
const FUEL: u64 = 50_000;

/// Builtin functions templates may call; `undeclared_variables` lists them too.
const GLOBALS: [&str; 3] = ["range", "dict", "namespace"];

/// A field's text: plain (no template syntax, used as is) or a template in the set's
/// environment, by name.
#[derive(Debug, Clone)]
pub(crate) enum Text {
    Plain(String),
    Template(String),
}

/// The environment every rule's templates live in.
#[derive(Debug)]
pub(crate) struct Templates {
    env: Environment<'static>,
}

/// `rule.*` as templates see it.
#[derive(Debug, Serialize)]
pub(crate) struct RuleVars<'a> {
    pub id: &'a str,
    pub description: &'a str,
    pub version: &'a str,
}

impl Templates {
    pub(crate) fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_formatter(|out, state, value| {
            if value.is_none() {
                Ok(())
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        Templates { env }
    }

    /// Checks `raw` and keeps it under `name`; errors point at the field's span.
    pub(crate) fn add(
        &mut self,
        name: String,
        raw: &Spanned<String>,
        sink: &mut Sink<'_>,
    ) -> Option<Text> {
        let source = raw.get_ref();
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Some(Text::Plain(source.clone()));
        }
        if let Err(e) = self.env.add_template_owned(name.clone(), source.clone()) {
            sink.at(raw.span(), RuleErrorKind::InvalidTemplate(describe(&e)));
            return None;
        }
        let template = self.env.get_template(&name).ok()?;
        let mut variables: Vec<String> = template.undeclared_variables(true).into_iter().collect();
        variables.sort();
        let unknown: Vec<&String> = variables
            .iter()
            .filter(|v| !is_known_path(v, &KNOWN_FIELDS) && !GLOBALS.contains(&v.as_str()))
            .collect();
        for variable in &unknown {
            sink.at(
                raw.span(),
                RuleErrorKind::UnknownTemplateVariable((*variable).clone()),
            );
        }
        if !unknown.is_empty() {
            return None;
        }
        let metadata_keys: Vec<String> = variables
            .iter()
            .filter_map(|v| v.strip_prefix("metadata."))
            .map(|k| k.split('.').next().unwrap_or(k).to_string())
            .collect();
        let sample = sample_event(&metadata_keys);
        let rule = RuleVars {
            id: "sample",
            description: "sample",
            version: "sample",
        };
        if let Err(e) = template.render(context(&EventVars::of(&sample), &rule)) {
            sink.at(raw.span(), RuleErrorKind::InvalidTemplate(describe(&e)));
            return None;
        }
        Some(Text::Template(name))
    }

    /// Renders `text` for one event, building its variables only if it is a template.
    pub(crate) fn render_lazy(
        &self,
        text: &Text,
        vars: &LazyContext<'_>,
    ) -> Result<String, String> {
        match text {
            Text::Plain(s) => Ok(s.clone()),
            Text::Template(_) => self.render(text, vars.get()),
        }
    }

    /// Renders `text` for one event.
    pub(crate) fn render(&self, text: &Text, vars: &Value) -> Result<String, String> {
        match text {
            Text::Plain(s) => Ok(s.clone()),
            Text::Template(name) => self
                .env
                .get_template(name)
                .and_then(|t| t.render(vars))
                .map_err(|e| describe(&e)),
        }
    }
}

/// The variables of one event under one rule.
pub(crate) fn context(event: &EventVars<'_>, rule: &RuleVars<'_>) -> Value {
    let event = Value::from(Serde(event));
    minijinja::context! { rule => Value::from(Serde(rule)), ..event }
}

/// [`context`], built on first use: most actions' fields are plain text, and building the
/// variables (every event field into minijinja values) was most of a matched rule's cost.
pub(crate) struct LazyContext<'a> {
    event: &'a EventVars<'a>,
    rule: RuleVars<'a>,
    value: std::cell::OnceCell<Value>,
}

impl<'a> LazyContext<'a> {
    pub(crate) fn new(event: &'a EventVars<'a>, rule: RuleVars<'a>) -> Self {
        LazyContext {
            event,
            rule,
            value: std::cell::OnceCell::new(),
        }
    }

    pub(crate) fn get(&self) -> &Value {
        self.value.get_or_init(|| context(self.event, &self.rule))
    }
}

/// minijinja's message with its detail, on one line.
fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    if let Some(detail) = error.detail() {
        if !text.contains(detail) {
            text = format!("{text}: {detail}");
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::event;
    use crate::error::LineIndex;
    use mailpipe_model::EventType;

    fn add(source: &str) -> (Templates, Option<Text>, Vec<RuleErrorKind>) {
        let index = LineIndex::new("x");
        let mut sink = Sink::new(&index, 0);
        let mut templates = Templates::new();
        let text = templates.add("t".into(), &Spanned::new(0..1, source.into()), &mut sink);
        (
            templates,
            text,
            sink.errors.into_iter().map(|e| e.kind).collect(),
        )
    }

    #[test]
    fn renders_fields_metadata_and_rule() {
        let (templates, text, errors) = add(
            "{{ rule.id }}: {{ recipient }} {{ metadata.plan }} [{{ url }}] {{ tags | join(',') }}",
        );
        assert!(errors.is_empty(), "{errors:?}");
        let mut e = event(EventType::Clicked);
        e.url = None;
        let rule = RuleVars {
            id: "r1",
            description: "",
            version: "1",
        };
        let vars = context(&EventVars::of(&e), &rule);
        assert_eq!(
            templates.render(&text.unwrap(), &vars).unwrap(),
            "r1: ann@example.org pro [] welcome"
        );
    }

    #[test]
    fn loops_sets_and_builtins_are_not_unknown_variables() {
        let source = "{% set sep = '|' %}{% for t in tags %}{{ loop.index }}{{ sep }}{{ t }}{% endfor %}{{ range(2) | list | length }}{{ recipient is none }}";
        let (templates, text, errors) = add(source);
        assert!(errors.is_empty(), "{errors:?}");
        let e = event(EventType::Opened);
        let rule = RuleVars {
            id: "r",
            description: "",
            version: "1",
        };
        let rendered = templates.render(&text.unwrap(), &context(&EventVars::of(&e), &rule));
        assert_eq!(rendered.unwrap(), "1|welcome2False");
    }

    #[test]
    fn plain_text_needs_no_template() {
        let (_, text, errors) = add("hard bounce");
        assert!(errors.is_empty());
        assert!(matches!(text, Some(Text::Plain(s)) if s == "hard bounce"));
    }

    #[test]
    fn load_errors() {
        let (_, text, errors) = add("{{ recipent }} {{ geo.street }}");
        assert!(text.is_none());
        assert_eq!(
            errors,
            vec![
                RuleErrorKind::UnknownTemplateVariable("geo.street".into()),
                RuleErrorKind::UnknownTemplateVariable("recipent".into()),
            ]
        );
        assert!(matches!(
            add("{{ recipient ").2[..],
            [RuleErrorKind::InvalidTemplate(_)]
        ));
        assert!(matches!(
            add("{{ recipient | shout }}").2[..],
            [RuleErrorKind::InvalidTemplate(_)]
        ));
    }

    #[test]
    fn missing_metadata_key_is_a_render_error() {
        let (templates, text, errors) = add("{{ metadata.team }}");
        assert!(errors.is_empty());
        let e = event(EventType::Opened);
        let rule = RuleVars {
            id: "r",
            description: "",
            version: "1",
        };
        assert!(templates
            .render(&text.unwrap(), &context(&EventVars::of(&e), &rule))
            .is_err());
    }
}
