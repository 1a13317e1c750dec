//! The vGPU device model that a VMM attaches to a guest.
//!
//! A vGPU is one PCI function ([`pci`]) with two BARs:
//! * BAR0, trapped: the register file ([`registers`]: identity, interrupts, errors, counters and
//!   the usermode doorbell at 0x90) and the virtio-pci modern structures ([`transport`]) of the
//!   escape queue;
//! * BAR2, host memory: the host-visible window ([`window`]) where the guest keeps its virtqueue,
//!   escape arguments and parameter buffers.
//!
//! The escape queue ([`escape_queue`]) carries the guest's NVIDIA driver calls to the RM core
//! through the [`EscapeService`] trait ([`rm_service`] implements it over the `rm` crate).
//! [`device::VgpuDevice`] ties the parts together and is all a VMM needs; the guest-visible
//! protocol is in [`protocol`] and `PROTOCOL.md`.

pub mod device;
pub mod escape_queue;
pub mod pci;
pub mod protocol;
pub mod registers;
pub mod rm_service;
pub mod service;
pub mod stats;
pub mod transport;
pub mod window;

pub use device::{DeviceError, InterruptLine, VgpuConfig, VgpuDevice};
pub use pci::{BarBacking, BarDecl, Capability, PciIdentity};
pub use rm_service::RmService;
pub use service::{DoorbellError, EscapeService, FileError, FileId, FileNode, Gfid};
pub use stats::{Counter, Stats, StatsSnapshot};
pub use window::{HostWindow, WindowFault};
