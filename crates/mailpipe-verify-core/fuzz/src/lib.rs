//! The harness shared by the per-provider fuzz targets. Each input either is a request
//! built from scratch (headers and body as fuzzed), or starts from a correctly signed
//! example of the provider and applies fuzzed mutations, so the paths after a valid
//! signature (timestamps, one-time tokens, SNS control messages) are reached too.
//!
//! Properties: `verify` and `required_certificate` never panic, and no rejection detail
//! contains a configured secret.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use arbitrary::Arbitrary;
use mailpipe_verify_core::testing::{example, Example, EXAMPLE_SECRETS};
use mailpipe_verify_core::{required_certificate, verify, Context, Provider};

/// Receipt time of the examples; fuzzed inputs are received around it.
const NOW: i64 = 1_700_000_000;

#[derive(Arbitrary, Debug)]
pub struct Input {
    from_example: bool,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    mutations: Vec<Mutation>,
    receipt_skew_seconds: i16,
}

#[derive(Arbitrary, Debug)]
enum Mutation {
    FlipBodyBit { at: u16, bit: u8 },
    TruncateBody { to: u16 },
    ReplaceHeaderValue { index: u8, value: Vec<u8> },
    TruncateHeaderValue { index: u8, to: u8 },
    DropHeader { index: u8 },
    DuplicateHeader { index: u8 },
}

/// The signed example of `provider`, built once per process: libFuzzer needs every run of
/// an input to behave the same, and building one costs key generation.
fn example_of(provider: Provider) -> &'static Example {
    static EXAMPLES: OnceLock<Mutex<HashMap<Provider, &'static Example>>> = OnceLock::new();
    let examples = EXAMPLES.get_or_init(|| {
        // Fixed throw-away RSA keys (made with `openssl genpkey`, used nowhere else):
        // generating RSA-2048 keys under AddressSanitizer takes longer than a 30 s run.
        mailpipe_verify_core::testing::use_rsa_keys([FUZZ_KEY_1, FUZZ_KEY_2].map(|pem| {
            rsa::pkcs8::DecodePrivateKey::from_pkcs8_pem(pem).expect("fixture key parses")
        }));
        Mutex::default()
    });
    let mut examples = examples.lock().expect("not poisoned");
    examples
        .entry(provider)
        .or_insert_with(|| Box::leak(Box::new(example(provider, NOW))))
}

const FUZZ_KEY_1: &str = include_str!("fuzz-key-1.pem");
const FUZZ_KEY_2: &str = include_str!("fuzz-key-2.pem");

pub fn run(provider: Provider, input: Input) {
    let example = example_of(provider);
    let mut request = example.request.clone();
    if input.from_example {
        for mutation in input.mutations {
            apply(&mut request, mutation);
        }
    } else {
        request.headers = input.headers;
        request.body = input.body;
    }
    request.received_at_ms = (NOW + i64::from(input.receipt_skew_seconds)) * 1000;

    let _ = required_certificate(&request, &example.source);
    let mut context = Context {
        certificates: &example.certificates,
    };
    match verify(request, &example.source, &mut context) {
        Ok(_) => {}
        Err(rejected) => {
            let rejection = rejected.rejection;
            for secret in EXAMPLE_SECRETS {
                assert!(
                    !rejection.detail.contains(secret),
                    "secret in rejection: {rejection}"
                );
            }
        }
    }
}

fn apply(request: &mut mailpipe_verify_core::Request, mutation: Mutation) {
    let headers = &mut request.headers;
    let pick = |index: u8, len: usize| (len > 0).then(|| usize::from(index) % len);
    match mutation {
        Mutation::FlipBodyBit { at, bit } => {
            if !request.body.is_empty() {
                let at = usize::from(at) % request.body.len();
                request.body[at] ^= 1 << (bit % 8);
            }
        }
        Mutation::TruncateBody { to } => request.body.truncate(usize::from(to)),
        Mutation::ReplaceHeaderValue { index, value } => {
            if let Some(i) = pick(index, headers.len()) {
                headers[i].1 = value;
            }
        }
        Mutation::TruncateHeaderValue { index, to } => {
            if let Some(i) = pick(index, headers.len()) {
                headers[i].1.truncate(usize::from(to));
            }
        }
        Mutation::DropHeader { index } => {
            if let Some(i) = pick(index, headers.len()) {
                headers.remove(i);
            }
        }
        Mutation::DuplicateHeader { index } => {
            if let Some(i) = pick(index, headers.len()) {
                let copy = headers[i].clone();
                headers.push(copy);
            }
        }
    }
}
