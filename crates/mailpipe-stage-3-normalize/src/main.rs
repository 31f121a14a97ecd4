//! `mailpipe-normalize`: consumes `mail.verified`, writes canonical events to `mail.events`
//! (key = recipient) and unparseable requests to `mail.dlq`.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Normalize)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_3_normalize::run(settings, shutdown).await
}
