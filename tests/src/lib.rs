//! Integration tests of mailpipe against the real local stack live in `tests/tests/it/` (one
//! test binary, `it`, one module per file); this library is empty. Run them with `make
//! test` (which starts the stack), or with `cargo test -p mailpipe-tests` while `make up`
//! is running; one file's tests with `cargo test -p mailpipe-tests --test it -- <file>::`.
