//! PCI configuration space (type-0 header, BARs with the standard sizing behaviour, capability
//! list) and the errors of building one. One type for a function's identity ([`PciHeader`]),
//! used by the VMM's PCI bus, the vGPU device model and `vgpud`'s vfio-user servers alike.

mod config;

pub use config::{reg, BarKind, BarSpec, PciConfig, PciHeader};

/// Errors from building PCI functions and the bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// BAR index out of range or taken (a 64-bit BAR uses two slots).
    #[error("BAR {0} is out of range or already used")]
    BarSlot(u8),
    /// BAR size not a power of two of at least 16 bytes (4 KiB recommended).
    #[error("BAR size {0:#x} is not a power of two >= 16")]
    BarSize(u64),
    /// A 32-bit BAR of 4 GiB or more.
    #[error("BAR size {0:#x} does not fit a 32-bit BAR")]
    BarTooBigFor32Bit(u64),
    /// No room left in the capability area.
    #[error("no room for a capability of {0} bytes")]
    CapabilitySpace(usize),
    /// All 32 device slots on bus 0 are used.
    #[error("PCI bus 0 is full")]
    BusFull,
    /// The PCI memory window cannot hold a BAR.
    #[error("PCI memory window exhausted for a BAR of {0:#x} bytes")]
    WindowExhausted(u64),
}
