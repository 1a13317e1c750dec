//! libFuzzer entry point of the `virtqueue` target (see `fuzz_targets::virtqueue`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::virtqueue::run(data));
