//! The vGPU device: routes BAR accesses to the register file, the virtio transport and the
//! window, and drives the escape queue and the doorbell into the [`EscapeService`].
//!
//! The VMM wraps a [`VgpuDevice`] in its own PCI function type: it copies [`crate::pci`]'s
//! identity, BARs and capabilities into its config space, forwards trapped BAR accesses to
//! [`VgpuDevice::bar_read`] / [`VgpuDevice::bar_write`], maps [`VgpuDevice::window`] as guest
//! memory at BAR2, and gives the device an [`InterruptLine`].

use std::collections::BTreeSet;
use std::sync::Arc;

use thiserror::Error;
use tracing::{debug, warn};

use crate::doorbell_mailbox::{DoorbellMailbox, Rung};
use crate::escape_queue::{EscapeQueue, RequestContext, MAILBOX_BUDGET};
use crate::pci::{self, BarDecl, Capability};
use crate::protocol::{self, error, intr, mailbox, reg, virtio, DeviceConfig, BAR0, BAR2};
use crate::registers::{RegisterContext, RegisterFile, WriteEffect};
use crate::service::{DoorbellError, EscapeService, FdId, Gfid};
use crate::stats::{Counter, Stats};
use crate::transport::Transport;
use crate::window::{HostWindow, WindowError};
use ::pci::PciHeader;

/// How to build a vGPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VgpuConfig {
    /// The vGPU's GFID in the RM core (1..=63).
    pub gfid: Gfid,
    /// Window (BAR2) size: a power of two, 64 KiB ..= 16 GiB.
    pub window_size: u64,
}

impl VgpuConfig {
    /// A vGPU `gfid` with the default 64 MiB window.
    pub fn new(gfid: Gfid) -> Self {
        Self {
            gfid,
            window_size: protocol::DEFAULT_WINDOW_SIZE,
        }
    }
}

