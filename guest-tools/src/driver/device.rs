//! [`VgpuDriver`]: brings the vGPU up (identity check, virtio feature negotiation, queue in the
//! window), carries requests over the escape queue (completing them by polling or by interrupt),
//! rings doorbells, and resets the device.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interrupt::{Completion, InterruptSource};
use super::mailbox::Mailbox;
use super::mmio::RegisterBar;
use super::protocol::{
    self, features, intr, op, reg, virtio, RequestHeader, ResponseFooter, PROTOCOL_VERSION_MAJOR,
};
use super::queue::{layout, SplitQueue, UsedElem, QUEUE_SIZE};
use super::window::{OutOfWindow, SharedWindow};
use virtio::common;
use virtio::status::*;

/// How long a request may stay unanswered before the driver gives up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an interrupt-driven wait sleeps before it looks at the used ring itself: a safety
/// net, well above the interrupt's latency (escapes with interrupt completion under QEMU TCG
/// on a loaded host take up to 0.2 s at p99, so a slice that short counted late interrupts as
/// missed).
pub const IRQ_SLICE: Duration = Duration::from_secs(1);
/// How often a polling wait reads the device status (for NEEDS_RESET): each read is a trapped
/// BAR0 access, a VM exit or a socket message, so a spinning wait must not make one per spin.
pub const STATUS_CHECK_EVERY: Duration = Duration::from_millis(1);

/// Errors of the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// BAR0 does not hold a vGPU register file.
    #[error("BAR0 magic is {0:#010x}, not \"VGPU\"")]
    BadMagic(u32),
    /// The device speaks another major protocol version.
    #[error("protocol version {0:#x} is not major version {major}", major = PROTOCOL_VERSION_MAJOR)]
    Version(u32),
    /// The device has no escape queue.
    #[error("the device offers no escape queue (FEATURES {0:#x})")]
    NoEscapeQueue(u32),
    /// The device refused the feature set.
    #[error("the device refused FEATURES_OK")]
    FeaturesRefused,
    /// The device refused the queue configuration.
    #[error("the device refused queue_enable (ERROR_STATUS {0:#x})")]
    QueueRefused(u32),
    /// The window is too small for the driver's layout.
    #[error("the window ({0:#x} bytes) is smaller than the driver's ring layout")]
    WindowTooSmall(u64),
    /// There is no live queue with this driver's layout to attach to.
    #[error("no live escape queue with this driver's layout to attach to")]
    NothingToAttach,
    /// The device has set NEEDS_RESET.
    #[error("the device needs a reset (device_status {0:#x})")]
    NeedsReset(u8),
    /// A request was not answered in time.
    #[error("request not answered within {0:?}")]
    Timeout(Duration),
    /// The device answered another chain than the one in flight.
    #[error("used entry names descriptor {got}, expected {want}")]
    WrongCompletion {
        /// Head in the used entry.
        got: u32,
        /// Head the driver published.
        want: u16,
    },
    /// The device refused the chain without a footer.
    #[error("the device refused the request chain (fault {fault}, used length {len})")]
    Refused {
        /// `LAST_QUEUE_FAULT`.
        fault: u32,
        /// Used length.
        len: u32,
    },
    /// An access outside the window.
    #[error(transparent)]
    Window(#[from] OutOfWindow),
    /// Waiting for or unmasking the interrupt failed.
    #[error("interrupt: {0}")]
    Interrupt(#[source] std::io::Error),
}

/// What the device reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// GFID of this vGPU.
    pub gfid: u32,
    /// Protocol version (major << 16 | minor).
    pub version: u32,
    /// `FEATURES` bits.
    pub features: u32,
    /// Window size in bytes.
    pub window_size: u64,
}

/// The device's counters (BAR0 registers 0x40..0x68).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeviceCounters {
    /// Accepted doorbells.
    pub doorbells: u64,
    /// Refused doorbells.
    pub doorbells_rejected: u64,
    /// Queue notifies.
    pub queue_notifies: u64,
    /// Completed request chains.
    pub requests: u64,
    /// Malformed request chains.
    pub request_errors: u64,
}

