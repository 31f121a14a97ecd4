//! Integration tests of mailpipe against the real local stack live in `tests/`; this
//! library is empty. Run them with `make test` (which starts the stack), or with
//! `cargo test -p mailpipe-tests` while `make up` is running.
