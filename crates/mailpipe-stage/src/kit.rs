//! The stage kit: what a consumer stage is made of besides its own logic. [`StageKit`]
//! holds the codec, the emitter (producer or transaction staging), the dead letters and
//! the topic names; [`run`] is the one wiring of a stage (kit, handler, consumer loop with
//! its exactly-once transactions); [`MessageHandler`] + [`PerMessage`] are the one
//! per-message frame: decode the input, hand it to the stage, dead-letter what can never be
//! processed, emit the outputs in input order. A new stage is a handler, its schema (the
//! table in `mailpipe_kafka::Topic::value_schema`) and its config.
//!
//! Invariant: every input handed to the frame yields its outputs, a dead letter, or waits
//! (deferred, its ack held) — never nothing; a transient or fatal error stops the stage
//! (the input is processed again after the restart), it never skips the input.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use mailpipe_avro::event_datum::EventDecoder;
use mailpipe_avro::{schema_id, AvroCodec, RegisteredSchema, TopicSchema};
use mailpipe_kafka::{Delivery, Handler, HandlerError, Topic, TopicNames};
use mailpipe_model::EmailEvent;
use mailpipe_settings::Settings;
use rdkafka::message::{Message, OwnedMessage};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{decode_retrying, DeadLetters, InputRef, Origin};
use crate::emit::{Emission, Emitter};
use crate::error::StageError;
use crate::{OutRecord, Stage};

/// What every stage works with, set up once at start-up.
#[derive(Clone)]
pub struct StageKit {
    stage: Stage,
    settings: Settings,
    codec: Arc<AvroCodec>,
    topics: TopicNames,
    dead_letters: DeadLetters,
    emitter: Emitter,
    events: Arc<EventReader>,
}

/// Reads email event records (`mail.events`, `mail.events.unique`) field by field when
/// their writer schema is the one this build ships — the usual case, several times faster
/// than the registry converter and serde, which build an Avro value tree first (see
/// `mailpipe_avro::event_datum`) — and the generic way otherwise (an older or newer writer
/// schema, resolved against ours).
#[derive(Debug)]
pub struct EventReader {
    decoder: EventDecoder,
    /// Writer schema id → whether it is ours (field by field) or not (generic).
    direct: Mutex<HashMap<u32, bool>>,
}

impl EventReader {
    pub fn new() -> Result<EventReader, mailpipe_avro::AvroError> {
        Ok(EventReader {
            decoder: EventDecoder::new()?,
            direct: Mutex::new(HashMap::new()),
        })
    }

    /// One event, or why the record can never be decoded (a permanent
    /// [`crate::DeadLetterReason::Undecodable`]); retries while the registry is unreachable,
    /// like [`decode_retrying`].
    pub async fn read(&self, codec: &AvroCodec, payload: &[u8]) -> Result<EmailEvent, StageError> {
        if let Some(id) = schema_id(payload) {
            if self.is_direct(codec, id).await {
                return self.decoder.decode(&payload[5..]).map_err(|e| {
                    StageError::permanent(crate::DeadLetterReason::Undecodable, e.to_string())
                });
            }
        }
        decode_retrying(codec, payload).await
    }

    async fn is_direct(&self, codec: &AvroCodec, id: u32) -> bool {
        let known = self.direct.lock().ok().and_then(|d| d.get(&id).copied());
        if let Some(direct) = known {
            return direct;
        }
        let direct = match codec.writer_schema(id).await {
            Ok(writer) => self.decoder.reads(&writer),
            // Unreachable registry: the generic way retries; ask again next time.
            Err(e) if e.is_retriable() => return false,
            // An id the registry does not have, or a schema that does not parse: the
            // generic way reports it (the record is dead-lettered).
            Err(_) => false,
        };
        if let Ok(mut known) = self.direct.lock() {
            known.insert(id, direct);
        }
        direct
    }
}

/// An output topic with its registered schema.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    pub schema: RegisteredSchema,
}

impl Output {
    /// A record of this topic: `value` encoded with the topic's schema.
    pub fn record<T: Serialize>(
        &self,
        key: Option<Vec<u8>>,
        value: &T,
        size_hint: usize,
    ) -> Result<OutRecord, StageError> {
        let payload = self
            .schema
            .encode(value, size_hint)
            .map_err(|e| StageError::fatal(format!("encoding a record for {}: {e}", self.topic)))?;
        Ok(OutRecord {
            topic: self.topic.clone(),
            key,
            payload,
        })
    }
}

impl StageKit {
    /// Connects the codec to the registry, registers the dead-letter schema and creates the
    /// emitter (a producer at least once, transaction staging exactly once).
    pub async fn new(stage: Stage, settings: &Settings) -> anyhow::Result<StageKit> {
        let codec = AvroCodec::new(&settings.schema_registry.url)?;
        let dead_letters = DeadLetters::new(stage, settings, &codec).await?;
        let emitter = crate::emitter(stage, settings, dead_letters.clone())?;
        let events = EventReader::new()?;
        Ok(StageKit {
            stage,
            settings: settings.clone(),
            codec: Arc::new(codec),
            topics: TopicNames::new(&settings.kafka.topic_prefix),
            dead_letters,
            emitter,
            events: Arc::new(events),
        })
    }

