//! Verification for a replay of `mail.raw` (`mailpipe replay`): the stage's own source
//! lookup and verifier, judging each request as of its receipt (`received_at`), with SNS
//! certificates fetched when needed. Unlike the stage it acts on nothing: no Mailgun token
//! is recorded as used (the original pass did; the replayed copy is our own durable
//! record), no SNS subscription is confirmed, no record is written.

use mailpipe_avro::records::{RawRecord, VerifiedKind};
use mailpipe_settings::Settings;
use mailpipe_verify_core::Rejected;

use crate::records::{self, Outcome};
use crate::{Checked, Fetch, Sources, Verifier};

/// What replaying one raw request's verification found.
#[derive(Debug)]
pub enum Reverified {
    /// The request verifies and carries ESP events: the verified record (credentials
    /// removed) to normalize.
    Events(Box<mailpipe_avro::records::VerifiedRecord>),
    /// An SNS protocol message: no events.
    Control,
    /// Refused, with the closed reason (e.g. `bad_signature`).
    Rejected(&'static str),
}

/// Verifies raw requests for a replay.
pub struct Reverifier {
    sources: Sources,
    verifier: Verifier,
}

impl Reverifier {
    pub fn new(settings: &Settings) -> anyhow::Result<Reverifier> {
        Ok(Reverifier {
            sources: Sources::new(settings),
            verifier: Verifier::new(settings)?,
        })
    }

    /// `raw` verified as the stage would have at its receipt.
    pub async fn verify(&mut self, raw: RawRecord) -> Reverified {
        let (request, envelope) = records::split(raw);
        let Some((_, source)) = self.sources.find(&envelope) else {
            return Reverified::Rejected("unknown_source");
        };
        match self.verifier.verify(request, source, Fetch::Now).await {
            Checked::Done(Ok(verified)) => {
                if verified.control().is_some() {
                    return Reverified::Control;
                }
                let record = records::verified_record(
                    verified,
                    envelope,
                    &Outcome::Events,
                    mailpipe_stage::now_ms(),
                );
                debug_assert_eq!(record.kind, VerifiedKind::Events);
                Reverified::Events(Box::new(record))
            }
            Checked::Done(Err(Rejected { rejection, .. })) => {
                Reverified::Rejected(rejection.reason.as_str())
            }
            // Fetch::Now never defers.
            Checked::Deferred => Reverified::Rejected("certificate_unavailable"),
        }
    }
}