/// How to take the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// Reset it (closing every file any earlier process opened) and set the queue up afresh.
    Reset,
    /// Keep a live queue with this driver's layout (set up by an earlier process of this
    /// guest); files it opened stay open.
    Attach,
}

/// The userspace vGPU driver: one process drives the device at a time.
pub struct VgpuDriver {
    bar0: Box<dyn RegisterBar>,
    window: Arc<SharedWindow>,
    queue: SplitQueue,
    mailbox: Option<Mailbox>,
    info: DeviceInfo,
    irq: Option<Box<dyn InterruptSource>>,
    interrupts: u64,
    missed_interrupts: u64,
}

impl std::fmt::Debug for VgpuDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VgpuDriver")
            .field("info", &self.info)
            .field("queue", &self.queue)
            .field("completion", &self.completion())
            .finish_non_exhaustive()
    }
}

impl VgpuDriver {
    /// Takes the device behind `bar0` and `window` as `setup` says.
    pub fn new(
        bar0: Box<dyn RegisterBar>,
        window: SharedWindow,
        setup: Setup,
    ) -> Result<Self, DriverError> {
        let magic = bar0.read32(reg::MAGIC);
        if magic != protocol::MAGIC {
            return Err(DriverError::BadMagic(magic));
        }
        let version = bar0.read32(reg::VERSION);
        if version >> 16 != u32::from(PROTOCOL_VERSION_MAJOR) {
            return Err(DriverError::Version(version));
        }
        let features = bar0.read32(reg::FEATURES);
        if features & features::ESCAPE_QUEUE == 0 {
            return Err(DriverError::NoEscapeQueue(features));
        }
        let info = DeviceInfo {
            gfid: bar0.read32(reg::GFID),
            version,
            features,
            window_size: bar0.read64(reg::WINDOW_SIZE_LO),
        };
        if window.size() < layout::HEAP || window.size() != info.window_size {
            return Err(DriverError::WindowTooSmall(window.size()));
        }
        let queue = match setup {
            Setup::Reset => Self::bring_up(bar0.as_ref(), &window)?,
            Setup::Attach => Self::attach(bar0.as_ref(), &window)?,
        };
        let mailbox = Self::mailbox(bar0.as_ref(), &window, info.features, setup)?;
        Ok(Self {
            bar0,
            window: Arc::new(window),
            queue,
            mailbox,
            info,
            irq: None,
            interrupts: 0,
            missed_interrupts: 0,
        })
    }

    /// Completes requests by interrupt from now on: acknowledges stale causes, unmasks `source`
    /// and enables `INTR_ENABLE.QUEUE` (kept across [`Self::reset`]).
    pub fn use_interrupts(&mut self, source: Box<dyn InterruptSource>) -> Result<(), DriverError> {
        self.irq = Some(source);
        self.arm_interrupts()
    }

    fn arm_interrupts(&mut self) -> Result<(), DriverError> {
        let Some(irq) = self.irq.as_mut() else {
            return Ok(());
        };
        self.bar0.write32(reg::INTR_ENABLE, 0);
        self.bar0.write32(reg::INTR_STATUS, intr::ALL);
        irq.unmask().map_err(DriverError::Interrupt)?;
        self.bar0.write32(reg::INTR_ENABLE, intr::QUEUE);
        Ok(())
    }

    /// How requests complete.
    pub fn completion(&self) -> Completion {
        if self.irq.is_some() {
            Completion::Irq
        } else {
            Completion::Poll
        }
    }

    /// Interrupts this driver waited for and handled.
    pub fn interrupts(&self) -> u64 {
        self.interrupts
    }

    /// Completions the driver found in the used ring after [`IRQ_SLICE`] without their
    /// interrupt (a lost interrupt costs one slice, not the request's whole timeout).
    pub fn missed_interrupts(&self) -> u64 {
        self.missed_interrupts
    }

    fn common_write16(bar0: &dyn RegisterBar, off: u32, v: u16) {
        bar0.write16(virtio::COMMON_CFG + off, v);
    }

    fn common_write64(bar0: &dyn RegisterBar, off: u32, v: u64) {
        bar0.write32(virtio::COMMON_CFG + off, v as u32);
        bar0.write32(virtio::COMMON_CFG + off + 4, (v >> 32) as u32);
    }

