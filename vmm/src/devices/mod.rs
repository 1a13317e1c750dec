//! Platform devices on the PIO bus, and PCI functions served by vfio-user servers
//! ([`vfio_user`], the vGPUs of `vgpud`).

pub mod cmos;
pub mod i8042;
pub mod intx;
pub mod memory_slot;
pub mod serial;
pub mod shutdown;
pub mod vfio_user;

pub use cmos::Cmos;
pub use i8042::I8042;
pub use serial::{EventFdTrigger, SerialDevice};
pub use shutdown::AcpiPmPorts;
