//! Process plumbing every mailpipe binary shares, so each concern is set up one way:
//! the shutdown signal ([`shutdown_on_signals`]), the outbound HTTP client ([`http`]) and
//! the Redis connection ([`redis`]).
//!
//! Invariant: Ctrl-C and SIGTERM (what orchestrators send) both cancel the one shutdown
//! token; a SIGTERM handler that cannot be installed is logged and leaves Ctrl-C working,
//! it never panics or stops the process.

pub mod http;
pub mod redis;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Backoff between tries of something that will answer again (Redis, a Kafka produce):
/// doubles from 100 ms up to 5 s, so a recovered service is used again within 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((100u64 << attempt.min(6)).min(5_000))
}

/// A token cancelled on Ctrl-C or SIGTERM (the task listening for them is spawned here,
/// so this must be called inside a Tokio runtime).
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    tokio::spawn(cancel_on_signals(token.clone()));
    token
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub async fn cancel_on_signals(shutdown: CancellationToken) {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C; SIGTERM only");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
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

    #[test]
    fn backoff_doubles_up_to_five_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(800));
        assert_eq!(backoff(6), Duration::from_secs(5));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    /// SIGTERM to ourselves cancels the token (the handler is installed before the signal
    /// is raised, so the default action, ending the process, never runs).
    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = CancellationToken::new();
        let listening = tokio::spawn(cancel_on_signals(token.clone()));
        // Let the task install its handlers.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(std::time::Duration::from_secs(5), token.cancelled())
            .await
            .expect("token cancelled");
        listening.await.unwrap();
    }
}
