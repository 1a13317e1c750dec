//! The escape queue: pops request chains from the virtqueue in the window, checks them, runs
//! them through the [`EscapeService`] and puts the answers in the used ring.
//!
//! A chain must be exactly a device-readable [`RequestHeader`] descriptor followed by a
//! device-writable [`ResponseFooter`] descriptor, both inside the window. Anything else is
//! answered without reaching the service: with an error footer when the chain's last descriptor
//! can hold one, with a used length of 0 otherwise. No guest input panics or stops the queue;
//! only an impossible available index (more new entries than the queue has) marks the queue
//! broken, as virtio's `NEEDS_RESET` intends.

use std::collections::BTreeSet;

use thiserror::Error;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress};

use crate::doorbell_mailbox::{DoorbellMailbox, Rung};
use crate::protocol::{
    errno, node, op, QueueFault, RequestHeader, ResponseFooter, MAX_CHAIN_DESCRIPTORS,
    MAX_MAPPING_COPY,
};
use crate::service::{EscapeService, FdId, Gfid, IoctlOutcome, Node};
use crate::transport::QueueConfig;
use crate::window::HostWindow;

/// Most files one guest may hold open through the device.
pub const MAX_OPEN_FILES: usize = 4096;

/// Why `queue_enable` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum QueueConfigError {
    /// The size is 0, not a power of two, or above the maximum.
    #[error("queue size {0} is not a power of two up to the maximum")]
    Size(u16),
    /// A ring address is misaligned.
    #[error("a ring address is misaligned")]
    Alignment,
    /// The available ring is at window offset 0 (virtio-queue treats 0 as "unset").
    #[error("the available ring may not be at window offset 0")]
    AvailAtZero,
    /// A ring does not lie inside the window.
    #[error("a ring lies outside the window")]
    OutOfWindow,
}

/// The available ring held an index the driver cannot have written legally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("the available ring index is impossible; the queue needs a reset")]
pub struct QueueBroken;

/// What one pass over the queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// Entries put in the used ring.
    pub used: u32,
    /// Chains refused as malformed (with or without a used entry).
    pub malformed: u32,
    /// The fault of the last malformed chain.
    pub last_fault: Option<QueueFault>,
}

/// What a request runs against.
pub struct RequestContext<'a> {
    /// The vGPU.
    pub gfid: Gfid,
    /// The RM core.
    pub service: &'a mut dyn EscapeService,
    /// The window (all addresses in requests are window offsets).
    pub window: &'a HostWindow,
    /// Files this guest opened through the device (closed on reset).
    pub files: &'a mut BTreeSet<FdId>,
    /// The doorbell mailbox, if the driver registered one: drained before each request, so a
    /// request finds every doorbell the guest posted before it already rung.
    pub mailbox: Option<&'a mut DoorbellMailbox>,
    /// Doorbells rung from the mailbox, with the RM core's answer, for the device to count.
    pub rung: Rung,
    /// The mailbox overran (the device reports it).
    pub mailbox_overrun: bool,
    /// Tokens the mailbox may still hand over in this call (bounds what a guest that only
    /// moves `HEAD` costs per request it sends).
    pub mailbox_budget: u32,
}

/// Tokens one [`EscapeQueue::process`] call rings from the mailbox at most.
pub const MAILBOX_BUDGET: u32 = 2 * crate::protocol::mailbox::SLOTS;

impl RequestContext<'_> {
    /// Rings the doorbells posted in the mailbox since the last drain.
    pub fn ring_posted(&mut self) {
        let Some(m) = self.mailbox.as_deref_mut() else {
            return;
        };
        match m.ring(
            self.window,
            self.mailbox_budget,
            self.gfid,
            &mut *self.service,
            &mut self.rung,
        ) {
            Ok(n) => self.mailbox_budget -= n,
            Err(_) => self.mailbox_overrun = true,
        }
    }
}

impl<'a> std::fmt::Debug for RequestContext<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext").finish_non_exhaustive()
    }
}

/// The live escape queue (exists from `queue_enable` until reset).
#[derive(Debug)]
pub struct EscapeQueue {
    queue: Queue,
    /// A request whose wait is not over ([`IoctlOutcome::Again`]): made again at the next
    /// [`EscapeQueue::process`], before any later chain is served.
    waiting: Option<Waiting>,
}

