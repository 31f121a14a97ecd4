//! The rules stage (issue 18): reads `mail.events.unique`, evaluates the rules of
//! `mailpipe-rules-core` and writes what they decide to `mail.actions` and
//! `mail.suppressions`. Built so far: the shared state in Redis ([`state`]); the stage's
//! consumer wiring comes with the stage kit.
//!
//! Invariant: every write to the shared state is idempotent under redelivery. Each one is
//! named by the event (or the action's idempotency key) that causes it, so a message
//! processed twice (a crash before its offset was committed, an aborted transaction)
//! leaves the state as if it had been processed once.

pub mod process;
pub mod records;
pub mod state;

pub use state::{Answer, ClaimAnswer, Op, RulesState, StateError};
