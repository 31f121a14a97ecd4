//! Reading a rules file: TOML text in, a checked [`RuleSet`] or every error out.
//!
//! The file is parsed once (a syntax error stops there: nothing after it can be trusted);
//! then each `[[rule]]` is deserialized and checked on its own, so each rule's problems are
//! reported, with line and column, whatever is wrong with the others.

use std::collections::BTreeMap;

use serde::de::IntoDeserializer;
use serde::Deserialize;
use toml_edit::{ImDocument, Item, Value};

use crate::compile::{compile_rule, Sink};
use crate::condition::expression;
use crate::error::{LineIndex, Location, RuleError, RuleErrorKind};
use crate::file::RawRule;
use crate::template::Templates;
use crate::RuleSet;

/// Loads and checks a rules file; `Err` holds every problem found, in file order.
pub fn load(text: &str) -> Result<RuleSet, Vec<RuleError>> {
    let index = LineIndex::new(text);
    let syntax_error = |span: Option<std::ops::Range<usize>>, message: &str| RuleError {
        location: index.locate_span(span),
        rule_id: None,
        kind: RuleErrorKind::Syntax(message.trim().to_string()),
    };
    let document =
        ImDocument::parse(text).map_err(|e| vec![syntax_error(e.span(), e.message())])?;
    let mut errors = Vec::new();
    for (key, _) in document.as_table().iter().filter(|(key, _)| *key != "rule") {
        let span = document.as_table().key(key).and_then(|k| k.span());
        errors.push(syntax_error(
            span,
            &format!("unknown top-level key `{key}` (a rules file holds `[[rule]]` tables)"),
        ));
    }
    let tables: Vec<(Value, usize)> = match document.as_table().get("rule") {
        None => Vec::new(),
        Some(Item::ArrayOfTables(array)) => array
            .iter()
            .map(|t| {
                (
                    Value::InlineTable(t.clone().into_inline_table()),
                    t.span().map_or(0, |s| s.start),
                )
            })
            .collect(),
        Some(Item::Value(Value::Array(array))) => array
            .iter()
            .map(|v| (v.clone(), v.span().map_or(0, |s| s.start)))
            .collect(),
        Some(other) => {
            errors.push(syntax_error(
                other.span(),
                "`rule` must be an array of tables (`[[rule]]`)",
            ));
            Vec::new()
        }
    };
    let env = expression::environment();
    let mut templates = Templates::new();
    let mut rules = Vec::new();
    let mut first_seen: BTreeMap<String, Location> = BTreeMap::new();
    for (value, start) in tables {
        let value_copy = value.clone();
        let raw = match RawRule::deserialize(value.into_deserializer()) {
            Ok(raw) => raw,
            Err(e) => {
                let span = e.span().or(Some(start..start));
                let mut error = syntax_error(span, e.message());
                error.rule_id = rule_id_of(&value_copy);
                errors.push(error);
                continue;
            }
        };
        let mut sink = Sink::new(&index, start);
        let id = raw.id.get_ref().clone();
        let id_location = index.locate(raw.id.span().start);
        if let Some(first) = first_seen.get(&id) {
            sink.rule_id = Some(id.clone());
            sink.at(
                raw.id.span(),
                RuleErrorKind::DuplicateId(id.clone(), *first),
            );
        } else {
            first_seen.insert(id.clone(), id_location);
        }
        let compiled = compile_rule(&raw, &mut templates, &env, &mut sink);
        errors.append(&mut sink.errors);
        rules.extend(compiled);
    }
    if !errors.is_empty() {
        errors.sort_by_key(|e| e.location);
        return Err(errors);
    }
    Ok(RuleSet::new(rules, templates, env))
}

/// The `id` of a rule that failed to deserialize, to name it in its error.
fn rule_id_of(value: &Value) -> Option<String> {
    let id = value.as_inline_table()?.get("id")?.as_str()?;
    Some(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_an_empty_rule_set() {
        assert_eq!(load("# nothing yet\n").map(|set| set.len()), Ok(0));
    }

    #[test]
    fn syntax_error_has_its_line() {
        let errors = load("[[rule]]\nid = \"a\"\nthen = [\n").err().unwrap();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location.line, 4);
        assert!(matches!(errors[0].kind, RuleErrorKind::Syntax(_)));
    }

    #[test]
    fn unknown_top_level_key() {
        let errors = load("title = \"x\"\n").err().unwrap();
        assert_eq!(errors[0].location, Location { line: 1, column: 1 });
    }
}
