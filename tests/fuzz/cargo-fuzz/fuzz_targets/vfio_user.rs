//! libFuzzer entry point of the `vfio_user` target (see `fuzz_targets::vfio_user`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fuzz_targets::vfio_user::run(data));
