//! Platform devices on the PIO bus, PCI functions served by vfio-user servers ([`vfio_user`],
//! the vGPUs of `vgpud`), and this VMM's own virtio devices on the virtio-pci transport
//! ([`virtio_pci`]): the block device ([`virtio_blk`]) over raw images ([`disk_image`]).

pub mod cmos;
pub mod disk_image;
pub mod i8042;
pub mod intx;
pub mod memory_slot;
pub mod serial;
pub mod shutdown;
pub mod vfio_user;
pub mod virtio_blk;
pub mod virtio_pci;

pub use cmos::Cmos;
pub use i8042::I8042;
pub use serial::{EventFdTrigger, SerialDevice};
pub use shutdown::AcpiPmPorts;
