//! The userspace vGPU driver, in the manner of DPDK and SPDK: no guest kernel module.
//!
//! It finds the vGPU in sysfs ([`sysfs`]), maps BAR0 and BAR2 through `resourceN` ([`mmio`]),
//! keeps the escape virtqueue and every buffer in the host-visible window ([`window`],
//! [`queue`]), rings doorbells by MMIO or, while the device polls, through a mailbox in the
//! window ([`mailbox`]), notifies by MMIO and completes by polling or, as an option, by waiting for the
//! interrupt through `uio_pci_generic` ([`interrupt`], [`uio`]; [`device`]). The protocol is
//! `vgpu/PROTOCOL.md` ([`protocol`]). Without a VM, a host process attaches an instance
//! through its vfio-user socket instead ([`vfio_user`]).

pub mod device;
pub mod interrupt;
pub mod mailbox;
pub mod mmio;
pub mod queue;
pub mod sysfs;
pub mod uio;
pub mod vfio_user;
pub mod window;

/// The guest-visible protocol, shared with the device model (`vgpu` without its `device` feature).
pub use vgpu::protocol;

pub use device::{DeviceCounters, DeviceInfo, DriverError, Setup, VgpuDriver};
pub use interrupt::{Completion, InterruptSource};
pub use mmio::{ByteBar, MappedFile, MmioBar, RegisterBar};
pub use window::{SharedWindow, WindowAllocator};
