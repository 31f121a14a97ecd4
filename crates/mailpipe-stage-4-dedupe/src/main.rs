//! `mailpipe-dedupe`: consumes `mail.events`, writes each event id once to
//! `mail.events.unique` (same bytes, same key), remembering seen ids in Redis.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Dedupe)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_4_dedupe::run(settings, shutdown).await
}
