#![no_main]
//! See `hpki_fuzz::serial_parsers`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::serial_parsers(data));
