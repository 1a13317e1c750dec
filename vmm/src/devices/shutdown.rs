//! The hardware-reduced ACPI power-management registers: sleep control, sleep status and
//! reset, at I/O ports [`PM_PORT`]..+3. The FADT points at them; the DSDT's `_S5_` gives the
//! sleep type [`SLP_TYP_S5`].

use std::sync::Arc;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

use crate::exit::{ExitLatch, GuestExit};

/// First port of the block.
pub const PM_PORT: u16 = 0x600;
/// Ports in the block.
pub const PM_PORTS_LEN: u16 = 3;
/// Offset of the sleep control register.
pub const SLEEP_CONTROL_OFFSET: u16 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS_OFFSET: u16 = 1;
/// Offset of the reset register.
pub const RESET_OFFSET: u16 = 2;
/// Value the guest writes to the reset register.
pub const RESET_VALUE: u8 = 0x1;
/// The S5 sleep type, as `_S5_` declares it.
pub const SLP_TYP_S5: u8 = 5;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

/// The three registers.
#[derive(Debug)]
pub struct AcpiPmPorts {
    exit: Arc<ExitLatch>,
}

impl AcpiPmPorts {
    /// Registers that report power-off and reset to `exit`.
    pub fn new(exit: Arc<ExitLatch>) -> Self {
        AcpiPmPorts { exit }
    }
}

impl DevicePio for AcpiPmPorts {
    fn pio_read(&self, _base: PioAddress, _offset: PioAddressOffset, data: &mut [u8]) {
        // Sleep status: never woken, nothing pending. Control and reset read as 0.
        data.fill(0);
    }

    fn pio_write(&self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match offset {
            SLEEP_CONTROL_OFFSET => {
                let slp_typ = (value >> SLP_TYP_SHIFT) & SLP_TYP_MASK;
                if value & SLP_EN != 0 {
                    if slp_typ == SLP_TYP_S5 {
                        self.exit.report(GuestExit::PowerOff);
                    } else {
                        tracing::warn!("guest asked for unsupported sleep type {slp_typ}");
                    }
                }
            }
            RESET_OFFSET if value == RESET_VALUE => {
                self.exit.report(GuestExit::Reboot {
                    what: "ACPI reset register",
                });
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_other_writes_do_not() {
        let latch = Arc::new(ExitLatch::new().unwrap());
        let pm = AcpiPmPorts::new(latch.clone());
        pm.pio_write(PioAddress(PM_PORT), 0, &[SLP_TYP_S5 << 2]);
        pm.pio_write(PioAddress(PM_PORT), 0, &[SLP_EN | (3 << 2)]);
        pm.pio_write(PioAddress(PM_PORT), 2, &[0x7]);
        assert!(!latch.should_stop());
        pm.pio_write(PioAddress(PM_PORT), 0, &[SLP_EN | (SLP_TYP_S5 << 2)]);
        assert_eq!(latch.reason(), Some(GuestExit::PowerOff));
    }

    #[test]
    fn reset_register_reboots() {
        let latch = Arc::new(ExitLatch::new().unwrap());
        let pm = AcpiPmPorts::new(latch.clone());
        pm.pio_write(PioAddress(PM_PORT), RESET_OFFSET, &[RESET_VALUE]);
        assert_eq!(
            latch.reason(),
            Some(GuestExit::Reboot {
                what: "ACPI reset register"
            })
        );
    }
}
