//! Arbitrary sparkpost bodies through `parse`: an error is fine, a panic is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mailpipe_normalize_fuzz::run(mailpipe_normalize_core::Provider::Sparkpost, data);
});
