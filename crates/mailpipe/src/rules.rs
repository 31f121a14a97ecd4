//! `mailpipe rules check FILE` and `mailpipe rules explain FILE EVENT.json`: the rules
//! engine without Kafka or Redis, for whoever writes rules.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use mailpipe_model::EmailEvent;
use mailpipe_rules_core::{RuleSet, StateSnapshot};

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    command: RulesCommand,
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// Check a rules file: every error with its line and column; exit 1 if any.
    Check {
        /// The rules file (TOML).
        file: PathBuf,
    },
    /// For each rule: matched or not, the condition that decided, the actions rendered.
    /// The event is canonical JSON as `mailpipe inspect` prints it (`-` reads stdin;
    /// several lines: each explained). Conditions on shared state (thresholds, rates,
    /// scores, segments, suppressions) are reported as not fetched: this command reads
    /// no live state.
    Explain {
        /// The rules file (TOML).
        file: PathBuf,
        /// A file of canonical events, one JSON object per line, or `-` for stdin.
        events: PathBuf,
        /// Print the explanation as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: &RulesArgs) -> anyhow::Result<()> {
    match &args.command {
        RulesCommand::Check { file } => {
            let rules = load_file(file)?;
            println!("{}: {} rules, all valid", file.display(), rules.len());
            for rule in rules.rules() {
                let mode = match (rule.enabled, rule.dry_run) {
                    (false, _) => " (disabled)",
                    (true, true) => " (dry run)",
                    (true, false) => "",
                };
                println!(
                    "  line {:>4}  priority {:>4}  {} v{}{mode}",
                    rule.line, rule.priority, rule.id, rule.version
                );
            }
            Ok(())
        }
        RulesCommand::Explain { file, events, json } => {
            let rules = load_file(file)?;
            let text = read_text(events)?;
            let mut explained = 0;
            for (number, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let event: EmailEvent = serde_json::from_str(line).with_context(|| {
                    format!(
                        "line {} is not a canonical event (see mailpipe inspect)",
                        number + 1
                    )
                })?;
                let explanation = rules.explain(&event, &StateSnapshot::new());
                if *json {
                    println!("{}", serde_json::to_string(&explanation)?);
                } else {
                    println!("{}", explanation.to_text().trim_end());
                }
                explained += 1;
            }
            if explained == 0 {
                bail!("no event in {}", events.display());
            }
            Ok(())
        }
    }
}

/// Loads a rules file as the stage does, or fails listing every error as
/// `FILE:LINE:COLUMN: message`.
fn load_file(file: &Path) -> anyhow::Result<RuleSet> {
    mailpipe_stage_6_rules::shared::load_file(file).map_err(|errors| {
        anyhow::anyhow!(
            "{} error(s) in {}:\n{}",
            errors.len(),
            file.display(),
            errors.join("\n")
        )
    })
}

fn read_text(path: &PathBuf) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        return Ok(text);
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
