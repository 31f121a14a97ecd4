//! Bytes fetched from a SigningCertURL through the certificate parser: must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(certificate) = mailpipe_verify_core::SigningCertificate::from_pem(data) {
        let _ = certificate.valid_at(1_700_000_000);
    }
});
