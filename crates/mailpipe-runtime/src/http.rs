//! The one way mailpipe builds outbound HTTP clients (the verify stage's certificate and
//! SubscribeURL fetches, the sample sender): bounded in time, no redirects, no proxy from
//! the environment, and a user agent naming the program.
//!
//! Invariant: no client follows a redirect. The verify stage's URLs were vetted by host,
//! and a redirect could leave the allowed hosts; the sample sender posts to a receiver,
//! which never redirects, so following one would only hide a misconfigured URL.

use std::time::Duration;

/// The longest a connection may take to open, whatever the request's own bound.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A client whose requests each take at most `timeout` (connect, headers and body; the
/// connection itself at most [`MAX_CONNECT_TIMEOUT`]), sending `user_agent`
/// (`<program>/<version>`).
pub fn client(user_agent: &str, timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(user_agent)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A redirect is handed back as it is, not followed.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await.unwrap();
            let answer = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\n\
                          Content-Length: 0\r\nConnection: close\r\n\r\n";
            socket.write_all(answer.as_bytes()).await.unwrap();
        });
        let client = client("mailpipe-test/0", Duration::from_secs(5)).unwrap();
        let response = client.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 302);
    }
}