/// A popped chain whose request is still waiting, with what it takes to finish it.
#[derive(Debug)]
struct Waiting {
    head: u16,
    header: RequestHeader,
    footer: Descriptor,
}

impl EscapeQueue {
    /// Starts the queue the driver configured, after checking its size, alignment and that
    /// every ring lies inside the window.
    pub fn activate(
        cfg: QueueConfig,
        max_size: u16,
        window: &HostWindow,
    ) -> Result<Self, QueueConfigError> {
        let mut queue = Queue::new(max_size).map_err(|_| QueueConfigError::Size(max_size))?;
        queue
            .try_set_size(cfg.size)
            .map_err(|_| QueueConfigError::Size(cfg.size))?;
        if cfg.driver == 0 {
            return Err(QueueConfigError::AvailAtZero);
        }
        queue
            .try_set_desc_table_address(GuestAddress(cfg.desc))
            .map_err(|_| QueueConfigError::Alignment)?;
        queue
            .try_set_avail_ring_address(GuestAddress(cfg.driver))
            .map_err(|_| QueueConfigError::Alignment)?;
        queue
            .try_set_used_ring_address(GuestAddress(cfg.device))
            .map_err(|_| QueueConfigError::Alignment)?;
        queue.set_ready(true);
        if !queue.is_valid(window.memory()) {
            return Err(QueueConfigError::OutOfWindow);
        }
        Ok(Self {
            queue,
            waiting: None,
        })
    }

    /// Whether a request's wait is not over: the queue must be processed again (a poller keeps
    /// calling [`EscapeQueue::process`] until it is).
    pub fn waiting(&self) -> bool {
        self.waiting.is_some()
    }

    /// Whether the driver has made chains available that are not served yet (a poller's check:
    /// one load of the available index from the window).
    pub fn pending(&self, window: &HostWindow) -> bool {
        self.queue
            .avail_idx(window.memory(), std::sync::atomic::Ordering::Acquire)
            .is_ok_and(|idx| idx.0 != self.queue.next_avail())
    }

    /// Tells the driver whether to notify (`VIRTQ_USED_F_NO_NOTIFY` in the used ring's flags).
    /// Turning notifications back on returns whether chains arrived meanwhile, which the caller
    /// must then serve: a driver that saw the flag set did not notify for them.
    pub fn set_notifications(&mut self, window: &HostWindow, on: bool) -> bool {
        let mem = window.memory();
        if on {
            self.queue.enable_notification(mem).unwrap_or(true)
        } else {
            let _ = self.queue.disable_notification(mem);
            false
        }
    }

    /// Serves every chain the driver has made available (at most four times the queue size per
    /// call, so a driver that keeps refilling cannot hold the vCPU forever).
    pub fn process(&mut self, ctx: &mut RequestContext<'_>) -> Result<ProcessOutcome, QueueBroken> {
        let mem = ctx.window.memory();
        let mut out = ProcessOutcome::default();
        if let Some(w) = self.waiting.take() {
            ctx.ring_posted();
            match run_request(&w.header, ctx) {
                None => {
                    self.waiting = Some(w);
                    return Ok(out);
                }
                Some(resp) => {
                    let used_len = write_footer(ctx.window, w.footer, &resp);
                    if self.queue.add_used(mem, w.head, used_len).is_ok() {
                        out.used += 1;
                    }
                }
            }
        }
        let limit = 4 * u32::from(self.queue.size());
        for _ in 0..limit {
            let head = match self.queue.iter(mem) {
                Ok(mut it) => it.next().map(|chain| chain.head_index()),
                Err(_) => return Err(QueueBroken),
            };
            let Some(head) = head else { break };
            // The avail index that named this chain was read above: every doorbell the guest
            // posted before publishing it is in the mailbox now.
            ctx.ring_posted();
            let (table, size) = (self.queue.desc_table(), self.queue.size());
            let (used_len, fault) = match serve_chain(head, table, size, ctx) {
                Served::Done(used_len, fault) => (used_len, fault),
                Served::Waiting(header, footer) => {
                    self.waiting = Some(Waiting {
                        head,
                        header,
                        footer,
                    });
                    break;
                }
            };
            if let Some(f) = fault {
                out.malformed += 1;
                out.last_fault = Some(f);
            }
            // A head index outside the table gets no used entry (and is not handed to
            // virtio-queue, which would log an error for each: a guest's garbage heads would
            // flood the host's log).
            if head < size && self.queue.add_used(mem, head, used_len).is_ok() {
                out.used += 1;
            }
        }
        Ok(out)
    }
}

