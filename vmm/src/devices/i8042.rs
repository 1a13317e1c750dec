//! A PS/2 controller (i8042) with no keyboard or mouse attached.
//!
//! It emulates what Linux's i8042 driver and `reboot=k` touch: the status register, the
//! controller command byte (CTR: commands 0x20/0x60), the self tests (0xAA, 0xAB, 0xA9), the
//! port enable/disable commands, the output port (0xD0/0xD1), and the CPU reset pulse (0xFE,
//! or clearing output-port bit 0), which ends the VM as a reboot. vm-superio's i8042 lacks the
//! CTR, which makes the guest's probe stall for about a second.
//! Bytes for the (absent) keyboard are dropped; the controller raises no interrupts.

use std::sync::Arc;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::MutDevicePio;

use crate::exit::{ExitLatch, GuestExit};

/// Data port.
pub const I8042_DATA_PORT: u16 = 0x60;
/// Command/status port. Register the device on both ports, one port each (0x61 is the
/// speaker port that KVM's in-kernel PIT handles).
pub const I8042_COMMAND_PORT: u16 = 0x64;

const STATUS_OUTPUT_FULL: u8 = 1 << 0;
const STATUS_SYSTEM_FLAG: u8 = 1 << 2;
const STATUS_LAST_WAS_COMMAND: u8 = 1 << 3;

const CMD_READ_CTR: u8 = 0x20;
const CMD_WRITE_CTR: u8 = 0x60;
const CMD_DISABLE_AUX: u8 = 0xa7;
const CMD_ENABLE_AUX: u8 = 0xa8;
const CMD_TEST_AUX: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_TEST_KBD: u8 = 0xab;
const CMD_DISABLE_KBD: u8 = 0xad;
const CMD_ENABLE_KBD: u8 = 0xae;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_PULSE_RESET: u8 = 0xfe;

const CTR_KBD_DISABLED: u8 = 1 << 4;
const CTR_AUX_DISABLED: u8 = 1 << 5;
const SELF_TEST_OK: u8 = 0x55;
const PORT_TEST_OK: u8 = 0x00;
/// Output port: bit 0 low holds the CPU in reset; bit 1 is the A20 gate.
const OUTPUT_PORT_RESET_RELEASED: u8 = 1 << 0;
const OUTPUT_PORT_DEFAULT: u8 = 0x03;

/// The controller.
#[derive(Debug)]
pub struct I8042 {
    ctr: u8,
    output_port: u8,
    output: Option<u8>,
    last_was_command: bool,
    /// The command whose data byte is expected on port 0x60.
    pending: Option<u8>,
    exit: Arc<ExitLatch>,
}

impl I8042 {
    /// A controller that reports a CPU reset to `exit`.
    pub fn new(exit: Arc<ExitLatch>) -> Self {
        I8042 {
            ctr: CTR_KBD_DISABLED | CTR_AUX_DISABLED,
            output_port: OUTPUT_PORT_DEFAULT,
            output: None,
            last_was_command: false,
            pending: None,
            exit,
        }
    }

    fn status(&self) -> u8 {
        let mut s = STATUS_SYSTEM_FLAG;
        if self.output.is_some() {
            s |= STATUS_OUTPUT_FULL;
        }
        if self.last_was_command {
            s |= STATUS_LAST_WAS_COMMAND;
        }
        s
    }

    fn reset_cpu(&self) {
        self.exit.report(GuestExit::Reboot { what: "i8042" });
    }

    fn command(&mut self, cmd: u8) {
        self.last_was_command = true;
        match cmd {
            CMD_READ_CTR => self.output = Some(self.ctr),
            CMD_WRITE_CTR | CMD_WRITE_OUTPUT_PORT => self.pending = Some(cmd),
            CMD_DISABLE_AUX => self.ctr |= CTR_AUX_DISABLED,
            CMD_ENABLE_AUX => self.ctr &= !CTR_AUX_DISABLED,
            CMD_DISABLE_KBD => self.ctr |= CTR_KBD_DISABLED,
            CMD_ENABLE_KBD => self.ctr &= !CTR_KBD_DISABLED,
            CMD_SELF_TEST => self.output = Some(SELF_TEST_OK),
            CMD_TEST_KBD | CMD_TEST_AUX => self.output = Some(PORT_TEST_OK),
            CMD_READ_OUTPUT_PORT => self.output = Some(self.output_port),
            CMD_PULSE_RESET => self.reset_cpu(),
            other => tracing::debug!("i8042: ignored command {other:#x}"),
        }
    }