/// Errors building a device.
#[derive(Debug, Error)]
pub enum DeviceError {
    /// The window could not be created.
    #[error(transparent)]
    Window(#[from] WindowError),
}

/// The guest's interrupt line for this function (INTx level, or an MSI the VMM sends on each
/// rising edge). Asserted while `INTR_STATUS & INTR_ENABLE` is nonzero.
pub trait InterruptLine: Send {
    /// Drives the line to `asserted`.
    fn set_level(&self, asserted: bool);
}

/// One vGPU as a guest sees it.
pub struct VgpuDevice {
    gfid: Gfid,
    window: HostWindow,
    registers: RegisterFile,
    transport: Transport,
    queue: Option<EscapeQueue>,
    mailbox: Option<DoorbellMailbox>,
    /// A poller serves the device now ([`VgpuDevice::set_polled`]).
    polled: bool,
    /// Times the driver broke its queue: logged at 1, 2, 4, 8, ... so a guest that breaks
    /// and resets it in a loop cannot flood the host's log.
    queue_breaks: u64,
    files: BTreeSet<FdId>,
    service: Box<dyn EscapeService>,
    stats: Arc<Stats>,
    irq: Option<Box<dyn InterruptLine>>,
    irq_level: bool,
}

impl std::fmt::Debug for VgpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VgpuDevice")
            .field("gfid", &self.gfid)
            .field("window_size", &self.window.size())
            .field("status", &self.transport.status())
            .field("open_files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl VgpuDevice {
    /// A vGPU talking to `service` (which must already know `config.gfid`).
    pub fn new(config: VgpuConfig, service: Box<dyn EscapeService>) -> Result<Self, DeviceError> {
        Ok(Self {
            gfid: config.gfid,
            window: HostWindow::new(config.window_size)?,
            registers: RegisterFile::new(),
            transport: Transport::new(),
            queue: None,
            mailbox: None,
            polled: false,
            queue_breaks: 0,
            files: BTreeSet::new(),
            service,
            stats: Arc::new(Stats::default()),
            irq: None,
            irq_level: false,
        })
    }

    /// The GFID.
    pub fn gfid(&self) -> Gfid {
        self.gfid
    }

    /// PCI identity for the config space header.
    pub fn identity(&self) -> PciHeader {
        pci::IDENTITY
    }

    /// The BARs to declare (BAR0 trapped, BAR2 host memory).
    pub fn bars(&self) -> [BarDecl; 2] {
        pci::bars(self.window.size())
    }

    /// The capabilities to put in the config space, in order.
    pub fn capabilities(&self) -> Vec<Capability> {
        pci::capabilities(self.window.size())
    }

    /// The host-visible window behind BAR2.
    pub fn window(&self) -> &HostWindow {
        &self.window
    }

    /// The counters (shared; readable without the device's lock).
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// Connects the interrupt line.
    pub fn set_interrupt_line(&mut self, line: Box<dyn InterruptLine>) {
        self.irq = Some(line);
        self.irq_level = false;
        self.update_irq();
    }

    /// Files the guest holds open through this device.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// A guest read of `data.len()` bytes at `offset` in BAR `bar`.
    pub fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            BAR0 => {
                self.stats.bump(Counter::Bar0Reads);
                self.bar0_read(offset, data);
            }
            BAR2 => {
                if self.window.read(offset, data).is_err() {
                    data.fill(0xff);
                }
            }
            _ => data.fill(0xff),
        }
    }

    /// A guest write of `data` at `offset` in BAR `bar`.
    pub fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            BAR0 => {
                self.stats.bump(Counter::Bar0Writes);
                self.bar0_write(offset, data);
            }
            BAR2 => {
                let _ = self.window.write(offset, data);
            }
            _ => {}
        }
    }

    /// Serves the queue if the driver made chains available, and rings the doorbells it posted
    /// in its mailbox: what a poller calls. Returns how many requests and doorbells it served.
    pub fn poll(&mut self) -> u32 {
        // Doorbells first: a request the guest made after ringing (an idle wait) must find the
        // channel's work already submitted.
        let tokens = self.drain_mailbox();
        let pending = self.transport.driver_ok()
            && self
                .queue
                .as_ref()
                .is_some_and(|q| q.waiting() || q.pending(&self.window));
        let requests = if pending { self.process_queue() } else { 0 };
        tokens + requests
    }

    /// Whether a request's wait is not over: whoever serves the device must call
    /// [`VgpuDevice::poll`] again soon, polled or not (the request holds its queue).
    pub fn waiting(&self) -> bool {
        self.queue.as_ref().is_some_and(|q| q.waiting())
    }

    /// Switches between polled service (the driver is told not to notify, and to post doorbells
    /// in its mailbox) and notified service. Returns whether chains or doorbells are waiting
    /// after notifications were turned back on; the caller serves them with
    /// [`VgpuDevice::poll`].
    pub fn set_polled(&mut self, polled: bool) -> bool {
        self.polled = polled;
        let chains = match self.queue.as_mut() {
            Some(q) => q.set_notifications(&self.window, !polled),
            None => false,
        };
        let tokens = match self.mailbox.as_mut() {
            Some(m) => m.set_polled(&self.window, polled),
            None => false,
        };
        chains || tokens
    }

    /// Rings every doorbell posted in the mailbox; returns how many.
    fn drain_mailbox(&mut self) -> u32 {
        let Some(m) = self.mailbox.as_mut() else {
            return 0;
        };
        let mut rung = Rung::new();
        let overrun = m
            .ring(
                &self.window,
                mailbox::SLOTS,
                self.gfid,
                self.service.as_mut(),
                &mut rung,
            )
            .is_err();
        let n = rung.len() as u32;
        self.account_posted(rung, overrun);
        n
    }

    /// Counts doorbells rung from the mailbox as `DOORBELL` writes are counted, and reports an
    /// overrun.
    fn account_posted(&mut self, rung: Rung, overrun: bool) {
        for (token, result) in rung {
            self.account_doorbell(token, result);
        }
        if overrun {
            debug!(gfid = self.gfid, "doorbell mailbox overrun");
            self.raise_error(error::MAILBOX);
        }
    }

    /// Forgets the mailbox, clearing its POLLED flag so the driver rings `DOORBELL` again.
    fn retire_mailbox(&mut self) {
        if let Some(mut m) = self.mailbox.take() {
            m.set_polled(&self.window, false);
        }
    }

    /// The driver wrote `DOORBELL_MAILBOX`: registers the mailbox there, or refuses it (the
    /// register reads back 0 and `ERROR_STATUS.MAILBOX` is set).
    fn register_mailbox(&mut self) {
        let at = u64::from(self.registers.value(reg::DOORBELL_MAILBOX));
        // The old mailbox first rings what it holds and stops saying POLLED.
        self.drain_mailbox();
        self.retire_mailbox();
        if at == 0 {
            return;
        }
        match DoorbellMailbox::register(&self.window, at) {
            Some(mut m) => {
                // Registered while a poller already serves the device: it drains from now on.
                m.set_polled(&self.window, self.polled);
                self.mailbox = Some(m);
            }
            None => {
                debug!(gfid = self.gfid, at, "doorbell mailbox refused");
                self.registers.store(reg::DOORBELL_MAILBOX, 0);
                self.raise_error(error::MAILBOX);
            }
        }
    }

    /// Whether the escape queue is live (the driver enabled it and set DRIVER_OK).
    pub fn queue_live(&self) -> bool {
        self.transport.driver_ok() && self.queue.is_some()
    }

    /// Serves the escape queue now (what a queue notify does; a polling thread may call it too).
    /// Returns how many requests it answered.
    pub fn process_queue(&mut self) -> u32 {
        if !self.transport.driver_ok() {
            return 0;
        }
        let Some(queue) = self.queue.as_mut() else {
            return 0;
        };
        let mut ctx = RequestContext {
            gfid: self.gfid,
            service: self.service.as_mut(),
            window: &self.window,
            files: &mut self.files,
            mailbox: self.mailbox.as_mut(),
            rung: Vec::new(),
            mailbox_overrun: false,
            mailbox_budget: MAILBOX_BUDGET,
        };
        let result = queue.process(&mut ctx);
        let (rung, overrun) = (std::mem::take(&mut ctx.rung), ctx.mailbox_overrun);
        self.account_posted(rung, overrun);
        match result {
            Ok(out) => {
                for _ in 0..out.used {
                    self.stats.bump(Counter::Requests);
                }
                for _ in 0..out.malformed {
                    self.stats.bump(Counter::RequestErrors);
                }
                if let Some(fault) = out.last_fault {
                    debug!(gfid = self.gfid, ?fault, "malformed escape request");
                    self.registers.store(reg::LAST_QUEUE_FAULT, fault as u32);
                    self.raise_error(error::MALFORMED_REQUEST);
                }
                if out.used > 0 {
                    self.registers.set_bits(reg::INTR_STATUS, intr::QUEUE);
                    self.update_irq();
                }
                out.used
            }
            Err(e) => {
                self.queue_breaks += 1;
                if self.queue_breaks.is_power_of_two() {
                    warn!(gfid = self.gfid, times = self.queue_breaks, "{e}");
                } else {
                    debug!(gfid = self.gfid, times = self.queue_breaks, "{e}");
                }
                // Nothing serves the device until the driver resets it: ring what it posted and
                // tell it to ring DOORBELL meanwhile.
                self.drain_mailbox();
                if let Some(m) = self.mailbox.as_mut() {
                    m.set_polled(&self.window, false);
                }
                self.transport.set_needs_reset();
                self.registers.set_bits(reg::INTR_STATUS, intr::CONFIG);
                self.raise_error(error::QUEUE_BROKEN);
                0
            }
        }
    }

    /// Device reset (the driver wrote 0 to `device_status`): the queue stops, registers return
    /// to their reset values, and every file the guest opened is closed, which frees the RM
    /// objects allocated through it. Counters keep counting.
    pub fn reset(&mut self) {
        for file in std::mem::take(&mut self.files) {
            if let Err(e) = self.service.close(self.gfid, file) {
                debug!(gfid = self.gfid, file, "close on reset: {e}");
            }
        }
        self.queue = None;
        self.retire_mailbox();
        self.polled = false;
        self.transport.reset();
        self.registers.reset();
        self.update_irq();
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        let Ok(off) = u32::try_from(offset) else {
            return data.fill(0);
        };
        let len = data.len() as u32;
        if off < reg::END {
            let ctx = RegisterContext {
                gfid: self.gfid,
                window_size: self.window.size(),
                stats: &self.stats,
            };
            for (i, b) in data.iter_mut().enumerate() {
                let byte_off = off.saturating_add(i as u32);
                let word = self.registers.read(byte_off & !3, &ctx);
                *b = word.to_le_bytes()[(byte_off & 3) as usize];
            }
        } else if in_range(off, len, virtio::COMMON_CFG, virtio::COMMON_CFG_LEN) {
            self.transport.read(off - virtio::COMMON_CFG, data);
        } else if in_range(off, len, virtio::ISR, virtio::ISR_LEN) {
            data.fill(0);
            if off == virtio::ISR {
                // Reading the ISR acknowledges the causes it shows.
                let causes = self.registers.value(reg::INTR_STATUS) & (intr::QUEUE | intr::CONFIG);
                data[0] = causes as u8;
                self.registers.clear_bits(reg::INTR_STATUS, causes);
                self.update_irq();
            }
        } else if in_range(
            off,
            len,
            virtio::DEVICE_CFG,
            size_of::<DeviceConfig>() as u32,
        ) {
            let cfg = self.device_config().to_bytes();
            let start = (off - virtio::DEVICE_CFG) as usize;
            data.copy_from_slice(&cfg[start..start + data.len()]);
        } else {
            data.fill(0);
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        let Ok(off) = u32::try_from(offset) else {
            return self.raise_error(error::BAD_ACCESS);
        };
        let len = data.len() as u32;
        if off < reg::END {
            self.register_write(off, data);
        } else if in_range(off, len, virtio::COMMON_CFG, virtio::COMMON_CFG_LEN) {
            let fx = self.transport.write(off - virtio::COMMON_CFG, data);
            if fx.reset {
                self.reset();
            }
            if fx.enable_queue {
                self.enable_queue();
            }
        } else if in_range(off, len, virtio::NOTIFY, virtio::NOTIFY_LEN)
            && off == virtio::NOTIFY
            && len >= 2
        {
            self.stats.bump(Counter::QueueNotifies);
            if u16::from_le_bytes([data[0], data[1]]) == 0 {
                self.process_queue();
            }
        } else {
            self.raise_error(error::BAD_ACCESS);
        }
    }

    fn register_write(&mut self, off: u32, data: &[u8]) {
        let words: &[u8] = match (data.len(), off % 4) {
            (4, 0) => data,
            (8, 0) if off.is_multiple_of(8) => data,
            _ => return self.raise_error(error::BAD_ACCESS),
        };
        for (i, w) in words.chunks_exact(4).enumerate() {
            let value = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let reg_off = off + 4 * i as u32;
            match self.registers.write(reg_off, value) {
                WriteEffect::Stored if reg_off == reg::DOORBELL_MAILBOX => self.register_mailbox(),
                WriteEffect::Stored => self.update_irq(),
                WriteEffect::Doorbell(token) => self.doorbell(token),
                WriteEffect::Refused => self.raise_error(error::BAD_ACCESS),
            }
        }
    }

    fn doorbell(&mut self, token: u32) {
        let result = self.service.doorbell(self.gfid, token);
        self.account_doorbell(token, result);
    }

    fn account_doorbell(&mut self, token: u32, result: Result<(), DoorbellError>) {
        match result {
            Ok(()) => self.stats.bump(Counter::Doorbells),
            Err(e) => {
                debug!(gfid = self.gfid, token, "doorbell refused: {e}");
                self.stats.bump(Counter::DoorbellsRejected);
                self.registers.store(reg::LAST_REJECTED_TOKEN, token);
                self.raise_error(error::DOORBELL_REJECTED);
            }
        }
    }

    fn enable_queue(&mut self) {
        match EscapeQueue::activate(
            self.transport.queue_config(),
            virtio::QUEUE_MAX_SIZE,
            &self.window,
        ) {
            Ok(q) => {
                self.queue = Some(q);
                self.transport.set_queue_enabled(true);
            }
            Err(e) => {
                debug!(gfid = self.gfid, "queue_enable refused: {e}");
                self.raise_error(error::QUEUE_CONFIG);
            }
        }
    }

    fn device_config(&self) -> DeviceConfig {
        DeviceConfig {
            magic: protocol::MAGIC,
            version: protocol::PROTOCOL_VERSION,
            window_size: self.window.size(),
            gfid: self.gfid,
            max_chain_descriptors: protocol::MAX_CHAIN_DESCRIPTORS as u32,
            max_mapping_copy: protocol::MAX_MAPPING_COPY,
            reserved: 0,
        }
    }

    fn raise_error(&mut self, bits: u32) {
        self.registers.set_bits(reg::ERROR_STATUS, bits);
        self.registers.set_bits(reg::INTR_STATUS, intr::ERROR);
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let level =
            self.registers.value(reg::INTR_STATUS) & self.registers.value(reg::INTR_ENABLE) != 0;
        if level != self.irq_level {
            self.irq_level = level;
            if let Some(irq) = &self.irq {
                irq.set_level(level);
                if level {
                    self.stats.bump(Counter::Interrupts);
                }
            }
        }
    }
}

impl Drop for VgpuDevice {
    fn drop(&mut self) {
        self.service.teardown(self.gfid);
    }
}

/// Whether `off..off + len` lies inside `base..base + size` (and `len` is nonzero).
fn in_range(off: u32, len: u32, base: u32, size: u32) -> bool {
    len > 0 && off >= base && off.checked_add(len).is_some_and(|end| end <= base + size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_can_live_behind_the_vmm_pci_mutex() {
        fn send<T: Send>() {}
        send::<VgpuDevice>();
    }

    #[test]
    fn in_range_checks_both_ends_without_overflow() {
        assert!(in_range(0x1000, 4, 0x1000, 0x40));
        assert!(!in_range(0x103e, 4, 0x1000, 0x40));
        assert!(!in_range(u32::MAX, 4, 0x1000, 0x40));
        assert!(!in_range(0x1000, 0, 0x1000, 0x40));
    }
}