/// Walks the chain at `head` in the descriptor table at `table` (of `size` entries) and checks
/// its shape; returns the header and footer descriptors or the fault plus the footer to report
/// it in, if one is usable. The walk reads the table itself rather than through virtio-queue's
/// chain iterator, which follows `VIRTQ_DESC_F_INDIRECT` whether or not the feature was
/// negotiated (it is never offered) and stops early when the chain's lengths overflow a u32.
fn check_chain(
    head: u16,
    table: u64,
    size: u16,
    window: &HostWindow,
) -> Result<(Descriptor, Descriptor), (QueueFault, Option<Descriptor>)> {
    if head >= size {
        return Err((QueueFault::BadHeadIndex, None));
    }
    let mut descs = [Descriptor::new(0, 0, 0, 0); MAX_CHAIN_DESCRIPTORS];
    let mut n = 0;
    let mut index = head;
    loop {
        if n == MAX_CHAIN_DESCRIPTORS {
            return Err((QueueFault::ChainTooLong, None));
        }
        // The table was checked to lie in the window when the queue was enabled.
        let Some(d) = read_descriptor(window, table, index) else {
            return Err((QueueFault::OutOfWindow, None));
        };
        if d.refers_to_indirect_table() {
            return Err((QueueFault::Indirect, None));
        }
        descs[n] = d;
        n += 1;
        if !d.has_next() {
            break;
        }
        if d.next() >= size {
            return Err((QueueFault::ChainTooLong, None));
        }
        index = d.next();
    }
    let last = descs[n - 1];
    let footer_ok = last.is_write_only()
        && last.len() as usize == ResponseFooter::SIZE
        && window.check(last.addr().0, ResponseFooter::SIZE).is_ok();
    let footer = footer_ok.then_some(last);
    if n != 2 || descs[0].is_write_only() || !last.is_write_only() {
        return Err((QueueFault::BadLayout, footer));
    }
    let (hdr, ftr) = (descs[0], descs[1]);
    if hdr.len() as usize != RequestHeader::SIZE || ftr.len() as usize != ResponseFooter::SIZE {
        return Err((QueueFault::BadLength, footer));
    }
    if window.check(hdr.addr().0, RequestHeader::SIZE).is_err() || footer.is_none() {
        return Err((QueueFault::OutOfWindow, footer));
    }
    Ok((hdr, ftr))
}

/// Descriptor `index` of the table at window offset `table`, read as virtio-queue's own
/// chain iterator reads one (the split descriptor is a little-endian plain-data struct).
fn read_descriptor(window: &HostWindow, table: u64, index: u16) -> Option<Descriptor> {
    let at = table.checked_add(16 * u64::from(index))?;
    window.memory().read_obj(GuestAddress(at)).ok()
}

/// What serving one chain came to.
enum Served {
    /// The used length, and the fault if the chain was malformed.
    Done(u32, Option<QueueFault>),
    /// The request waits: its header and the footer descriptor to answer in later.
    Waiting(RequestHeader, Descriptor),
}

/// Serves one chain.
fn serve_chain(head: u16, table: u64, size: u16, ctx: &mut RequestContext<'_>) -> Served {
    let (hdr_desc, ftr_desc) = match check_chain(head, table, size, ctx.window) {
        Ok(d) => d,
        Err((fault, footer)) => {
            let ret = if fault == QueueFault::OutOfWindow {
                -errno::EFAULT
            } else {
                -errno::EINVAL
            };
            let resp = ResponseFooter {
                ret,
                file: -1,
                fault: fault as u32,
                reserved: 0,
            };
            let used = footer.map_or(0, |f| write_footer(ctx.window, f, &resp));
            return Served::Done(used, Some(fault));
        }
    };
    let mut raw = [0u8; RequestHeader::SIZE];
    if ctx.window.read(hdr_desc.addr().0, &mut raw).is_err() {
        return Served::Done(0, Some(QueueFault::OutOfWindow));
    }
    let header = RequestHeader::from_bytes(&raw);
    match run_request(&header, ctx) {
        Some(resp) => Served::Done(write_footer(ctx.window, ftr_desc, &resp), None),
        None => Served::Waiting(header, ftr_desc),
    }
}