    fn data(&mut self, value: u8) {
        self.last_was_command = false;
        match self.pending.take() {
            Some(CMD_WRITE_CTR) => self.ctr = value,
            Some(CMD_WRITE_OUTPUT_PORT) => {
                self.output_port = value;
                if value & OUTPUT_PORT_RESET_RELEASED == 0 {
                    self.reset_cpu();
                }
            }
            _ => tracing::trace!("i8042: byte {value:#x} for the absent keyboard dropped"),
        }
    }
}

impl MutDevicePio for I8042 {
    fn pio_read(&mut self, base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0);
        let Some(first) = data.first_mut() else {
            return;
        };
        *first = match base.0.wrapping_add(offset) {
            I8042_DATA_PORT => self.output.take().unwrap_or(0),
            I8042_COMMAND_PORT => self.status(),
            _ => 0xff,
        };
    }

    fn pio_write(&mut self, base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        let Some(&value) = data.first() else {
            return;
        };
        match base.0.wrapping_add(offset) {
            I8042_DATA_PORT => self.data(value),
            I8042_COMMAND_PORT => self.command(value),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (I8042, Arc<ExitLatch>) {
        let latch = Arc::new(ExitLatch::new().unwrap());
        (I8042::new(latch.clone()), latch)
    }

    fn cmd(d: &mut I8042, c: u8) {
        d.pio_write(PioAddress(0x64), 0, &[c]);
    }
    fn put(d: &mut I8042, v: u8) {
        d.pio_write(PioAddress(0x60), 0, &[v]);
    }
    fn get(d: &mut I8042) -> u8 {
        let mut b = [0];
        d.pio_read(PioAddress(0x60), 0, &mut b);
        b[0]
    }
    fn status(d: &mut I8042) -> u8 {
        let mut b = [0];
        d.pio_read(PioAddress(0x64), 0, &mut b);
        b[0]
    }

    #[test]
    fn ctr_round_trip_and_self_test() {
        let (mut d, latch) = dev();
        assert_eq!(status(&mut d) & STATUS_OUTPUT_FULL, 0);
        cmd(&mut d, CMD_READ_CTR);
        assert_ne!(status(&mut d) & STATUS_OUTPUT_FULL, 0);
        assert_eq!(get(&mut d), CTR_KBD_DISABLED | CTR_AUX_DISABLED);
        assert_eq!(status(&mut d) & STATUS_OUTPUT_FULL, 0);
        cmd(&mut d, CMD_WRITE_CTR);
        put(&mut d, 0x47);
        cmd(&mut d, CMD_READ_CTR);
        assert_eq!(get(&mut d), 0x47);
        cmd(&mut d, CMD_DISABLE_KBD);
        cmd(&mut d, CMD_READ_CTR);
        assert_eq!(get(&mut d), 0x57);
        cmd(&mut d, CMD_SELF_TEST);
        assert_eq!(get(&mut d), SELF_TEST_OK);
        put(&mut d, 0xf2);
        assert_eq!(status(&mut d) & STATUS_OUTPUT_FULL, 0);
        assert!(!latch.should_stop());
    }

    #[test]
    fn pulse_reset_reboots() {
        let (mut d, latch) = dev();
        cmd(&mut d, CMD_PULSE_RESET);
        assert_eq!(latch.reason(), Some(GuestExit::Reboot { what: "i8042" }));
    }

    #[test]
    fn output_port_reset_bit_reboots() {
        let (mut d, latch) = dev();
        cmd(&mut d, CMD_WRITE_OUTPUT_PORT);
        put(&mut d, 0x03);
        assert!(!latch.should_stop());
        cmd(&mut d, CMD_WRITE_OUTPUT_PORT);
        put(&mut d, 0x02);
        assert!(latch.should_stop());
    }
}
