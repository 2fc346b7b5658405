#![no_main]
//! See `hpki_fuzz::ocsp_get_path`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::ocsp_get_path(data));
