//! Legacy platform devices on the PIO bus.

pub mod cmos;
pub mod i8042;
pub mod serial;
pub mod shutdown;

pub use cmos::Cmos;
pub use i8042::I8042;
pub use serial::{EventFdTrigger, SerialDevice};
pub use shutdown::AcpiPmPorts;