    pub fn stage(&self) -> Stage {
        self.stage
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn codec(&self) -> &Arc<AvroCodec> {
        &self.codec
    }

    pub fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }

    /// Dead-letters `message` at once, for a stage that reads its inputs itself (not
    /// through [`PerMessage`]): its dead letter is emitted, and `ack` completed with it.
    pub async fn dead_letter(
        &self,
        message: &OwnedMessage,
        ack: mailpipe_kafka::Ack,
        reason: crate::DeadLetterReason,
        detail: String,
    ) -> Result<(), StageError> {
        let origin = Origin::default();
        let record = self.dead_letters.record(message, reason, detail, origin)?;
        let emission: Emission = Emission {
            input: InputRef::new(message, origin),
            records: vec![record],
            ack,
            tag: None,
        };
        self.emitter.emit(vec![emission]).await;
        Ok(())
    }

    /// A topic's name, with the configured prefix.
    pub fn topic(&self, topic: Topic) -> String {
        self.topics.name(topic)
    }

    /// The topic the stage reads.
    pub fn input_topic(&self) -> String {
        self.topic(self.stage.input())
    }

    /// Registers `topic`'s schema (from the one table, `Topic::value_schema`) under its
    /// subject, once at start-up.
    pub async fn output(&self, topic: Topic) -> anyhow::Result<Output> {
        let name = self.topic(topic);
        let text = topic
            .value_schema()
            .ok_or_else(|| anyhow::anyhow!("{name} has no record schema yet"))?;
        let schema = self
            .codec
            .register(&TopicSchema::new(&name, text)?)
            .await
            .map_err(|e| anyhow::anyhow!("registering the schema of {name}: {e}"))?;
        Ok(Output {
            topic: name,
            schema,
        })
    }

    /// Decodes an input (retrying while the registry is away); a record that can never be
    /// decoded is [`crate::DeadLetterReason::Undecodable`].
    pub async fn decode<T: DeserializeOwned>(
        &self,
        message: &OwnedMessage,
    ) -> Result<T, StageError> {
        decode_retrying(&self.codec, message.payload().unwrap_or_default()).await
    }

    /// Decodes an email event input as [`StageKit::decode`] does (same event, same
    /// errors), field by field when its writer schema is ours.
    pub async fn decode_event(&self, message: &OwnedMessage) -> Result<EmailEvent, StageError> {
        let payload = message.payload().unwrap_or_default();
        self.events.read(&self.codec, payload).await
    }

    /// The kit's event reader, for a stage that decodes payloads itself.
    pub fn events(&self) -> &EventReader {
        &self.events
    }

    /// The per-message frame: decode `message`, let `handler` process it, and turn a
    /// permanent failure into the input's dead letter. Transient and fatal errors are
    /// returned (they stop the stage).
    pub async fn frame<H: MessageHandler>(
        &self,
        handler: &mut H,
        message: &OwnedMessage,
        pass: Pass,
    ) -> Result<Framed, StageError> {
        let (input, processed) = match self.decode::<H::Input>(message).await {
            Ok(decoded) => {
                let input = InputRef::new(message, H::origin(&decoded));
                let processed = handler.process(self, message, decoded, pass).await;
                (input, processed)
            }
            Err(e) => (InputRef::new(message, Origin::default()), Err(e)),
        };
        match processed {
            Ok(Processed::Records(records)) => Ok(Framed::Ready { records, input }),
            Ok(Processed::Deferred) => Ok(Framed::Deferred),
            Err(StageError::Permanent { reason, detail }) => {
                let letter = self
                    .dead_letters
                    .record(message, reason, detail, input.origin())?;
                Ok(Framed::Ready {
                    records: vec![letter],
                    input,
                })
            }
            Err(e @ (StageError::Transient(_) | StageError::Fatal(_))) => Err(e),
        }
    }
}

/// What the frame made of one input.
pub enum Framed {
    /// Its records (its outputs, or its dead letter), and what is kept of it should one of
    /// them never be producible.
    Ready {
        records: Vec<OutRecord>,
        input: InputRef,
    },
    /// The handler deferred it (see [`Processed::Deferred`]).
    Deferred,
}

/// What a handler made of one decoded input.
pub enum Processed {
    /// Its outputs (none: completed at once).
    Records(Vec<OutRecord>),
    /// It waits for something the handler fetches in the background: held aside (its ack
    /// too, so its partition's commit waits), processed again once
    /// [`MessageHandler::deferred_ready`] says so, and at shutdown with [`Pass::Final`].
    Deferred,
}

