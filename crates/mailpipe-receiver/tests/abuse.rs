//! Hostile or broken clients over real sockets: bodies over the limit (declared and
//! chunked), slow-loris clients (headers or body trickling in), too many or too large
//! headers, too many connections. Each gets its status (or its connection closed) and the
//! receiver keeps serving everyone else meanwhile.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{raw_exchange, read_response, start_with_topic, test_settings, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A normal request still gets its 200, quickly.
async fn still_serving(receiver: &Running) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(receiver.url("/webhooks/postmark"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

fn head(extra: &str) -> String {
    format!("POST /webhooks/postmark HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}\r\n")
}

#[tokio::test]
async fn six_mib_bodies_are_413_declared_or_streamed() {
    let receiver = start_with_topic(test_settings("rcv-big")).await;
    // Declared: refused from the headers alone, nothing uploaded.
    let request = head("Content-Length: 6291456\r\nConnection: close\r\n");
    let response = raw_exchange(receiver.addr, request.as_bytes()).await;
    assert_eq!(response.status, 413, "{}", response.head);
    // Chunked: refused once 5 MiB have streamed in.
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    stream
        .write_all(head("Transfer-Encoding: chunked\r\nConnection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let upload = tokio::spawn(async move {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..96 {
            // 96 x 64 KiB = 6 MiB; the server may close before the end: that is the point.
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = writer.write_all(b"0\r\n\r\n").await;
    });
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut bytes)).await;
    let response = common::parse_response(&bytes);
    assert_eq!(response.status, 413, "{}", response.head);
    upload.abort();
    still_serving(&receiver).await;
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn slow_loris_connections_are_closed_and_do_not_stall_others() {
    let mut settings = test_settings("rcv-loris");
    settings.receiver.header_read_timeout_ms = 1000;
    let receiver = start_with_topic(settings).await;
    // Fifty clients that open, send a few header bytes and then one byte at a time.
    let loris: Vec<_> = (0..50)
        .map(|_| tokio::spawn(trickle_headers(receiver.addr)))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        still_serving(&receiver).await;
    }
    for handle in loris {
        let closed_after = handle.await.unwrap();
        assert!(
            closed_after < Duration::from_secs(3),
            "closed only after {closed_after:?}"
        );
    }
    still_serving(&receiver).await;
    receiver.stop().await.unwrap();
}

/// Sends a request head one byte every 200 ms; returns how long until the server closed.
async fn trickle_headers(addr: SocketAddr) -> Duration {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/postmark HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    for _ in 0..50 {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {} // a response (e.g. 408) before the close is fine
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"X").await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
    started.elapsed()
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_408() {
    let mut settings = test_settings("rcv-slowbody");
    settings.receiver.body_read_timeout_ms = 1000;
    let receiver = start_with_topic(settings).await;
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    let request = head("Content-Length: 100\r\nConnection: close\r\n") + "{\"partial\":";
    stream.write_all(request.as_bytes()).await.unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 408, "{}", response.head);
    assert!(started.elapsed() < Duration::from_secs(3));
    still_serving(&receiver).await;
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_431() {
    let receiver = start_with_topic(test_settings("rcv-headers")).await;
    // 150 small headers: over max_headers (100), well under the byte limit.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = raw_exchange(
        receiver.addr,
        head(&(many + "Connection: close\r\n")).as_bytes(),
    )
    .await;
    assert_eq!(response.status, 431, "{}", response.head);
    // One header value over max_header_bytes (64 KiB).
    let huge = format!("X-Huge: {}\r\nConnection: close\r\n", "a".repeat(70 * 1024));
    let response = raw_exchange(receiver.addr, head(&huge).as_bytes()).await;
    assert_eq!(response.status, 431, "{}", response.head);
    // 10,000 headers: refused (431, or a reset if the server closes while we still
    // write), and the receiver serves others meanwhile and afterwards.
    let flood: String = (0..10_000)
        .map(|i| format!("X-Flood-{i}: value-{i}\r\n"))
        .collect();
    let attacks: Vec<_> = (0..4)
        .map(|_| {
            let request = head(&(flood.clone() + "Connection: close\r\n"));
            let addr = receiver.addr;
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let _ = stream.write_all(request.as_bytes()).await;
                read_response(&mut stream).await.status
            })
        })
        .collect();
    still_serving(&receiver).await;
    for attack in attacks {
        let status = attack.await.unwrap();
        assert!(
            status == 431 || status == 0,
            "10,000 headers answered {status}"
        );
    }
    still_serving(&receiver).await;
    receiver.stop().await.unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_get_503_at_once() {
    let mut settings = test_settings("rcv-conns");
    settings.receiver.max_connections = 2;
    settings.receiver.header_read_timeout_ms = 30_000;
    let receiver = start_with_topic(settings).await;
    // Give the readiness poller's connection time to close (it asks for keep-alive).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle_a = TcpStream::connect(receiver.addr).await.unwrap();
    let idle_b = TcpStream::connect(receiver.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let response = raw_exchange(
        receiver.addr,
        head("Content-Length: 2\r\nConnection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 503, "{}", response.head);
    assert!(response.head.to_ascii_lowercase().contains("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop((idle_a, idle_b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = raw_exchange(
        receiver.addr,
        (head("Content-Length: 2\r\nConnection: close\r\n") + "{}").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.head);
    receiver.stop().await.unwrap();
}
