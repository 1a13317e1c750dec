//! The PCI root bus: type-1 configuration access, BAR routing, and the API devices use to join.
//!
//! # Adding a PCI function (the API later devices build on)
//!
//! 1. Describe the function's identity with [`PciHeader`] and create its [`PciConfig`].
//! 2. Declare memory BARs with [`PciConfig::add_bar`] ([`BarSpec`]: index, power-of-two size,
//!    32- or 64-bit, prefetchable). The config space then implements BAR sizing (write all-ones,
//!    read back the size mask) by itself.
//! 3. Implement [`PciFunction`] for the device: hand out the config space, and serve
//!    [`PciFunction::bar_read`] / [`PciFunction::bar_write`], which receive the BAR index and
//!    the offset inside that BAR. Override `read_config` / `write_config` only for
//!    device-specific registers (capabilities beyond the header).
//! 4. Call [`PciBus::add_function`] before the vCPUs start. Like firmware, the bus assigns each
//!    BAR an address from the 32-bit or 64-bit PCI window and enables memory decoding. Whenever
//!    the guest rewrites a BAR or the command register, the bus moves the BAR's route on its
//!    MMIO bus to the address the guest programmed ([`PciMmioWindow`] forwards guest MMIO in
//!    the windows to the routed function).
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use vmm::pci::{BarKind, BarSpec, PciConfig, PciFunction, PciHeader};
//!
//! struct Scratch { config: PciConfig, reg: u32 }
//! impl PciFunction for Scratch {
//!     fn config(&self) -> &PciConfig { &self.config }
//!     fn config_mut(&mut self) -> &mut PciConfig { &mut self.config }
//!     fn bar_read(&mut self, _bar: u8, _offset: u64, data: &mut [u8]) {
//!         let bytes = self.reg.to_le_bytes();
//!         let n = data.len().min(4);
//!         data[..n].copy_from_slice(&bytes[..n]);
//!     }
//!     fn bar_write(&mut self, _bar: u8, _offset: u64, data: &[u8]) {
//!         let mut bytes = [0u8; 4];
//!         let n = data.len().min(4);
//!         bytes[..n].copy_from_slice(&data[..n]);
//!         self.reg = u32::from_le_bytes(bytes);
//!     }
//! }
//!
//! let mut config = PciConfig::new(&PciHeader {
//!     vendor_id: 0x1234, device_id: 0x5678, class_code: 0x03, subclass: 0x02,
//!     ..Default::default()
//! });
//! config.add_bar(BarSpec { index: 0, size: 0x1000, kind: BarKind::Memory32, prefetchable: false }).unwrap();
//! let bus = vmm::pci::PciBus::new(0xc000_0000..0xfec0_0000, 0x1_0000_0000..0x2_0000_0000);
//! let slot = bus.add_function(Arc::new(Mutex::new(Scratch { config, reg: 0 }))).unwrap();
//! assert_eq!(slot, 0);
//! ```

mod bus;
mod host_bridge;

pub use bus::{PciBus, PciMmioWindow, CONFIG_ADDRESS_PORT, CONFIG_PORTS_LEN};
pub use host_bridge::HostBridge;
pub use pci::{BarKind, BarSpec, PciConfig, PciError, PciHeader};

/// A PCI function on bus 0. Implementations hold their [`PciConfig`] and serve BAR accesses.
///
/// Called with the function's mutex held, from vCPU threads. Guest input is hostile:
/// `offset` is inside the BAR but `data.len()` is whatever the guest used (1, 2, 4 or 8).
pub trait PciFunction: Send {
    /// The function's configuration space.
    fn config(&self) -> &PciConfig;
    /// The function's configuration space, mutable.
    fn config_mut(&mut self) -> &mut PciConfig;
    /// Reads config dword `reg` (0..64). Override for device-specific registers.
    fn read_config(&self, reg: usize) -> u32 {
        self.config().read_dword(reg)
    }
    /// Writes `data` at byte `offset` (0..4) of config dword `reg`. Override for
    /// device-specific registers; the default applies the header's writable masks.
    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config_mut().write(reg, offset, data);
    }
    /// A guest read of `data.len()` bytes at `offset` in BAR `bar`.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        let _ = (bar, offset);
        data.fill(0xff);
    }
    /// A guest write of `data` at `offset` in BAR `bar`.
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        let _ = (bar, offset, data);
    }
}
