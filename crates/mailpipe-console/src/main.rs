//! `mailpipe-console`: the console's web page, JSON API and alerts (see the lib).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = mailpipe_settings::Settings::load()?;
    mailpipe_telemetry::init_logging(&settings.telemetry)?;
    mailpipe_console::init_metrics();
    let shutdown = mailpipe_runtime::shutdown_on_signals();
    mailpipe_console::run(settings, shutdown).await
}
