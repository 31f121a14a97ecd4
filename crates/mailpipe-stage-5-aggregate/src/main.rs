//! `mailpipe-aggregate`: consumes `mail.events.unique` and loads ClickHouse `email_events`
//! and `email_stats_1m` in whole batches.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Aggregate)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_5_aggregate::run(settings, shutdown).await
}
