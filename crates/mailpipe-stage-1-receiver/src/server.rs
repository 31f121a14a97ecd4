//! The HTTP/1.1 server loop. It drives hyper directly (not `axum::serve`) because the
//! edge needs hyper's connection limits: header count and size (431), and a header read
//! timeout that closes slow-loris connections. Also here: the open-connection cap (one
//! more connection gets a canned 503 and is closed) and graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use mailpipe_settings::ReceiverSettings;
use mailpipe_telemetry::names;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` is cancelled; then stops accepting and
/// lets open requests finish, at most `shutdown_timeout_ms`, before returning.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ReceiverSettings,
    shutdown: CancellationToken,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
        .max_headers(settings.max_headers)
        .max_header_size(settings.max_header_bytes)
        .keep_alive(true);
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tokio::spawn(refuse_connection(stream, settings.retry_after_secs));
            continue;
        };
        // Small responses must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            metrics::gauge!(names::RECEIVER_CONNECTIONS).increment(1.0);
            if let Err(e) = connection.await {
                let reason = connection_error_reason(&e);
                metrics::counter!(names::RECEIVER_CONNECTION_ERRORS, "reason" => reason)
                    .increment(1);
                tracing::debug!(%peer, reason, error = %e, "connection ended with an error");
            }
            metrics::gauge!(names::RECEIVER_CONNECTIONS).decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    let timeout = Duration::from_millis(settings.shutdown_timeout_ms);
    tracing::info!(
        open = graceful.count(),
        ?timeout,
        "stopped accepting; draining connections"
    );
    if tokio::time::timeout(timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?timeout,
            "connections still open after the shutdown timeout; closing them"
        );
    }
}

/// The closed set of `reason` labels for connections hyper ended with an error.
fn connection_error_reason(e: &hyper::Error) -> &'static str {
    if e.is_timeout() {
        "header_timeout"
    } else if e.is_parse_too_large() {
        "headers_too_large"
    } else if e.is_parse() {
        "malformed_request"
    } else if e.is_incomplete_message() {
        "incomplete_request"
    } else {
        "io"
    }
}

/// Over the connection cap: answer 503 at once (the client retries) instead of letting
/// connections queue in the kernel without bound.
async fn refuse_connection(mut stream: TcpStream, retry_after_secs: u32) {
    metrics::counter!(names::RECEIVER_REJECTIONS, "reason" => "too_many_connections").increment(1);
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: {retry_after_secs}\r\n\
         content-length: 0\r\nconnection: close\r\n\r\n"
    );
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Lingering close: closing with the client's request unread would send a reset,
        // which can destroy the 503 before the client reads it. Drain briefly first.
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), write).await;
}
