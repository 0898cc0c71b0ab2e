#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ibex_fuzz::extraction_json(data));
