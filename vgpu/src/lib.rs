//! The vGPU device model that a VMM attaches to a guest.
//!
//! It will hold the vGPU's PCI identity and BAR layout, the trapped BAR0 register file (interrupts
//! and the usermode doorbell), the escape virtqueue that carries a guest's RM calls, and the
//! host-visible memory window. It reaches the host RM core through a trait so the core can run
//! in the VMM process or in a host daemon. Nothing is implemented yet.
