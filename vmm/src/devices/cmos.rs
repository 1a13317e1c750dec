//! CMOS/RTC ports 0x70/0x71: present, all registers read 0.
//!
//! Reading 0xff here costs the guest about 3 s (`rtc_cmos: broken or not accessible`), reading
//! 0 lets it move on at once. The guest gets wall-clock time from kvmclock instead.

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::DevicePio;

/// First CMOS port.
pub const CMOS_PORT: u16 = 0x70;
/// Number of CMOS ports.
pub const CMOS_PORTS_LEN: u16 = 2;

/// The CMOS stub.
#[derive(Debug, Default)]
pub struct Cmos;

impl DevicePio for Cmos {
    fn pio_read(&self, _base: PioAddress, _offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0);
    }

    fn pio_write(&self, _base: PioAddress, _offset: PioAddressOffset, _data: &[u8]) {}
}
