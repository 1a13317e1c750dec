//! libFuzzer entry point of the `tenant` target (see `fuzz_targets::tenant`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::tenant::run(data));
