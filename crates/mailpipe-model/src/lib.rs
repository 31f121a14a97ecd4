//! The vocabulary shared by every stage: which providers exist, the facts about each that
//! several crates read ([`ProviderSpec`]), the canonical email event they all normalize
//! to, and the form-body reader two pure crates share. Pure: no IO, no Kafka.
//!
//! Invariant: the set of providers is closed; adding one means adding a line to the list
//! in `provider.rs` (and its spec), and the compiler then points at every `match` that
//! must handle it.

mod event;
pub mod form;
pub mod privacy;
mod provider;
mod providers;
mod spec;

pub use event::{
    BounceClass, DeviceClass, EmailEvent, EventType, Geo, RejectReason, EVENT_FIELD_NAMES,
};
pub use provider::{Provider, UnknownProvider};
pub use spec::{ProviderSpec, SecretKind, SourceOption};
