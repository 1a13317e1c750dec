//! `vgpu-vmm`: boots one guest.
fn main() {}
