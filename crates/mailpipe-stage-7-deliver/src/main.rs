//! `mailpipe-deliver`: consumes `mail.actions`, delivers `webhook` actions as signed HTTP
//! requests with durable retries (`[delivery]`), writes their outcomes back.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Deliver)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_7_deliver::run(settings, shutdown).await
}
