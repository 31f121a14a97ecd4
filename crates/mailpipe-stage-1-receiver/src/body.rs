//! Reading a request body with the two limits a webhook edge needs: a size limit (from
//! `Content-Length` before reading anything, and again while the body streams in, for
//! chunked bodies) and a deadline for the whole body (slow clients).

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;

use crate::error::ReceiverError;

/// 413 up front when the declared length is over `limit`: nothing is read, and a client
/// that sent `Expect: 100-continue` never uploads the body.
pub fn check_declared_length(headers: &HeaderMap, limit: u64) -> Result<(), ReceiverError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(length) if length > limit => Err(ReceiverError::BodyTooLarge { limit }),
        _ => Ok(()),
    }
}

/// Reads the whole body: at most `limit` bytes (413 past it), within `deadline` (408).
/// A body that arrives in one frame (small requests, the usual case) is not copied.
pub async fn read_body(body: Body, limit: u64, deadline: Duration) -> Result<Bytes, ReceiverError> {
    match tokio::time::timeout(deadline, read_limited(body, limit)).await {
        Ok(result) => result,
        Err(_) => Err(ReceiverError::BodyTimeout(deadline)),
    }
}

async fn read_limited(mut body: Body, limit: u64) -> Result<Bytes, ReceiverError> {
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total: u64 = 0;
    while let Some(frame) = body.frame().await {
        // The client went away or broke the framing mid-body.
        let frame = frame.map_err(|_| ReceiverError::BodyIncomplete)?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers carry nothing the raw record keeps
        };
        total += data.len() as u64;
        if total > limit {
            return Err(ReceiverError::BodyTooLarge { limit });
        }
        match (&mut first, &mut rest) {
            (None, None) => first = Some(data),
            (Some(head), None) => {
                let mut joined = BytesMut::with_capacity(head.len() + data.len() * 2);
                joined.extend_from_slice(head);
                joined.extend_from_slice(&data);
                rest = Some(joined);
            }
            (_, Some(joined)) => joined.extend_from_slice(&data),
        }
    }
    Ok(match (first, rest) {
        (_, Some(joined)) => joined.freeze(),
        (Some(only), None) => only,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A body delivered in the given frames (like a chunked upload).
    pub(crate) fn chunked(chunks: Vec<&'static [u8]>) -> Body {
        let (mut tx, body) =
            http_body_util::channel::Channel::<Bytes, Infallible>::new(chunks.len());
        for chunk in chunks {
            let sent = tx.try_send(hyper::body::Frame::data(Bytes::from_static(chunk)));
            assert!(sent.is_ok(), "channel sized for every chunk");
        }
        Body::new(body)
    }

    #[tokio::test]
    async fn declared_length_over_the_limit_is_refused_up_front() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(matches!(
            check_declared_length(&headers, 10),
            Err(ReceiverError::BodyTooLarge { limit: 10 })
        ));
        assert!(check_declared_length(&headers, 11).is_ok());
        assert!(check_declared_length(&HeaderMap::new(), 0).is_ok());
    }

    #[tokio::test]
    async fn streamed_bodies_are_joined_and_limited() {
        let body = chunked(vec![b"ab", b"cd", b"e"]);
        let read = read_body(body, 5, Duration::from_secs(5)).await.unwrap();
        assert_eq!(&read[..], b"abcde");
        let body = chunked(vec![b"ab", b"cd", b"ef"]);
        let err = read_body(body, 5, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiverError::BodyTooLarge { limit: 5 }));
    }

    #[tokio::test]
    async fn a_body_that_stops_arriving_times_out() {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
        tx.send_data(Bytes::from_static(b"{")).await.unwrap();
        let err = read_body(Body::new(body), 100, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, ReceiverError::BodyTimeout(_)));
        drop(tx);
    }
}
