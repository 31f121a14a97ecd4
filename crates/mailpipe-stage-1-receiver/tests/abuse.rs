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
use tokio::sync::mpsc;

/// How long a request may take before the test calls the receiver stalled. Generous: on a
/// loaded machine answers are slow, and the point is that they come at all.
const ANSWER_BOUND: Duration = Duration::from_secs(20);

/// A normal request still gets its 200.
async fn still_serving(receiver: &Running) {
    let response = reqwest::Client::builder()
        .timeout(ANSWER_BOUND)
        .build()
        .unwrap()
        .post(receiver.url("/webhooks/postmark"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer within {ANSWER_BOUND:?}: {e}"));
    assert_eq!(response.status(), 200);
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
    let (started_tx, mut started_rx) = mpsc::channel(50);
    let loris: Vec<_> = (0..50)
        .map(|_| tokio::spawn(trickle_headers(receiver.addr, started_tx.clone())))
        .collect();
    drop(started_tx);
    for _ in 0..50 {
        let started = tokio::time::timeout(ANSWER_BOUND, started_rx.recv()).await;
        assert!(
            matches!(started, Ok(Some(()))),
            "a slow client did not start"
        );
    }
    for _ in 0..5 {
        still_serving(&receiver).await;
    }
    for handle in loris {
        assert!(
            handle.await.unwrap(),
            "a slow-loris connection was still open after {TRICKLE_FOR:?} (header_read_timeout 1 s)"
        );
    }
    still_serving(&receiver).await;
    receiver.stop().await.unwrap();
}

/// How long a slow client keeps trickling before it gives up waiting for the close.
const TRICKLE_FOR: Duration = Duration::from_secs(30);

/// Sends a request head one byte every 200 ms, after telling `started` it has begun;
/// returns whether the server closed the connection (within `TRICKLE_FOR`).
async fn trickle_headers(addr: SocketAddr, started: mpsc::Sender<()>) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /webhooks/postmark HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let _ = started.send(()).await;
    let give_up = Instant::now() + TRICKLE_FOR;
    let mut buf = [0u8; 256];
    while Instant::now() < give_up {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return true,
                Ok(_) => {} // a response (e.g. 408) before the close is fine
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"X").await.is_err() {
                    return true;
                }
            }
        }
    }
    false
}

#[tokio::test]
async fn a_body_that_trickles_in_gets_408() {
    let mut settings = test_settings("rcv-slowbody");
    settings.receiver.body_read_timeout_ms = 1000;
    let receiver = start_with_topic(settings).await;
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    let request = head("Content-Length: 100\r\nConnection: close\r\n") + "{\"partial\":";
    stream.write_all(request.as_bytes()).await.unwrap();
    // read_response gives up after 30 s: without the body timeout there is no 408.
    let response = read_response(&mut stream).await;
    assert_eq!(response.status, 408, "{}", response.head);
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
    // Two keep-alive connections that were served hold both slots. (The readiness
    // poller's connection may still hold one for a moment: a connection refused meanwhile
    // is simply opened again.)
    let deadline = Instant::now() + ANSWER_BOUND;
    let mut held = Vec::new();
    while held.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "could not hold two connections within {ANSWER_BOUND:?}"
        );
        if let Some(stream) = served_keep_alive(receiver.addr).await {
            held.push(stream);
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // A third gets the 503 rather than waiting for a slot (the held connections stay
    // open for 30 s, so a queued request would have been answered 200 at best).
    let response = raw_exchange(
        receiver.addr,
        head("Content-Length: 2\r\nConnection: close\r\n").as_bytes(),
    )
    .await;
    assert_eq!(response.status, 503, "{}", response.head);
    assert!(response.head.to_ascii_lowercase().contains("retry-after"));
    // Once they close, the slots come back (as soon as the server has seen the closes).
    drop(held);
    let deadline = Instant::now() + ANSWER_BOUND;
    loop {
        let response = raw_exchange(
            receiver.addr,
            (head("Content-Length: 2\r\nConnection: close\r\n") + "{}").as_bytes(),
        )
        .await;
        if response.status == 200 {
            break;
        }
        assert_eq!(response.status, 503, "{}", response.head);
        assert!(
            Instant::now() < deadline,
            "slots not freed within {ANSWER_BOUND:?} after the connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.stop().await.unwrap();
}

/// Opens a connection and has one keep-alive request served on it; `None` when the
/// server refused the connection (503, closed) instead.
async fn served_keep_alive(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(ANSWER_BOUND, read_head)
        .await
        .expect("an answer to the keep-alive request");
    let response = common::parse_response(&bytes);
    match response.status {
        200 => Some(stream),
        503 => None,
        other => panic!("unexpected {other}: {}", response.head),
    }
}
