#![no_main]
//! See `hpki_fuzz::issuance_validate`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::issuance_validate(data));
