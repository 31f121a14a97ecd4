//! `mailpipe-schema-registry` binary: a DEVELOPMENT-ONLY schema registry speaking the
//! Confluent Schema Registry REST API, for local runs and tests of mailpipe.
//!
//! Do not deploy it. Production uses Confluent Schema Registry, Karapace, Apicurio Registry or
//! Redpanda's built-in registry; mailpipe talks to all of them through the same API.
//!
//! This file only reads arguments, sets up logging and signals, and hands over to
//! [`mailpipe_schema_registry::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use mailpipe_schema_registry::{run, Registry};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// DEVELOPMENT-ONLY schema registry (Confluent REST API, Avro only, one JSON file).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on. The default is loopback only: there is no authentication.
    #[arg(
        long,
        env = "MAILPIPE_REGISTRY_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    listen: SocketAddr,

    /// JSON file holding all schemas, subjects and config; created on first registration.
    #[arg(
        long,
        env = "MAILPIPE_REGISTRY_DATA_FILE",
        default_value = "./schema-registry.json"
    )]
    data_file: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // RUST_LOG overrides; info is enough to see registrations without request noise.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        // No colour codes when the log goes to a file (make up / make run).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    // Load before binding, so a corrupt data file fails fast with its name in the error.
    let registry = Registry::open(&args.data_file)?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;

    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    run(listener, registry, shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM (what `docker stop` and systemd send), so axum can
/// finish in-flight requests before the process exits.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent_and_default_to_loopback() {
        Args::command().debug_assert();
        let args = Args::try_parse_from(["mailpipe-schema-registry"]).unwrap();
        assert_eq!(args.listen.to_string(), "127.0.0.1:8081");
        assert_eq!(args.data_file, PathBuf::from("./schema-registry.json"));
    }
}
