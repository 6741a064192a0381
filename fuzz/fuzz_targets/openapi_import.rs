#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| apig_fuzz::openapi_import(data));
