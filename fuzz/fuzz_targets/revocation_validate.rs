#![no_main]
//! See `hpki_fuzz::revocation_validate`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::revocation_validate(data));
