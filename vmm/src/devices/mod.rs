//! Platform devices on the PIO bus, and the vGPU on the PCI bus ([`vgpu`]).

pub mod cmos;
pub mod i8042;
pub mod serial;
pub mod shutdown;
pub mod vgpu;

pub use cmos::Cmos;
pub use i8042::I8042;
pub use serial::{EventFdTrigger, SerialDevice};
pub use shutdown::AcpiPmPorts;
