//! libFuzzer entry point of the `bar0` target (see `fuzz_targets::bar0`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::bar0::run(data));
