//! Reading `mail.events.unique` records: field by field when the record's writer schema is
//! the email event schema this build ships (the usual case, and 5–10× faster than the
//! generic way; see `mailpipe_avro::event_datum`), through the registry converter and
//! serde otherwise (an older or newer writer schema, resolved against ours).

use std::collections::HashMap;

use mailpipe_avro::event_datum::EventDecoder;
use mailpipe_avro::{schema_id, AvroCodec, AvroError};
use mailpipe_model::EmailEvent;
use mailpipe_stage::{decode_retrying, DeadLetterReason, StageError};

/// Decodes events, remembering per writer schema id which way applies.
#[derive(Debug)]
pub struct EventReader {
    decoder: EventDecoder,
    /// Schema id → whether its schema is ours (field by field) or not (generic).
    direct: HashMap<u32, bool>,
}

impl EventReader {
    pub fn new() -> Result<EventReader, AvroError> {
        Ok(EventReader {
            decoder: EventDecoder::new()?,
            direct: HashMap::new(),
        })
    }

    /// One event, or why the record can never be decoded (a permanent
    /// [`DeadLetterReason::Undecodable`]; retries while the registry is unreachable, like
    /// [`decode_retrying`]).
    pub async fn read(
        &mut self,
        codec: &AvroCodec,
        payload: &[u8],
    ) -> Result<EmailEvent, StageError> {
        if let Some(id) = schema_id(payload) {
            if self.is_direct(codec, id).await {
                return self.decoder.decode(&payload[5..]).map_err(|e| {
                    StageError::permanent(DeadLetterReason::Undecodable, e.to_string())
                });
            }
        }
        decode_retrying(codec, payload).await
    }

    async fn is_direct(&mut self, codec: &AvroCodec, id: u32) -> bool {
        if let Some(direct) = self.direct.get(&id) {
            return *direct;
        }
        match codec.writer_schema(id).await {
            Ok(writer) => {
                let direct = self.decoder.reads(&writer);
                self.direct.insert(id, direct);
                direct
            }
            // Unreachable registry: the generic way retries; ask again next time.
            Err(e) if e.is_retriable() => false,
            // An id the registry does not have, or a schema that does not parse: the
            // generic way reports it (the record is dead-lettered).
            Err(_) => {
                self.direct.insert(id, false);
                false
            }
        }
    }
}
