//! The host bridge at 00:00.0.

use super::{PciConfig, PciFunction, PciHeader};

/// Red Hat's vendor id, and the id of QEMU's generic PCIe host bridge, which Linux binds no
/// quirks to.
const VENDOR_REDHAT: u16 = 0x1b36;
const DEVICE_HOST_BRIDGE: u16 = 0x0008;

/// A host bridge (class 0x060000) with no BARs: what Linux's conf1 sanity check looks for.
#[derive(Debug)]
pub struct HostBridge {
    config: PciConfig,
}

impl HostBridge {
    /// A new host bridge.
    pub fn new() -> Self {
        HostBridge {
            config: PciConfig::new(&PciHeader {
                vendor_id: VENDOR_REDHAT,
                device_id: DEVICE_HOST_BRIDGE,
                class_code: 0x06,
                subclass: 0x00,
                prog_if: 0x00,
                revision: 0,
                subsystem_vendor_id: VENDOR_REDHAT,
                subsystem_id: 0x1100,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciFunction for HostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}
