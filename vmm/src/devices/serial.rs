//! COM1: vm-superio's 16550A UART on the PIO bus, interrupting through an irqfd.

use std::io::Write;

use vm_device::bus::{PioAddress, PioAddressOffset};
use vm_device::MutDevicePio;
use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

/// COM1 base port.
pub const COM1_PORT: u16 = 0x3f8;
/// Ports a 16550 occupies.
pub const COM1_PORTS_LEN: u16 = 8;
/// COM1's ISA interrupt.
pub const COM1_IRQ: u32 = 4;

/// An eventfd that raises the serial interrupt (registered with KVM as an irqfd).
#[derive(Debug)]
pub struct EventFdTrigger(pub EventFd);

impl Trigger for EventFdTrigger {
    type E = std::io::Error;

    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// The UART plus where its output goes.
pub struct SerialDevice {
    uart: Serial<EventFdTrigger, vm_superio::serial::NoEvents, Box<dyn Write + Send>>,
}

impl std::fmt::Debug for SerialDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialDevice").finish_non_exhaustive()
    }
}

impl SerialDevice {
    /// A UART that interrupts through `irq` and writes what the guest sends to `out`.
    pub fn new(irq: EventFd, out: Box<dyn Write + Send>) -> Self {
        SerialDevice {
            uart: Serial::new(EventFdTrigger(irq), out),
        }
    }

    /// Flushes the output writer (at exit, so no console output is lost).
    pub fn flush_output(&mut self) {
        let _ = self.uart.writer_mut().flush();
    }

    /// Queues input bytes for the guest; returns how many fit in the receive FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl MutDevicePio for SerialDevice {
    fn pio_read(&mut self, _base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        // The UART has byte registers; wider accesses read the register then zeros.
        data.fill(0);
        if let (Some(first), Ok(reg)) = (data.first_mut(), u8::try_from(offset)) {
            *first = self.uart.read(reg);
        }
    }

    fn pio_write(&mut self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if let (Some(value), Ok(reg)) = (data.first(), u8::try_from(offset)) {
            if let Err(e) = self.uart.write(reg, *value) {
                tracing::warn!("serial write failed: {e:?}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transmit_and_receive() {
        let sink = Sink::default();
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut dev = SerialDevice::new(irq.try_clone().unwrap(), Box::new(sink.clone()));
        for b in b"ok\n" {
            dev.pio_write(PioAddress(COM1_PORT), 0, &[*b]);
        }
        assert_eq!(sink.0.lock().unwrap().as_slice(), b"ok\n");
        // Enable the receive interrupt, queue input, read it back from RBR.
        dev.pio_write(PioAddress(COM1_PORT), 1, &[0x1]);
        assert_eq!(dev.enqueue_input(b"x"), 1);
        assert!(irq.read().unwrap() >= 1);
        let mut d = [0u8; 1];
        dev.pio_read(PioAddress(COM1_PORT), 0, &mut d);
        assert_eq!(d, *b"x");
    }
}
