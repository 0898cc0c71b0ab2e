#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ibex_fuzz::chat_request_json(data));
