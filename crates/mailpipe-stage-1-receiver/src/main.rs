//! `mailpipe-receiver`: the edge receiver binary. Settings from `MAILPIPE_CONFIG` (default
//! `config/mailpipe.toml`) and `MAILPIPE_*` env; listens on `receiver.listen`; Ctrl-C or
//! SIGTERM drains and stops it.

use anyhow::Context;
use mailpipe_settings::Settings;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    mailpipe_telemetry::init_logging(&settings.telemetry)?;
    let listener = TcpListener::bind(settings.receiver.listen)
        .await
        .with_context(|| format!("binding receiver.listen {}", settings.receiver.listen))?;
    let shutdown = mailpipe_runtime::shutdown_on_signals();
    mailpipe_stage_1_receiver::run(settings, listener, shutdown).await
}
