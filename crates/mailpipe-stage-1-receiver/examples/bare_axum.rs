//! The baseline of `scripts/bench-receiver.sh`: a bare axum server whose webhook route
//! reads the body and answers 200, doing no other work. Same runtime and HTTP stack as
//! the receiver, so the ratio between the two is what the receiver's work costs.
//!
//! `cargo run --release -p mailpipe-stage-1-receiver --example bare_axum -- 127.0.0.1:18090`

use axum::routing::post;
use axum::Router;
use bytes::Bytes;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = Router::new().route(
        "/webhooks/{provider}",
        // Reading the body is the least any webhook handler does.
        post(|body: Bytes| async move { format!("{{\"bytes\":{}}}", body.len()) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("bare axum listening on {addr}");
    axum::serve(listener, app).await?;
    Ok(())
}
