#![no_main]
//! See `hpki_fuzz::csr_reader`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| hpki_fuzz::csr_reader(data));
