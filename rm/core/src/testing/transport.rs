//! [`CoreTransport`]: the RM core called in-process as an `rm-client` [`Transport`], so tests can
//! drive a core with the same [`rm_client::RmClient`] the guest uses over the vGPU.
//!
//! System calls become the core's host-side API ([`Rm::open`], [`Rm::ioctl`], [`Rm::close`]) for
//! one GFID; the client's buffers live in a region of this process that the core reads as that
//! guest's memory, addressed from [`GUEST_BASE`]; a mapping reads and writes the mapped memory
//! object through [`Rm::read_memory`] / [`Rm::write_memory`]. Transports made with
//! [`CoreTransport::another`] share one core, one per vGPU, each with its own memory.

use crate::backend::{Backend, Gfid};
use crate::{GuestMemory, GuestMemoryFault, MmapContext, Rm, RmError, VgpuConfig};
use rm_abi::NvStatus;
use rm_client::{Buffer, BufferPool, Fd, Mapping, Node, Transport, TransportError};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

/// Guest address of the first byte of a [`CoreTransport`]'s memory.
pub const GUEST_BASE: u64 = 0x10_0000;
/// Size of a [`CoreTransport`]'s memory: room for some 500 [`rm_client::RmClient`]s (about
/// 32 KiB of scratch buffers each), as many as the sim's long fuzz run keeps open on one vGPU.
/// Pages no buffer touches are never made resident.
pub const GUEST_SIZE: usize = 16 << 20;

const EBADF: i32 = 9;
const EMFILE: i32 = 24;
const EINVAL: i32 = 22;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The guest's memory: bytes of this process that buffers point into and the core reads.
struct Region {
    base: NonNull<u8>,
    /// Allocated ranges (offset, length), sorted by offset.
    used: Mutex<Vec<(usize, usize)>>,
}

// SAFETY: the region's bytes are only reached through raw pointers, by buffers that own their
// ranges and by the core's copies, which the transport's lock orders.
unsafe impl Send for Region {}
// SAFETY: as for `Send`; the allocation list is behind a mutex.
unsafe impl Sync for Region {}

impl Region {
    fn new() -> Self {
        let bytes: Box<[u8]> = vec![0u8; GUEST_SIZE].into_boxed_slice();
        let base = NonNull::new(Box::into_raw(bytes).cast::<u8>()).expect("a box is not null");
        Self {
            base,
            used: Mutex::new(Vec::new()),
        }
    }

    /// The offset of `len` bytes at guest address `addr`, if they lie inside the region.
    fn offset(&self, addr: u64, len: usize) -> Result<usize, GuestMemoryFault> {
        let fault = GuestMemoryFault { addr, len };
        let off = usize::try_from(addr.checked_sub(GUEST_BASE).ok_or(fault)?).map_err(|_| fault)?;
        match off.checked_add(len) {
            Some(end) if end <= GUEST_SIZE => Ok(off),
            _ => Err(fault),
        }
    }

    /// First fit of `len` bytes aligned to `align`.
    fn alloc(&self, len: usize, align: usize) -> Option<usize> {
        let mut used = lock(&self.used);
        let mut at = 0usize;
        let mut index = used.len();
        for (i, &(off, n)) in used.iter().enumerate() {
            if at.checked_add(len)? <= off {
                index = i;
                break;
            }
            at = (off + n).checked_next_multiple_of(align)?;
        }
        if index == used.len() && at.checked_add(len)? > GUEST_SIZE {
            return None;
        }
        used.insert(index, (at, len));
        Some(at)
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.base.as_ptr(), GUEST_SIZE);
        // SAFETY: `base` is the box made in `new`, given back once.
        drop(unsafe { Box::from_raw(slice) });
    }
}

impl BufferPool for Region {
    fn release(&self, addr: u64, len: usize) {
        let off = (addr - GUEST_BASE) as usize;
        lock(&self.used).retain(|&r| r != (off, len));
    }
}

impl GuestMemory for &Region {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        let off = self.offset(addr, buf.len())?;
        // SAFETY: `off + buf.len()` is inside the region (checked); `buf` is another allocation.
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.as_ptr().add(off), buf.as_mut_ptr(), buf.len())
        };
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        let off = self.offset(addr, data.len())?;
        // SAFETY: as in `read`.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.as_ptr().add(off), data.len())
        };
        Ok(())
    }
}

/// The RM core, called in-process for one GFID, as a client's system-call surface.
pub struct CoreTransport<B: Backend> {
    rm: Arc<Mutex<Rm<B>>>,
    gfid: Gfid,
    region: Arc<Region>,
}

