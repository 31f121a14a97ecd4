//! Kafka plumbing shared by every stage: client settings with our producer defaults, topic
//! names, topic creation, the one consumer loop ([`consumer::run`]) and its exactly-once
//! mode ([`transaction`]).
//!
//! Invariant: an offset is committed only when it and every offset before it on its
//! partition were completed by the stage (the contiguous completed prefix); memory is
//! bounded by pausing partitions, never by dropping messages.

pub mod client;
pub mod consumer;
pub mod health;
pub mod offsets;
pub mod producer;
pub mod topics;
pub mod transaction;

pub use client::{
    consumer_config, consumer_config_for_records_up_to, producer_config,
    producer_config_for_records_up_to,
};
pub use consumer::{Ack, Delivery, Handler, HandlerError, LoopConfig};
pub use health::{LoopHealth, Readiness};
pub use producer::{create_producer, send_and_wait};
pub use topics::{correction_revision, create_topics, Topic, TopicNames, CORRECTION_HEADER};
pub use transaction::{OutRecord, Staged, TransactionConfig, Unproducible};

/// Errors of the Kafka plumbing.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("creating topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("no acknowledgement from kafka within {0:?}")]
    ProduceTimeout(std::time::Duration),
    #[error(
        "message {topic}/{partition}@{offset} was dropped by the handler without being completed"
    )]
    Abandoned {
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error("stage handler failed: {0}")]
    Handler(HandlerError),
    #[error("stage handler task panicked or was cancelled: {0}")]
    HandlerTask(String),
    #[error(
        "transactional producer fenced or failed fatally (another instance with this \
         transactional id started, or the broker aborted a transaction left open too long): {0}"
    )]
    Fenced(String),
    #[error("a dead letter for topic {topic} can never be produced either: {reason}")]
    Unproducible { topic: String, reason: String },
    #[error("a handler completed a message with records to produce, but the loop does not run transactions")]
    StagedWithoutTransactions,
}