    fn common_read64(bar0: &dyn RegisterBar, off: u32) -> u64 {
        u64::from(bar0.read32(virtio::COMMON_CFG + off))
            | u64::from(bar0.read32(virtio::COMMON_CFG + off + 4)) << 32
    }

    fn set_status(bar0: &dyn RegisterBar, s: u8) {
        bar0.write8(virtio::COMMON_CFG + common::DEVICE_STATUS, s);
    }

    fn status(bar0: &dyn RegisterBar) -> u8 {
        bar0.read8(virtio::COMMON_CFG + common::DEVICE_STATUS)
    }

    /// The PROTOCOL.md driver sequence, steps 3 and 4.
    fn bring_up(bar0: &dyn RegisterBar, window: &SharedWindow) -> Result<SplitQueue, DriverError> {
        Self::set_status(bar0, 0);
        Self::set_status(bar0, ACKNOWLEDGE | DRIVER);
        bar0.write32(virtio::COMMON_CFG + common::DRIVER_FEATURE_SELECT, 0);
        bar0.write32(virtio::COMMON_CFG + common::DRIVER_FEATURE, 0);
        bar0.write32(virtio::COMMON_CFG + common::DRIVER_FEATURE_SELECT, 1);
        bar0.write32(
            virtio::COMMON_CFG + common::DRIVER_FEATURE,
            (virtio::F_VERSION_1 >> 32) as u32,
        );
        Self::set_status(bar0, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        if Self::status(bar0) & FEATURES_OK == 0 {
            return Err(DriverError::FeaturesRefused);
        }
        let queue = SplitQueue::create(window)?;
        Self::common_write16(bar0, common::QUEUE_SELECT, 0);
        Self::common_write16(bar0, common::QUEUE_SIZE, QUEUE_SIZE);
        Self::common_write64(bar0, common::QUEUE_DESC, layout::DESC);
        Self::common_write64(bar0, common::QUEUE_DRIVER, layout::AVAIL);
        Self::common_write64(bar0, common::QUEUE_DEVICE, layout::USED);
        Self::common_write16(bar0, common::QUEUE_ENABLE, 1);
        if bar0.read16(virtio::COMMON_CFG + common::QUEUE_ENABLE) != 1 {
            return Err(DriverError::QueueRefused(bar0.read32(reg::ERROR_STATUS)));
        }
        Self::set_status(bar0, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        Ok(queue)
    }

    /// Registers the doorbell mailbox after a reset, or adopts the one an earlier process
    /// registered; none if the device does not offer it (or refused it).
    fn mailbox(
        bar0: &dyn RegisterBar,
        window: &SharedWindow,
        features: u32,
        setup: Setup,
    ) -> Result<Option<Mailbox>, DriverError> {
        if features & protocol::features::DOORBELL_MAILBOX == 0 {
            return Ok(None);
        }
        let at = layout::MAILBOX;
        match setup {
            Setup::Reset => {
                let m = Mailbox::create(window, at)?;
                bar0.write32(reg::DOORBELL_MAILBOX, at as u32);
                Ok((u64::from(bar0.read32(reg::DOORBELL_MAILBOX)) == at).then_some(m))
            }
            Setup::Attach => {
                Ok((u64::from(bar0.read32(reg::DOORBELL_MAILBOX)) == at)
                    .then(|| Mailbox::adopt(at)))
            }
        }
    }

    fn attach(bar0: &dyn RegisterBar, window: &SharedWindow) -> Result<SplitQueue, DriverError> {
        let status = Self::status(bar0);
        if status & NEEDS_RESET != 0 {
            return Err(DriverError::NeedsReset(status));
        }
        Self::common_write16(bar0, common::QUEUE_SELECT, 0);
        let live = status & DRIVER_OK != 0
            && bar0.read16(virtio::COMMON_CFG + common::QUEUE_ENABLE) == 1
            && bar0.read16(virtio::COMMON_CFG + common::QUEUE_SIZE) == QUEUE_SIZE
            && Self::common_read64(bar0, common::QUEUE_DESC) == layout::DESC
            && Self::common_read64(bar0, common::QUEUE_DRIVER) == layout::AVAIL
            && Self::common_read64(bar0, common::QUEUE_DEVICE) == layout::USED;
        if !live {
            return Err(DriverError::NothingToAttach);
        }
        let mut queue = SplitQueue::adopt(window)?;
        // A chain the earlier process published but never notified is finished off here.
        if queue.in_flight() != 0 {
            bar0.write16(virtio::NOTIFY, 0);
            while queue.take_used(window)?.is_some() {}
        }
        Ok(queue)
    }

    /// Identity of the device.
    pub fn info(&self) -> DeviceInfo {
        self.info
    }

    /// The window.
    pub fn window(&self) -> &Arc<SharedWindow> {
        &self.window
    }

    /// Sends one request and waits for its footer.
    pub fn request(&mut self, header: &RequestHeader) -> Result<ResponseFooter, DriverError> {
        let (head, footer_at) = self.queue.post(&self.window, header)?;
        if self.queue.notify_wanted(&self.window)? {
            self.notify();
        }
        let used = self.wait_used(REQUEST_TIMEOUT)?;
        if used.id != u32::from(head) {
            return Err(DriverError::WrongCompletion {
                got: used.id,
                want: head,
            });
        }
        if used.len as usize != ResponseFooter::SIZE {
            return Err(DriverError::Refused {
                fault: self.bar0.read32(reg::LAST_QUEUE_FAULT),
                len: used.len,
            });
        }
        let mut b = [0u8; ResponseFooter::SIZE];
        self.window.read(footer_at, &mut b)?;
        Ok(ResponseFooter::from_bytes(&b))
    }

    /// Writes the queue notify register (serves the queue in the VMM).
    pub fn notify(&self) {
        self.bar0.write16(virtio::NOTIFY, 0);
    }

    /// Waits for a used entry until `timeout` passes: by polling the used ring, or, with
    /// interrupts in use, by sleeping until the device raises `QUEUE`.
    pub fn wait_used(&mut self, timeout: Duration) -> Result<UsedElem, DriverError> {
        if self.irq.is_some() {
            return self.wait_used_irq(timeout);
        }
        let mut start = None;
        let mut next_status = STATUS_CHECK_EVERY;
        loop {
            if let Some(u) = self.queue.take_used(&self.window)? {
                return Ok(u);
            }
            let waited = start.get_or_insert_with(Instant::now).elapsed();
            if waited >= next_status {
                let status = Self::status(self.bar0.as_ref());
                if status & NEEDS_RESET != 0 {
                    return Err(DriverError::NeedsReset(status));
                }
                next_status = waited + STATUS_CHECK_EVERY;
            }
            if waited > timeout {
                return Err(DriverError::Timeout(timeout));
            }
            std::hint::spin_loop();
        }
    }

    /// Sleeps on the interrupt, acknowledges `QUEUE` at the device, unmasks the line, then reaps;
    /// a wake-up with nothing new in the used ring waits again.
    fn wait_used_irq(&mut self, timeout: Duration) -> Result<UsedElem, DriverError> {
        let start = Instant::now();
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let irq = self.irq.as_mut().expect("checked by the caller");
            if !irq
                .wait(left.min(IRQ_SLICE))
                .map_err(DriverError::Interrupt)?
            {
                // No line within the slice: the used ring tells whether the device answered.
                if let Some(u) = self.queue.take_used(&self.window)? {
                    // Acknowledge the completion the line would have carried: the device
                    // signals level changes only, so while QUEUE stays set the next
                    // completion raises no interrupt of its own.
                    self.missed_interrupts += 1;
                    self.bar0.write32(reg::INTR_STATUS, intr::QUEUE);
                    return Ok(u);
                }
                if start.elapsed() >= timeout {
                    return Err(DriverError::Timeout(timeout));
                }
                continue;
            }
            self.interrupts += 1;
            self.bar0.write32(reg::INTR_STATUS, intr::QUEUE);
            irq.unmask().map_err(DriverError::Interrupt)?;
            if let Some(u) = self.queue.take_used(&self.window)? {
                return Ok(u);
            }
            let status = Self::status(self.bar0.as_ref());
            if status & NEEDS_RESET != 0 {
                return Err(DriverError::NeedsReset(status));
            }
        }
    }

    /// Takes a used entry if one is there (no waiting).
    pub fn try_used(&mut self) -> Result<Option<UsedElem>, DriverError> {
        Ok(self.queue.take_used(&self.window)?)
    }

    /// Rings the usermode doorbell with a work-submit token: through the mailbox while the
    /// device polls it (no trapped access), else by writing `DOORBELL`.
    pub fn doorbell(&self, token: u32) {
        let posted = self
            .mailbox
            .as_ref()
            .is_some_and(|m| m.post(&self.window, token).unwrap_or(false));
        if !posted {
            self.doorbell_register(token);
        }
    }

    /// Rings the usermode doorbell by writing the `DOORBELL` register, mailbox or not (the
    /// device answers it before the write returns).
    pub fn doorbell_register(&self, token: u32) {
        self.bar0.write32(reg::DOORBELL, token);
    }

    /// Reads `ERROR_STATUS`.
    pub fn error_status(&self) -> u32 {
        self.bar0.read32(reg::ERROR_STATUS)
    }

    /// Acknowledges error bits.
    pub fn clear_errors(&self, bits: u32) {
        self.bar0.write32(reg::ERROR_STATUS, bits);
    }

    /// `LAST_REJECTED_TOKEN`.
    pub fn last_rejected_token(&self) -> u32 {
        self.bar0.read32(reg::LAST_REJECTED_TOKEN)
    }

    /// `LAST_QUEUE_FAULT`.
    pub fn last_queue_fault(&self) -> u32 {
        self.bar0.read32(reg::LAST_QUEUE_FAULT)
    }

    /// `device_status`.
    pub fn device_status(&self) -> u8 {
        Self::status(self.bar0.as_ref())
    }

    /// The device's counters.
    pub fn counters(&self) -> DeviceCounters {
        let b = self.bar0.as_ref();
        DeviceCounters {
            doorbells: b.read64(reg::DOORBELLS_LO),
            doorbells_rejected: b.read64(reg::DOORBELLS_REJECTED_LO),
            queue_notifies: b.read64(reg::QUEUE_NOTIFIES_LO),
            requests: b.read64(reg::REQUESTS_LO),
            request_errors: b.read64(reg::REQUEST_ERRORS_LO),
        }
    }

    /// Resets the device (closing every file opened through it, which frees the RM objects
    /// allocated through them) and sets the queue up again.
    pub fn reset(&mut self) -> Result<(), DriverError> {
        self.queue = Self::bring_up(self.bar0.as_ref(), &self.window)?;
        self.mailbox = Self::mailbox(
            self.bar0.as_ref(),
            &self.window,
            self.info.features,
            Setup::Reset,
        )?;
        self.arm_interrupts()
    }

    /// Resets the device and leaves it down (what the process's exit is on bare metal).
    pub fn shut_down(&self) {
        Self::set_status(self.bar0.as_ref(), 0);
    }

    /// The raw queue, for hostile-guest tests that build malformed chains.
    pub fn raw_queue(&mut self) -> (&mut SplitQueue, &SharedWindow) {
        (&mut self.queue, &*self.window)
    }

    /// A raw BAR0 write, for hostile-guest tests.
    pub fn raw_write32(&self, off: u32, v: u32) {
        self.bar0.write32(off, v);
    }

    /// Whether the device offers `MAPPING_READ` / `MAPPING_WRITE`.
    pub fn has_mapping_copy(&self) -> bool {
        self.info.features & features::MAPPING_COPY != 0
    }

    /// Whether window pages can back GPU memory objects (OS descriptors, protocol 1.1).
    pub fn has_window_memory(&self) -> bool {
        self.info.features & features::WINDOW_MEMORY != 0
    }

    /// Opens a guest file: returns the file id or `-errno`.
    pub fn open_file(&mut self, node: u32, minor: u64) -> Result<Result<i32, i32>, DriverError> {
        let f = self.request(&RequestHeader {
            op: op::OPEN,
            request: node,
            arg: minor,
            ..Default::default()
        })?;
        Ok(if f.ret == 0 { Ok(f.file) } else { Err(f.ret) })
    }
}
