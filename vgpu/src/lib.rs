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
//! protocol is in [`protocol`] and `PROTOCOL.md`. [`profile`] holds the vGPU types and
//! [`sim_host`] the in-process RM core over the real-time sim GPU that a VMM attaches to.

pub mod device;
pub mod escape_queue;
pub mod pci;
pub mod profile;
pub mod protocol;
pub mod registers;
pub mod rm_service;
pub mod service;
pub mod sim_host;
pub mod stats;
pub mod transport;
pub mod window;

pub use device::{DeviceError, InterruptLine, VgpuConfig, VgpuDevice};
pub use pci::{BarBacking, BarDecl, Capability, PciIdentity};
pub use profile::{Profile, UnknownProfile};
pub use rm_service::RmService;
pub use service::{DoorbellError, EscapeService, FileError, FileId, FileNode, Gfid};
pub use sim_host::{AttachError, SimHost};
pub use stats::{Counter, Stats, StatsSnapshot};
pub use window::{HostWindow, WindowFault};
