#![no_main]
//! See `hpki_fuzz::ocsp_request_der`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::ocsp_request_der(data));
