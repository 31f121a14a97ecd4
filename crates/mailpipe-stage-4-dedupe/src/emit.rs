//! Forwarding a batch's outputs in input order, and the no-op forwarder the bench compares
//! the stage with.
//!
//! The producing is the stages' shared [`Emitter`] (`mailpipe_stage::emit`): every record
//! of a batch is handed to the producer in input order, waiting while its queue is full
//! (librdkafka keeps that order per partition, and the idempotent producer keeps it across
//! its own retries); one task then waits for the acknowledgements and completes each
//! input's ack. A record whose delivery failed after all (message timeout) is retried by a
//! task of its own until it is acknowledged; only then may it land after later records. A
//! record that can never be produced dead-letters its input (`unproducible`).
//!
//! (In exactly-once mode the emitter hands the records to the consumer loop's transaction
//! instead, and "acknowledged" below reads "committed".)
//!
//! Once the batch's records are acknowledged (their inputs' acks completed first, so the
//! commit never waits for Redis), their ids are confirmed in one pipelined round trip
//! ([`Confirmations`]). A record that needed a retry is not confirmed: at worst it is
//! emitted again on a redelivery.

use mailpipe_kafka::{Delivery, Handler, HandlerError};
use mailpipe_stage::{Emission, Emitter, InputRef, Origin, OutRecord};
use rdkafka::message::Message;

use crate::seen::{Claim, Confirmations};

/// One input of a batch: its output (none for a duplicate: the ack is completed at once)
/// and, as the tag, the id claim to confirm once that output is acknowledged.
pub type Item = Emission<Claim>;

/// Produces the records in order and completes each ack once its record is acknowledged;
/// an input without a record (a duplicate) is completed at once. Then, with
/// `confirmations`, confirms the claims of the records acknowledged at the first attempt,
/// in one round trip. Returns once every record is enqueued; a full producer queue makes it
/// wait, which is the backpressure.
pub async fn emit_in_order(
    emitter: &Emitter,
    items: Vec<Item>,
    confirmations: Option<&Confirmations>,
) {
    let acknowledged = emitter.emit(items).await;
    if let Some(mut confirmations) = confirmations.cloned() {
        tokio::spawn(async move {
            if let Ok(claims) = acknowledged.await {
                confirmations.confirm(&claims).await;
            }
        });
    }
}

/// The bench's baseline: forwards every input unchanged to `topic` through the same
/// consumer loop and the same in-order producing, with no decoding and no Redis.
pub struct ForwardAll {
    pub emitter: Emitter,
    pub topic: String,
}

impl Handler for ForwardAll {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        let items = batch
            .into_iter()
            .map(|d| {
                let record = OutRecord {
                    topic: self.topic.clone(),
                    key: d.message.key().map(<[u8]>::to_vec),
                    payload: d.message.payload().unwrap_or_default().to_vec(),
                };
                Item {
                    records: vec![record],
                    ack: d.ack,
                    tag: None,
                    input: InputRef::new(&d.message, Origin::default()),
                }
            })
            .collect();
        emit_in_order(&self.emitter, items, None).await;
        Ok(())
    }
}