fn write_footer(window: &HostWindow, desc: Descriptor, resp: &ResponseFooter) -> u32 {
    match window.write(desc.addr().0, &resp.to_bytes()) {
        Ok(()) => ResponseFooter::SIZE as u32,
        Err(_) => 0,
    }
}

fn reply(ret: i32, file: FdId) -> ResponseFooter {
    ResponseFooter {
        ret,
        file,
        fault: 0,
        reserved: 0,
    }
}

/// Runs a well-formed request; `None` while its wait is not over.
fn run_request(h: &RequestHeader, ctx: &mut RequestContext<'_>) -> Option<ResponseFooter> {
    Some(match h.op {
        op::OPEN => open(h, ctx),
        op::CLOSE => {
            if !ctx.files.contains(&h.file) {
                return Some(reply(-errno::EBADF, h.file));
            }
            ctx.files.remove(&h.file);
            match ctx.service.close(ctx.gfid, h.file) {
                Ok(()) => reply(0, h.file),
                Err(e) => reply(e.ret(), h.file),
            }
        }
        op::IOCTL => {
            if !ctx.files.contains(&h.file) {
                return Some(reply(-errno::EBADF, h.file));
            }
            if ctx.window.check(h.arg, 1).is_err() {
                return Some(reply(-errno::EFAULT, h.file));
            }
            match ctx
                .service
                .ioctl(ctx.gfid, h.file, h.request, h.arg, ctx.window)
            {
                IoctlOutcome::Done(ret) => reply(ret, h.file),
                IoctlOutcome::Again => return None,
            }
        }
        op::MAPPING_READ | op::MAPPING_WRITE => mapping_copy(h, ctx),
        _ => reply(-errno::ENOSYS, h.file),
    })
}

fn open(h: &RequestHeader, ctx: &mut RequestContext<'_>) -> ResponseFooter {
    let node = match (h.request, u32::try_from(h.arg)) {
        (node::CTL, _) if h.arg == 0 => Node::Ctl,
        (node::DEVICE, Ok(minor)) => Node::Device(minor),
        _ => return reply(-errno::EINVAL, -1),
    };
    if ctx.files.len() >= MAX_OPEN_FILES {
        return reply(-errno::ENOMEM, -1);
    }
    match ctx.service.open(ctx.gfid, node) {
        Ok(file) => {
            ctx.files.insert(file);
            reply(0, file)
        }
        Err(e) => reply(e.ret(), -1),
    }
}

fn mapping_copy(h: &RequestHeader, ctx: &mut RequestContext<'_>) -> ResponseFooter {
    if !ctx.files.contains(&h.file) {
        return reply(-errno::EBADF, h.file);
    }
    if h.length == 0 || h.length > MAX_MAPPING_COPY {
        return reply(-errno::EINVAL, h.file);
    }
    let len = h.length as usize;
    if ctx.window.check(h.arg, len).is_err() {
        return reply(-errno::EFAULT, h.file);
    }
    let mut buf = vec![0u8; len];
    let ret = if h.op == op::MAPPING_READ {
        match ctx
            .service
            .read_mapping(ctx.gfid, h.file, h.offset, &mut buf)
        {
            Ok(()) if ctx.window.write(h.arg, &buf).is_err() => -errno::EFAULT,
            Ok(()) => 0,
            Err(e) => e.ret(),
        }
    } else if ctx.window.read(h.arg, &mut buf).is_err() {
        -errno::EFAULT
    } else {
        ctx.service
            .write_mapping(ctx.gfid, h.file, h.offset, &buf)
            .map_or_else(|e| e.ret(), |()| 0)
    };
    reply(ret, h.file)
}
