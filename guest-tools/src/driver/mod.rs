//! The userspace vGPU driver, in the manner of DPDK and SPDK: no guest kernel module.
//!
//! It finds the vGPU in sysfs ([`sysfs`]), maps BAR0 and BAR2 through `resourceN` ([`mmio`]),
//! keeps the escape virtqueue and every buffer in the host-visible window ([`window`],
//! [`queue`]), notifies by MMIO and completes by polling ([`device`]). The protocol is
//! `vgpu/PROTOCOL.md` ([`protocol`]).

pub mod device;
pub mod mmio;
pub mod protocol;
pub mod queue;
pub mod sysfs;
pub mod window;

pub use device::{DeviceCounters, DeviceInfo, DriverError, Setup, VgpuDriver};
pub use mmio::{MappedFile, MmioBar, RegisterBar};
pub use window::{SharedWindow, WindowAllocator};
