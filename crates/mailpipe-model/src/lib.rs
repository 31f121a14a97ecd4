//! The vocabulary shared by every stage: which providers exist, and the canonical email
//! event they all normalize to. Pure: no IO, no Kafka.
//!
//! Invariant: the set of providers is closed; adding one means adding a variant here, and
//! the compiler then points at every `match` that must handle it.

mod event;
mod provider;

pub use event::{BounceClass, EmailEvent, EventType, Geo, RejectReason};
pub use provider::{Provider, UnknownProvider};
