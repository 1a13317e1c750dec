//! The vGPU device model that a VMM attaches to a guest.
//!
//! A vGPU is one PCI function ([`pci`]) with two BARs:
//! * BAR0, trapped: the register file ([`registers`]: identity, interrupts, errors, counters and
//!   the usermode doorbell at 0x90) and the virtio-pci modern structures ([`transport`]) of the
//!   escape queue; while the device polls, doorbells may instead go through a mailbox in the
//!   window ([`doorbell_mailbox`]);
//! * BAR2, host memory: the host-visible window ([`window`]) where the guest keeps its virtqueue,
//!   escape arguments and parameter buffers.
//!
//! The escape queue ([`escape_queue`]) carries the guest's NVIDIA driver calls to the RM core
//! through the [`EscapeService`] trait (`vgpud` implements it over the RM core).
//! [`device::VgpuDevice`] ties the parts together and is all a device server needs; the
//! guest-visible protocol is in [`protocol`] and `PROTOCOL.md`.
//!
//! Everything but [`protocol`] is behind the default `device` feature: the guest driver depends
//! on this crate without it, so guest and device share one definition of the protocol.

#[cfg(feature = "device")]
pub mod device;
#[cfg(feature = "device")]
pub mod doorbell_mailbox;
#[cfg(feature = "device")]
pub mod escape_queue;
#[cfg(feature = "device")]
pub mod pci;
pub mod protocol;
#[cfg(feature = "device")]
pub mod registers;
#[cfg(feature = "device")]
pub mod service;
#[cfg(feature = "device")]
pub mod stats;
#[cfg(feature = "device")]
pub mod transport;
#[cfg(feature = "device")]
pub mod window;

#[cfg(feature = "device")]
pub use device::{DeviceError, InterruptLine, VgpuConfig, VgpuDevice};
#[cfg(feature = "device")]
pub use pci::{BarBacking, BarDecl, Capability};
#[cfg(feature = "device")]
pub use service::{DoorbellError, Errno, EscapeService, FdId, Gfid, IoctlOutcome, Node};
#[cfg(feature = "device")]
pub use stats::{Counter, Stats, StatsSnapshot};
#[cfg(feature = "device")]
pub use window::{HostWindow, WindowFault};
