//! Interrupt completion over an in-process vGPU: the device model's line drives a fake of
//! `uio_pci_generic` (masks on delivery, counts, unmasks on write), and the driver must wait,
//! acknowledge and unmask for every escape.

mod common;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::*;
use guest_tools::driver::protocol::{intr, reg};
use guest_tools::driver::{
    Completion, DriverError, InterruptSource, RegisterBar, Setup, VgpuDriver,
};
use guest_tools::rmapi::{RmClient, VgpuTransport};
use vgpu::InterruptLine;

/// The INTx pin as `uio_pci_generic` sees it.
#[derive(Default)]
struct Pin {
    level: bool,
    masked: bool,
    /// Interrupts delivered (uio's event count).
    events: u64,
    /// Rising edges still to lose on the way (an interrupt that never reaches the handler).
    lose_edges: u32,
}

impl Pin {
    /// The handler: a high, unmasked line is one event and gets masked.
    fn deliver(&mut self) {
        if self.level && !self.masked {
            self.events += 1;
            self.masked = true;
        }
    }
}

#[derive(Default, Clone)]
struct FakeUio(Arc<(Mutex<Pin>, Condvar)>);

impl InterruptLine for FakeUio {
    fn set_level(&self, asserted: bool) {
        let mut p = self.0 .0.lock().unwrap();
        p.level = asserted;
        if asserted && p.lose_edges > 0 {
            p.lose_edges -= 1;
            return;
        }
        p.deliver();
        self.0 .1.notify_all();
    }
}

/// The driver's end: `/dev/uioN` with the event count this reader has seen.
struct Reader {
    uio: FakeUio,
    seen: u64,
    unmask: bool,
}

impl InterruptSource for Reader {
    fn unmask(&mut self) -> std::io::Result<()> {
        if self.unmask {
            let mut p = self.uio.0 .0.lock().unwrap();
            p.masked = false;
            p.deliver();
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let (m, cv) = &*self.uio.0;
        let (p, _) = cv
            .wait_timeout_while(m.lock().unwrap(), timeout, |p| p.events == self.seen)
            .unwrap();
        let fired = p.events != self.seen;
        self.seen = p.events;
        Ok(fired)
    }
}

fn events(uio: &FakeUio) -> u64 {
    uio.0 .0.lock().unwrap().events
}

/// vGPU `gfid` with its line on a fake uio, and a driver set up on it (still polling).
fn device_with_uio(rm: &SimRm, gfid: u32) -> (SharedDevice, FakeUio, VgpuDriver) {
    let dev = sim_device(rm, gfid);
    let uio = FakeUio::default();
    dev.lock()
        .unwrap()
        .set_interrupt_line(Box::new(uio.clone()));
    let d = driver(&dev, Setup::Reset);
    (dev, uio, d)
}

/// The driver's reader of `uio`; `unmask: false` never unmasks the line.
fn reader(uio: &FakeUio, unmask: bool) -> Box<Reader> {
    Box::new(Reader {
        uio: uio.clone(),
        seen: 0,
        unmask,
    })
}

#[test]
fn every_escape_completes_by_interrupt_and_the_line_ends_low() {
    let rm = sim_rm();
    let (dev, uio, mut d) = device_with_uio(&rm, 3);
    assert_eq!(d.completion(), Completion::Poll);
    d.use_interrupts(reader(&uio, true)).unwrap();
    assert_eq!(d.completion(), Completion::Irq);
    let requests_before = d.counters().requests;
    let t = VgpuTransport::new(d);
    let mut c = RmClient::open(&t).unwrap();
    let client = c.alloc_root().unwrap();
    c.free(client, client, client).unwrap();
    c.close().unwrap();

    let d = t.driver();
    let requests = d.counters().requests - requests_before;
    assert!(requests >= 4, "open, alloc, free, close: {requests}");
    assert_eq!(d.interrupts(), requests, "one interrupt per escape");
    assert_eq!(events(&uio), requests);
    let bar = DeviceBar(dev.clone());
    assert_eq!(bar.read32(reg::INTR_ENABLE), intr::QUEUE);
    assert_eq!(
        bar.read32(reg::INTR_STATUS) & intr::QUEUE,
        0,
        "acknowledged"
    );
    let p = uio.0 .0.lock().unwrap();
    assert!(
        !p.level && !p.masked,
        "line low and unmasked after the last escape"
    );
}

#[test]
fn a_reset_keeps_interrupts_armed() {
    let rm = sim_rm();
    let (_dev, uio, mut d) = device_with_uio(&rm, 4);
    d.use_interrupts(reader(&uio, true)).unwrap();
    d.reset().unwrap();
    let before = d.interrupts();
    let ctl = d.open_file(0, 0).unwrap().unwrap();
    assert!(ctl >= 0);
    assert_eq!(d.interrupts(), before + 1);
}

#[test]
fn a_line_left_masked_is_a_timeout_not_a_hang() {
    let rm = sim_rm();
    let (_dev, uio, mut d) = device_with_uio(&rm, 6);
    // A source that never unmasks: the first escape's interrupt masks the line for good.
    d.use_interrupts(reader(&uio, false)).unwrap();
    d.open_file(0, 0).unwrap().unwrap();
    // The second escape is answered, but no interrupt comes; after the wait the driver still
    // finds the answer in the used ring instead of failing or hanging.
    let (head, _) = {
        let (q, w) = d.raw_queue();
        q.post(
            w,
            &guest_tools::driver::protocol::RequestHeader {
                op: guest_tools::driver::protocol::op::OPEN,
                ..Default::default()
            },
        )
        .unwrap()
    };
    d.notify();
    let used = d.wait_used(Duration::from_millis(50)).unwrap();
    assert_eq!(used.id, u32::from(head));
    assert_eq!(d.interrupts(), 1);
    // Nothing in flight and no interrupt: a timeout.
    assert!(matches!(
        d.wait_used(Duration::from_millis(20)),
        Err(DriverError::Timeout(_))
    ));
}

#[test]
fn after_a_lost_interrupt_the_next_escape_gets_its_own() {
    let rm = sim_rm();
    let (_dev, uio, mut d) = device_with_uio(&rm, 7);
    d.use_interrupts(reader(&uio, true)).unwrap();
    uio.0 .0.lock().unwrap().lose_edges = 1;
    // The first answer is found in the used ring after a slice; the driver acknowledges it, so
    // the device (which signals level changes only) raises the line again for the next ones.
    d.open_file(0, 0).unwrap().unwrap();
    assert_eq!((d.missed_interrupts(), d.interrupts()), (1, 0));
    d.open_file(0, 0).unwrap().unwrap();
    d.open_file(0, 0).unwrap().unwrap();
    assert_eq!((d.missed_interrupts(), d.interrupts()), (1, 2));
    assert_eq!(events(&uio), 2);
}
