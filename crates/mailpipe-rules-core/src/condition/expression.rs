//! The `expression` condition: a CEL expression over the event's fields, for what the other
//! conditions cannot say (`metadata.plan == "pro" && size(tags) > 2`).
//!
//! CEL is not Turing-complete (no loops beyond bounded list macros, no side effects), so an
//! expression always terminates. It is compiled at load; a name that is not an event field
//! is a load error. At run time anything but `true` (false, another type, an error such as a
//! missing map key) is a failed condition whose explanation says why.

use std::collections::BTreeSet;
use std::sync::Arc;

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};
use cel::{Env, Program, Value};
use toml::Spanned;

use super::EvalContext;
use crate::compile::Sink;
use crate::error::RuleErrorKind;
use crate::vars::{is_known_path, EVENT_FIELDS};

#[derive(Debug)]
pub(crate) struct Expression {
    pub source: String,
    program: Program,
}

impl Expression {
    pub(crate) fn compile(
        raw: &Spanned<String>,
        env: &Env,
        sink: &mut Sink<'_>,
    ) -> Option<Expression> {
        let program = match env.compile(raw.get_ref()) {
            Ok(program) => program,
            Err(e) => {
                let message = e.to_string().lines().next().unwrap_or_default().to_string();
                sink.at(raw.span(), RuleErrorKind::InvalidExpression(message));
                return None;
            }
        };
        let mut free = BTreeSet::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        let unknown: Vec<String> = free
            .into_iter()
            .filter(|v| !is_known_path(v, &EVENT_FIELDS))
            .collect();
        for name in &unknown {
            sink.at(
                raw.span(),
                RuleErrorKind::UnknownExpressionVariable(name.clone()),
            );
        }
        unknown.is_empty().then(|| Expression {
            source: raw.get_ref().clone(),
            program,
        })
    }

    pub(crate) fn evaluate(&self, ctx: &EvalContext<'_>) -> (bool, String) {
        match self.program.execute(&ctx.cel_context()) {
            Ok(Value::Bool(true)) => (true, ctx.detail(|| format!("{} is true", self.source))),
            Ok(Value::Bool(false)) => (false, ctx.detail(|| format!("{} is false", self.source))),
            Ok(other) => (
                false,
                ctx.detail(|| format!("{} is not a bool: {other:?}", self.source)),
            ),
            Err(e) => (false, ctx.detail(|| format!("{} failed: {e}", self.source))),
        }
    }
}

/// The variables `expr` reads that it does not bind itself: a macro's own variables
/// (`t` in `tags.exists(t, t == "x")`) are bound, so they are not event fields to check.
fn free_variables(expr: &IdedExpr, bound: &mut Vec<String>, free: &mut BTreeSet<String>) {
    let entries =
        |entries: &[IdedEntryExpr], bound: &mut Vec<String>, free: &mut BTreeSet<String>| {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(field) => free_variables(&field.value, bound, free),
                    EntryExpr::MapEntry(pair) => {
                        free_variables(&pair.key, bound, free);
                        free_variables(&pair.value, bound, free);
                    }
                }
            }
        };
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(name) {
                free.insert(name.clone());
            }
        }
        Expr::Call(call) => {
            call.target
                .iter()
                .for_each(|t| free_variables(t, bound, free));
            call.args
                .iter()
                .for_each(|a| free_variables(a, bound, free));
        }
        Expr::Select(select) => free_variables(&select.operand, bound, free),
        Expr::List(list) => list
            .elements
            .iter()
            .for_each(|e| free_variables(e, bound, free)),
        Expr::Map(map) => entries(&map.entries, bound, free),
        Expr::Struct(structure) => entries(&structure.entries, bound, free),
        Expr::Comprehension(comprehension) => {
            free_variables(&comprehension.iter_range, bound, free);
            free_variables(&comprehension.accu_init, bound, free);
            let outer = bound.len();
            bound.push(comprehension.iter_var.clone());
            bound.extend(comprehension.iter_var2.clone());
            bound.push(comprehension.accu_var.clone());
            for inner in [
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                free_variables(inner, bound, free);
            }
            bound.truncate(outer);
        }
    }
}

/// The standard CEL environment the rules compile and run in, built once per rule set.
pub(crate) fn environment() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::test_support::{context_for, event};
    use crate::error::LineIndex;
    use mailpipe_model::EventType;

    fn compile(text: &str) -> (Option<Expression>, Vec<RuleErrorKind>) {
        let index = LineIndex::new("x");
        let mut sink = Sink::new(&index, 0);
        let expression =
            Expression::compile(&Spanned::new(0..1, text.into()), &environment(), &mut sink);
        (
            expression,
            sink.errors.into_iter().map(|e| e.kind).collect(),
        )
    }

    #[test]
    fn evaluates_over_event_fields() {
        let e = event(EventType::Clicked);
        let ctx = context_for(&e);
        let cases = [
            (r#"metadata.plan == "pro" && size(tags) == 1"#, true),
            (r#"event_type == "clicked" && provider == "sendgrid""#, true),
            (r#"recipient.endsWith("@example.org")"#, true),
            (r#"geo.country == null"#, true),
            ("occurred_at > 0 && event_time == occurred_at", true),
            (r#"campaign_id in ["autumn", "winter"]"#, false),
            // A missing key is an error at run time: a failed condition, not a panic.
            (r#"metadata.team == "a""#, false),
            // Not a bool.
            ("1 + 1", false),
            // Macros: their own variables are not event fields, and are allowed.
            ("tags.exists(t, t == 'welcome')", true),
            ("has(metadata.plan) && !has(metadata.team)", true),
            (
                "tags.all(tag, tag.startsWith('w')) && tags.map(x, x + '!')[0] == 'welcome!'",
                true,
            ),
            (r#"recipient_domain.matches('^example\\.(org|com)$')"#, true),
        ];
        for (text, want) in cases {
            let (expression, errors) = compile(text);
            assert!(errors.is_empty(), "{text}: {errors:?}");
            assert_eq!(expression.unwrap().evaluate(&ctx).0, want, "{text}");
        }
    }

    #[test]
    fn syntax_errors_and_unknown_names_fail_at_load() {
        let (expression, errors) = compile("event_type ==");
        assert!(expression.is_none());
        assert!(matches!(errors[..], [RuleErrorKind::InvalidExpression(_)]));
        let (expression, errors) = compile("recipent == 'a' || nope > 1");
        assert!(expression.is_none());
        assert_eq!(
            errors,
            vec![
                RuleErrorKind::UnknownExpressionVariable("nope".into()),
                RuleErrorKind::UnknownExpressionVariable("recipent".into()),
            ]
        );
    }
}
