//! Arbitrary or mutated-from-valid ses requests through `verify`: must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: mailpipe_verify_fuzz::Input| {
    mailpipe_verify_fuzz::run(mailpipe_verify_core::Provider::Ses, input);
});
