//! Subscribers of the VMM's event loop (event-manager): stdin to the serial console, and the
//! exit latch's eventfd.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};

use crate::devices::SerialDevice;
use crate::exit::ExitLatch;

/// Forwards bytes typed on stdin into the serial receive FIFO.
///
/// Registers stdin only when it can be polled (a terminal or a pipe, not `/dev/null` or a
/// regular file) and unregisters on end of file.
#[derive(Debug)]
pub struct ConsoleInput {
    serial: Arc<Mutex<SerialDevice>>,
}

impl ConsoleInput {
    /// Input for `serial`.
    pub fn new(serial: Arc<Mutex<SerialDevice>>) -> Self {
        ConsoleInput { serial }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        let mut buf = [0u8; 64];
        let stdin = std::io::stdin();
        let n = match stdin.lock().read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 || events.event_set().contains(EventSet::HANG_UP) {
            let _ = ops.remove(Events::new(&stdin, EventSet::IN));
            return;
        }
        let mut serial = self.serial.lock().unwrap_or_else(|e| e.into_inner());
        // Input beyond the FIFO's room is dropped, as a real UART overruns.
        serial.enqueue_input(&buf[..n]);
    }

    fn init(&mut self, ops: &mut EventOps) {
        let stdin = std::io::stdin();
        if let Err(e) = ops.add(Events::new(&stdin, EventSet::IN)) {
            tracing::debug!(
                fd = stdin.as_raw_fd(),
                "stdin not pollable, no console input: {e}"
            );
        }
    }
}

/// Wakes the event loop when a guest exit is reported.
#[derive(Debug)]
pub struct ExitWatcher {
    latch: Arc<ExitLatch>,
}

impl ExitWatcher {
    /// Watches `latch`'s eventfd.
    pub fn new(latch: Arc<ExitLatch>) -> Self {
        ExitWatcher { latch }
    }
}

impl MutEventSubscriber for ExitWatcher {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        // Drain the counter; the run loop checks the latch itself.
        let _ = self.latch.event().read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(self.latch.event(), EventSet::IN)) {
            tracing::warn!("cannot watch the exit eventfd: {e}");
        }
    }
}