/// Which processing of an input this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// As it arrives, or again after being deferred: may defer.
    Normal,
    /// At shutdown: must not defer (whatever it waits for is fetched now).
    Final,
}

/// A stage that handles one input at a time through the frame.
pub trait MessageHandler: Send + Sized + 'static {
    /// The input record, decoded with the registry's writer schema.
    type Input: DeserializeOwned + Send;

    /// Whether each input's records are emitted as soon as it is processed, rather than
    /// the batch's at once (verify: a slow control action must not hold earlier outputs).
    const EMIT_EACH: bool = false;

    /// Registers the output schemas and sets up what the handler needs.
    fn new(kit: &StageKit) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// What an input tells of the request it came from (for dead letters).
    fn origin(input: &Self::Input) -> Origin<'_>;

    /// The outputs of one input; a [`StageError::Permanent`] dead-letters it.
    fn process(
        &mut self,
        kit: &StageKit,
        message: &OwnedMessage,
        input: Self::Input,
        pass: Pass,
    ) -> impl Future<Output = Result<Processed, StageError>> + Send;

    /// Whether deferred inputs may be processed again now (asked before each batch and
    /// when the loop is idle).
    fn deferred_ready(&mut self) -> bool {
        true
    }

    /// After each batch: start the background work deferred inputs wait for.
    fn after_batch(&mut self) {}

    /// At shutdown, before the deferred inputs are processed with [`Pass::Final`].
    fn before_finish(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The consumer-loop handler of a [`MessageHandler`] stage.
pub struct PerMessage<H> {
    kit: StageKit,
    handler: H,
    deferred: Vec<Delivery>,
}

impl<H: MessageHandler> PerMessage<H> {
    pub async fn new(kit: StageKit) -> anyhow::Result<PerMessage<H>> {
        let handler = H::new(&kit).await?;
        Ok(PerMessage {
            kit,
            handler,
            deferred: Vec::new(),
        })
    }

    /// Runs the frame over `batch` in order, emitting the outputs in input order.
    async fn run(&mut self, batch: Vec<Delivery>, pass: Pass) -> Result<(), StageError> {
        let mut emissions = Vec::with_capacity(batch.len());
        for delivery in batch {
            match self
                .kit
                .frame(&mut self.handler, &delivery.message, pass)
                .await?
            {
                Framed::Deferred if pass == Pass::Final => {
                    return Err(StageError::fatal(
                        "a message deferred although fetching was allowed",
                    ));
                }
                Framed::Deferred => self.deferred.push(delivery),
                Framed::Ready { records, input } => {
                    let emission: Emission = Emission {
                        input,
                        records,
                        ack: delivery.ack,
                        tag: None,
                    };
                    if H::EMIT_EACH {
                        self.kit.emitter.emit(vec![emission]).await;
                    } else {
                        emissions.push(emission);
                    }
                }
            }
        }
        if !emissions.is_empty() {
            self.kit.emitter.emit(emissions).await;
        }
        Ok(())
    }

    /// Processes the deferred inputs again once the handler is ready for them.
    async fn retry_deferred(&mut self) -> Result<(), StageError> {
        if !self.handler.deferred_ready() || self.deferred.is_empty() {
            return Ok(());
        }
        let deferred = std::mem::take(&mut self.deferred);
        self.run(deferred, Pass::Normal).await?;
        self.handler.after_batch();
        Ok(())
    }
}

impl<H: MessageHandler> Handler for PerMessage<H> {
    async fn handle(&mut self, batch: Vec<Delivery>) -> Result<(), HandlerError> {
        self.retry_deferred().await?;
        self.run(batch, Pass::Normal).await?;
        self.handler.after_batch();
        Ok(())
    }

    async fn idle(&mut self) -> Result<(), HandlerError> {
        Ok(self.retry_deferred().await?)
    }

    /// At shutdown the deferred inputs are completed too (the handler makes them ready
    /// first).
    async fn finish(&mut self) -> Result<(), HandlerError> {
        self.handler.before_finish().await;
        let deferred = std::mem::take(&mut self.deferred);
        Ok(self.run(deferred, Pass::Final).await?)
    }
}

/// A consumer-loop handler built from the kit.
pub trait StageHandler: Handler + Sized {
    fn build(kit: StageKit) -> impl Future<Output = anyhow::Result<Self>> + Send;
}

impl<H: MessageHandler> StageHandler for PerMessage<H> {
    async fn build(kit: StageKit) -> anyhow::Result<Self> {
        PerMessage::new(kit).await
    }
}

/// The one wiring of a consumer stage: the kit, the handler built on it, and the consumer
/// loop (transactional when the stage runs exactly once) until `shutdown`.
pub async fn run<H: StageHandler>(
    stage: Stage,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let kit = StageKit::new(stage, settings).await?;
    let handler = H::build(kit).await?;
    crate::run_consumer(stage, settings, handler, shutdown).await
}