impl<B: Backend> std::fmt::Debug for CoreTransport<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreTransport")
            .field("gfid", &self.gfid)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> CoreTransport<B> {
    /// A transport into `rm` as the vGPU `gfid`, created with `config` if `rm` has none yet.
    pub fn new(mut rm: Rm<B>, gfid: Gfid, config: VgpuConfig) -> Result<Self, RmError> {
        match rm.create_vgpu(gfid, config) {
            Ok(()) | Err(RmError::GfidInUse(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            rm: Arc::new(Mutex::new(rm)),
            gfid,
            region: Arc::new(Region::new()),
        })
    }

    /// A transport into the same core as the vGPU `gfid` (a second VM, or a second process of
    /// this one when `gfid` is this transport's), with memory of its own; the vGPU is created
    /// with `config` if the core has none of that GFID yet.
    pub fn another(&self, gfid: Gfid, config: VgpuConfig) -> Result<Self, RmError> {
        match self.rm().create_vgpu(gfid, config) {
            Ok(()) | Err(RmError::GfidInUse(_)) => {}
            Err(e) => return Err(e),
        }
        Ok(Self {
            rm: self.rm.clone(),
            gfid,
            region: Arc::new(Region::new()),
        })
    }

    /// The core (to look at its objects and its backend between calls).
    pub fn rm(&self) -> MutexGuard<'_, Rm<B>> {
        lock(&self.rm)
    }

    /// The GFID the calls run in.
    pub fn gfid(&self) -> Gfid {
        self.gfid
    }

    /// `ioctl` of `fd` as the vGPU `gfid` (any, known to the core or not) with the argument at
    /// any guest address `arg` (inside this transport's memory or not): the calls a client
    /// library cannot make, for tests of the core's frontend. Returns what the core returns.
    pub fn ioctl_as(&self, gfid: Gfid, fd: Fd, request: u32, arg: u64) -> i32 {
        let mut mem = &*self.region;
        self.rm().ioctl(gfid, fd, request, arg, &mut mem)
    }

    /// Gives the core back, or this transport when others made by [`CoreTransport::another`]
    /// still share it.
    pub fn into_rm(self) -> Result<Rm<B>, Self> {
        match Arc::try_unwrap(self.rm) {
            Ok(m) => Ok(m.into_inner().unwrap_or_else(|p| p.into_inner())),
            Err(rm) => Err(Self {
                rm,
                gfid: self.gfid,
                region: self.region,
            }),
        }
    }
}

fn errno(call: &'static str, errno: i32) -> TransportError {
    TransportError::Errno { call, errno }
}

impl<B: Backend + Send> Transport for CoreTransport<B> {
    fn open(&self, node: Node) -> Result<Fd, TransportError> {
        let node = match node {
            Node::Ctl => crate::Node::Ctl,
            Node::Device(minor) => crate::Node::Device(minor),
        };
        self.rm()
            .open(self.gfid, node)
            .map_err(|_| errno("open", EMFILE))
    }

    fn close(&self, fd: Fd) -> Result<(), TransportError> {
        self.rm()
            .close(self.gfid, fd)
            .map_err(|_| errno("close", EBADF))
    }

    /// A wait the core asks to be made again ([`Rm::take_retry`]) is retried here with the
    /// core unlocked, as a vGPU device retries it.
    fn ioctl(&self, fd: Fd, request: u32, arg: &Buffer) -> Result<i32, TransportError> {
        let mut mem = &*self.region;
        loop {
            let mut rm = self.rm();
            let ret = rm.ioctl(self.gfid, fd, request, arg.addr(), &mut mem);
            if !rm.take_retry() {
                return Ok(ret);
            }
            drop(rm);
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    }

    fn buffer(&self, len: usize, align: usize) -> Result<Buffer, TransportError> {
        let off = self
            .region
            .alloc(len, align.max(1))
            .ok_or(TransportError::OutOfMemory(len))?;
        // SAFETY: `off..off + len` is inside the region and now allocated to this buffer only;
        // the pool (the region) stays mapped while the buffer holds it.
        let ptr = unsafe { NonNull::new_unchecked(self.region.base.as_ptr().add(off)) };
        let pool: Arc<dyn BufferPool> = self.region.clone();
        // SAFETY: as above.
        Ok(unsafe { Buffer::new(ptr, len, GUEST_BASE + off as u64, pool) })
    }

    fn os_descriptors(&self) -> bool {
        false
    }

    fn map(&self, fd: Fd, length: u64) -> Result<Box<dyn Mapping + '_>, TransportError> {
        let ctx = self
            .rm()
            .mmap_context(self.gfid, fd)
            .ok_or(errno("mmap", EINVAL))?;
        if length > ctx.length {
            return Err(errno("mmap", EINVAL));
        }
        Ok(Box::new(CoreMapping {
            t: self,
            ctx,
            length,
        }))
    }
}

/// A mapping of a memory object through the core's CPU access.
struct CoreMapping<'t, B: Backend> {
    t: &'t CoreTransport<B>,
    ctx: MmapContext,
    length: u64,
}

impl<B: Backend> CoreMapping<'_, B> {
    fn check(&self, offset: u64, len: usize) -> Result<u64, TransportError> {
        match offset.checked_add(len as u64) {
            Some(end) if end <= self.length => Ok(self.ctx.offset + offset),
            _ => Err(TransportError::OutOfBounds {
                what: "mapping",
                offset,
                len,
                size: self.length,
            }),
        }
    }

    fn done(status: NvStatus, call: &'static str) -> Result<(), TransportError> {
        match status {
            NvStatus::OK => Ok(()),
            _ => Err(errno(call, EINVAL)),
        }
    }
}

impl<B: Backend + Send> Mapping for CoreMapping<'_, B> {
    fn len(&self) -> u64 {
        self.length
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransportError> {
        let at = self.check(offset, buf.len())?;
        let (gfid, client, memory) = (self.t.gfid, self.ctx.client, self.ctx.memory);
        let s = self.t.rm().read_memory(gfid, client, memory, at, buf);
        Self::done(s, "mapping read")
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), TransportError> {
        let at = self.check(offset, data.len())?;
        let (gfid, client, memory) = (self.t.gfid, self.ctx.client, self.ctx.memory);
        let s = self.t.rm().write_memory(gfid, client, memory, at, data);
        Self::done(s, "mapping write")
    }
}
