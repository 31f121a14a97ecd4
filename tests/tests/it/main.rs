//! The integration tests against the real local stack, built as one test binary (`it`):
//! one link instead of one per file, and one process whose test threads share the work of
//! every file. Each file is a module, so a file's tests are selected by its name as a
//! filter:
//!
//! ```text
//! cargo test -p mailpipe-tests --test it                      # every non-ignored test
//! cargo test -p mailpipe-tests --test it -- dedupe_stage::    # one file's tests
//! cargo test -p mailpipe-tests --test it -- dedupe_kill:: --ignored --nocapture --test-threads=1
//! ```
//!
//! Isolation: every test works on topics, groups, Redis keys and ClickHouse databases of its
//! own (`unique_name`), stops only services of its own (`PrivateRedis`, the aggregate test's
//! private ClickHouse, `transaction_abort`'s broker) and starts stage binaries on free ports,
//! so tests of different files run side by side as those of one file always did. Nothing
//! here sets environment variables or installs a global metrics recorder. The `#[ignore]`d
//! kill tests, chaos and benches load the broker for minutes: their scripts run them one at
//! a time (`--test-threads=1`) with a filter, never next to the rest.

// The stages, in pipeline order.
mod verify_hardening;
mod verify_stage;

mod normalize_stage;

mod dedupe_stage;

mod aggregate_stage;

mod console_api;
mod insight;

mod replay;

mod erase;

mod suppressions_cli;

// Shared machinery: the consumer loop, stage outputs, exactly-once, topics, schemas, storage.
mod clickhouse_migrate;
mod consumer_loop;
mod fencing;
mod registry_contract;
mod stage_output;
mod topics;
mod transaction_abort;
mod zombie;

// The whole pipeline, every stage its own process.
mod end_to_end;

// Ignored: kill tests and chaos (scripts/chaos.sh), benches (scripts/bench-*.sh).
mod aggregate_kill;
mod chaos;
mod dedupe_kill;
mod normalize_kill;
mod rules_kill;
mod verify_kill;

mod aggregate_bench;
mod dedupe_bench;
mod pipeline_bench;
mod rules_bench;
mod stage_bench;
