//! Verifications per second per provider on one core, for `make bench`:
//! `cargo bench -p mailpipe-verify-core --features testing`. Each provider's signed example
//! (a small body) is verified in a loop for about half a second; a SHA-256 of the same
//! body is the yardstick HMAC schemes should stay within a small factor of.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mailpipe_verify_core::testing::example;
use mailpipe_verify_core::{verify, Context, Provider};
use sha2::{Digest, Sha256};

const NOW: i64 = 1_700_000_000;
const RUN_FOR: Duration = Duration::from_millis(500);

/// Calls `f` until `RUN_FOR` has passed; returns calls per second.
fn rate(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < RUN_FOR {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    println!("{:<12} {:>14}", "provider", "verify/s");
    for provider in Provider::ALL {
        let example = example(provider, NOW);
        let per_second = rate(|| {
            let mut context = Context {
                certificates: &example.certificates,
            };
            // verify takes the request (it hands it back stripped): the clone is part of the cost.
            let request = black_box(example.request.clone());
            let verified = verify(request, &example.source, &mut context);
            assert!(verified.is_ok(), "{provider}: {verified:?}");
        });
        println!("{:<12} {:>14.0}", provider.as_str(), per_second);
    }
    let body = example(Provider::Generic, NOW).request.body;
    let per_second = rate(|| {
        black_box(Sha256::digest(black_box(&body)));
    });
    println!(
        "{:<12} {:>14.0}   (SHA-256 of the same {}-byte body)",
        "sha256",
        per_second,
        body.len()
    );
}
