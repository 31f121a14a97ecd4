//! Cross-provider properties: every provider verifies its own signed example, and random
//! corruption of any part of any provider's request never panics, never passes where the
//! part is signed, and never echoes a secret in the rejection. (The fuzz targets under
//! `fuzz/` explore the same inputs with coverage guidance; this runs on stable in
//! `cargo test`.)

use mailpipe_model::Provider;

use crate::testing::{example, Example, EXAMPLE_SECRETS};
use crate::{verify, Context, Reason};

const NOW: i64 = 1_700_000_000;

fn run(example: &Example, request: &crate::Request) -> Result<crate::Verified, crate::Rejection> {
    verify(
        request.clone(),
        &example.source,
        &mut Context {
            certificates: &example.certificates,
        },
    )
    .map_err(|rejected| rejected.rejection)
}

#[test]
fn every_provider_verifies_its_signed_example() {
    for provider in Provider::ALL {
        let example = example(provider, NOW);
        assert!(
            example.source.problems().is_empty(),
            "{provider}: {:?}",
            example.source.problems()
        );
        let verified =
            run(&example, &example.request).unwrap_or_else(|r| panic!("{provider}: {r}"));
        assert!(
            verified.key_index().is_some() || provider == Provider::Ses,
            "{provider}"
        );
    }
}

#[test]
fn every_provider_fails_closed_without_keys() {
    for provider in Provider::ALL {
        let example = example(provider, NOW);
        let empty = crate::SourceConfig::new(provider, &[], crate::SourceOptions::default());
        let err = verify(
            example.request.clone(),
            &empty,
            &mut Context {
                certificates: &example.certificates,
            },
        );
        assert_eq!(
            err.unwrap_err().rejection.reason,
            Reason::NoUsableKey,
            "{provider}"
        );
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Providers whose body bytes are all covered by the signature (Mailgun signs only fields
/// of the body; the shared-secret providers sign nothing).
fn body_is_signed(provider: Provider) -> bool {
    !matches!(
        provider,
        Provider::Mailgun
            | Provider::Postmark
            | Provider::Sparkpost
            | Provider::Brevo
            | Provider::Mailjet
    )
}

#[test]
fn random_corruption_never_panics_never_passes_signed_parts_never_leaks() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for provider in Provider::ALL {
        let example = example(provider, NOW);
        for round in 0..300 {
            let mut request = example.request.clone();
            let mut must_fail = false;
            match rng.below(5) {
                0 if !request.body.is_empty() => {
                    let at = rng.below(request.body.len());
                    request.body[at] ^= 1 << rng.below(8);
                    must_fail = body_is_signed(provider);
                }
                1 => request.body.truncate(rng.below(request.body.len())),
                2 if !request.headers.is_empty() => {
                    let h = rng.below(request.headers.len());
                    let value = &mut request.headers[h].1;
                    if !value.is_empty() {
                        let at = rng.below(value.len());
                        value[at] = (rng.next() & 0xff) as u8;
                    }
                }
                3 if !request.headers.is_empty() => {
                    let h = rng.below(request.headers.len());
                    let keep = rng.below(request.headers[h].1.len());
                    request.headers[h].1.truncate(keep);
                    // Every example header is decisive, except Mailgun's content-type and
                    // Postal's legacy SHA-1 signature (the SHA-256 one decides).
                    let name = request.headers[h].0.as_str();
                    must_fail = !matches!(name, "content-type" | "x-postal-signature");
                }
                _ => {
                    request.body = (0..rng.below(300))
                        .map(|_| (rng.next() & 0xff) as u8)
                        .collect()
                }
            }
            match run(&example, &request) {
                Ok(_) => assert!(
                    !must_fail,
                    "{provider} round {round}: corrupted request verified"
                ),
                Err(rejection) => {
                    for secret in EXAMPLE_SECRETS {
                        assert!(
                            !rejection.detail.contains(secret),
                            "{provider}: {rejection}"
                        );
                    }
                }
            }
        }
    }
}
