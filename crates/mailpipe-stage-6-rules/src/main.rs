//! `mailpipe-rules`: consumes `mail.events.unique`, evaluates the rules file
//! (`[rules] file`), writes `mail.actions` and `mail.suppressions`, keeps state in Redis.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Rules)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_6_rules::run(settings, shutdown).await
}
