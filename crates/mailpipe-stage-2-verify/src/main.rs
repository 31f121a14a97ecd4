//! `mailpipe-verify`: consumes `mail.raw`, writes authentic requests (credentials stripped)
//! to `mail.verified` and the others to `mail.rejected` with a reason, both keyed by
//! request id; undecodable records go to `mail.dlq`.

use mailpipe_stage::Stage;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_stage::start(Stage::Verify)?;
    let shutdown = mailpipe_stage::shutdown_on_signals();
    mailpipe_stage_2_verify::run(settings, shutdown).await
}
