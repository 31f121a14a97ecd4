//! Shared harness: the first input byte picks the content type (JSON, form, SNS text,
//! multipart with a fixed boundary, none), the rest is the body.

use mailpipe_normalize_core::{parse, ParseInput, Provider};

const CONTENT_TYPES: [&str; 5] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain; charset=UTF-8",
    "multipart/form-data; boundary=xyz",
    "",
];

pub fn run(provider: Provider, data: &[u8]) {
    let Some((selector, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[*selector as usize % CONTENT_TYPES.len()];
    let headers = if content_type.is_empty() {
        Vec::new()
    } else {
        vec![("content-type".to_string(), content_type.as_bytes().to_vec())]
    };
    let input = ParseInput {
        source: "fuzz",
        raw_request_id: "fuzz",
        received_at_ms: 1_717_000_000_000,
        headers: &headers,
        query: "",
        body,
    };
    let _ = parse(provider, &input);
}
