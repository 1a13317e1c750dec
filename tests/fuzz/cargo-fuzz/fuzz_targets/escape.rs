//! libFuzzer entry point of the `escape` target (see `fuzz_targets::escape`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::escape::run(data));
