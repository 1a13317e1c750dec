//! The RM core: runs one guest's RM escapes in that guest's namespace (its GFID).
//!
//! The call path mirrors the NVIDIA driver: [`Rm::ioctl`] is `nvidia_ioctl` (the [`IoctlFrame`]:
//! request decoding, XFER unwrapping, copy in/out through [`GuestMemory`]; frontend escapes),
//! `dispatch` is `rm_ioctl`/`RmIoctl` (size and device-node checks, the escape switch), and the
//! escape handlers validate against the per-GFID object tree, translate handles and call the
//! [`Backend`].

pub mod backend;
pub mod controls;
pub mod errno;
pub mod fd;
pub mod guest_memory;
pub mod handles;
pub mod ioctl_frame;
pub mod objects;
#[cfg(feature = "testing")]
pub mod testing;
pub mod vgpu;

mod alloc;
mod dispatch;
mod free;
mod frontend;
mod mapping;

pub use errno::Errno;
pub use fd::{FdId, MmapContext, Node};
pub use guest_memory::{GuestMemory, GuestMemoryFault, VecGuestMemory};
pub use ioctl_frame::IoctlFrame;
pub use vgpu::VgpuConfig;

use crate::backend::{Backend, Gfid, GpuInfo};
use objects::ObjectKind;
use rm_abi::{Handle, NvStatus};
use std::collections::BTreeMap;
use thiserror::Error;
use vgpu::Vgpu;

/// Misuse of the core's host-side API (not guest errors, which are errnos and `NV_ERR_*`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RmError {
    /// The GFID is outside 1..=63.
    #[error("GFID {0} is outside 1..=63")]
    BadGfid(Gfid),
    /// A vGPU with this GFID already exists.
    #[error("GFID {0} already has a vGPU")]
    GfidInUse(Gfid),
    /// No vGPU with this GFID.
    #[error("no vGPU with GFID {0}")]
    NoSuchVgpu(Gfid),
    /// The guest fd is not open.
    #[error("GFID {0} has no fd {1}")]
    NoSuchFd(Gfid, FdId),
    /// The guest already holds the most fds allowed.
    #[error("GFID {0} has too many open fds")]
    TooManyFds(Gfid),
    /// The device minor names no GPU of this vGPU (it has one: minor 0).
    #[error("GFID {0} has no GPU at minor {1}")]
    NoSuchDevice(Gfid, u32),
}

/// The RM core over a backend `B`.
pub struct Rm<B: Backend> {
    backend: B,
    gpu: GpuInfo,
    vgpus: BTreeMap<Gfid, Vgpu>,
    /// Set when the last ioctl is a wait to be made again (see [`Rm::take_retry`]).
    retry: bool,
    /// Most RM objects all vGPUs together may hold (see [`Rm::set_max_objects`]).
    max_objects: usize,
}

/// [`Rm::set_max_objects`] by default: four vGPUs' worth of
/// [`MAX_OBJECTS_PER_VGPU`](vgpu::MAX_OBJECTS_PER_VGPU), about 128 MiB of host memory at the
/// half kilobyte an object costs, where 63 vGPUs could otherwise hold 4 million.
pub const MAX_OBJECTS_TOTAL: usize = 1 << 18;

impl<B: Backend> std::fmt::Debug for Rm<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rm").finish_non_exhaustive()
    }
}

impl<B: Backend> Rm<B> {
    /// The backend, the GPU's identity and the vGPU of `gfid`, borrowed together so a call can
    /// change the vGPU's objects and the backend at once; `None` for an unknown GFID.
    fn parts(&mut self, gfid: Gfid) -> Option<(&mut B, &GpuInfo, &mut Vgpu)> {
        let Rm {
            backend,
            gpu,
            vgpus,
            ..
        } = self;
        Some((backend, gpu, vgpus.get_mut(&gfid)?))
    }

    /// A core driving `backend`, with no vGPUs yet.
    pub fn new(backend: B) -> Self {
        let gpu = backend.gpu_info();
        Self {
            backend,
            gpu,
            vgpus: BTreeMap::new(),
            retry: false,
            max_objects: MAX_OBJECTS_TOTAL,
        }
    }

    /// Bounds the RM objects (clients included) all vGPUs together may hold: past it any
    /// guest's allocation gets `NV_ERR_INSUFFICIENT_RESOURCES`, whatever its own
    /// [`VgpuConfig::max_objects`] leaves, so a host of many vGPUs cannot be made to hold
    /// every vGPU's maximum at once.
    pub fn set_max_objects(&mut self, max: usize) {
        self.max_objects = max;
    }

    /// Whether one more object fits under [`Rm::set_max_objects`].
    fn has_room(&self) -> bool {
        self.total_objects() < self.max_objects
    }

    /// Whether the ioctl just run is an `RM_IDLE_CHANNELS` wait on a GPU that runs on the
    /// host's clock, not finished yet: the caller makes the same ioctl again after releasing
    /// the core (and letting host time pass), until this says false. Waiting this way holds no
    /// lock, so other guests are served meanwhile; the wait ends in host time at the call's
    /// timeout, at most [`controls::MAX_IDLE_WAIT`]. Reading it clears it.
    pub fn take_retry(&mut self) -> bool {
        std::mem::take(&mut self.retry)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutable (e.g. to advance the sim's clock).
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// What the backend reported about the GPU.
    pub fn gpu_info(&self) -> &GpuInfo {
        &self.gpu
    }

    /// Creates the vGPU `gfid` (1..=63).
    pub fn create_vgpu(&mut self, gfid: Gfid, config: VgpuConfig) -> Result<(), RmError> {
        if gfid == 0 || gfid > handles::MAX_GFID {
            return Err(RmError::BadGfid(gfid));
        }
        if self.vgpus.contains_key(&gfid) {
            return Err(RmError::GfidInUse(gfid));
        }
        self.backend.create_vgpu(gfid, &config);
        self.vgpus.insert(gfid, Vgpu::new(gfid, config));
        Ok(())
    }

    /// Tears down the vGPU `gfid`: closes its fds and frees every object it owned.
    pub fn destroy_vgpu(&mut self, gfid: Gfid) -> Result<(), RmError> {
        let vgpu = self.vgpus.get(&gfid).ok_or(RmError::NoSuchVgpu(gfid))?;
        for fd in vgpu.fds.ids() {
            self.close(gfid, fd)?;
        }
        let leftover: Vec<Handle> = self.vgpus[&gfid].clients.keys().copied().collect();
        for c in leftover {
            self.free_client(gfid, c);
        }
        self.vgpus.remove(&gfid);
        self.backend.destroy_vgpu(gfid);
        Ok(())
    }

    /// Opens a guest fd on `node` (what the guest's `open("/dev/nvidia...")` becomes).
    pub fn open(&mut self, gfid: Gfid, node: Node) -> Result<FdId, RmError> {
        let vgpu = self.vgpus.get_mut(&gfid).ok_or(RmError::NoSuchVgpu(gfid))?;
        if let Node::Device(minor) = node {
            if minor != 0 {
                return Err(RmError::NoSuchDevice(gfid, minor));
            }
        }
        vgpu.fds.open(node).ok_or(RmError::TooManyFds(gfid))
    }

    /// Closes a guest fd: frees the clients allocated through it and drops its mapping context.
    pub fn close(&mut self, gfid: Gfid, fd: FdId) -> Result<(), RmError> {
        let vgpu = self.vgpus.get_mut(&gfid).ok_or(RmError::NoSuchVgpu(gfid))?;
        vgpu.fds.close(fd).ok_or(RmError::NoSuchFd(gfid, fd))?;
        for (_, st) in vgpu.fds.iter_mut() {
            if st.registered_ctl == Some(fd) {
                st.registered_ctl = None;
            }
        }
        let owned: Vec<Handle> = vgpu
            .clients
            .values()
            .filter(|c| c.fd == fd)
            .map(|c| c.guest)
            .collect();
        for c in owned {
            self.free_client(gfid, c);
        }
        Ok(())
    }

    /// Runs one ioctl of a guest: `request` is the full request number, `arg` the guest address
    /// of its argument struct. Returns 0 or `-errno`, as `ioctl(2)` would; RM errors are in the
    /// struct's status field with 0 returned.
    pub fn ioctl(
        &mut self,
        gfid: Gfid,
        fd: FdId,
        request: u32,
        arg: u64,
        mem: &mut dyn GuestMemory,
    ) -> i32 {
        match self.ioctl_result(gfid, fd, request, arg, mem) {
            Ok(()) => 0,
            Err(e) => e.ret(),
        }
    }

    /// [`Rm::ioctl`] with the errno as a typed error.
    pub fn ioctl_result(
        &mut self,
        gfid: Gfid,
        fd: FdId,
        request: u32,
        arg: u64,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), Errno> {
        dispatch::nvidia_ioctl(self, gfid, fd, request, arg, mem)
    }

    /// A doorbell write (the usermode page's NOTIFY_CHANNEL_PENDING) from the guest of `gfid`.
    /// Tokens of other GFIDs' channels are refused with `NV_ERR_INVALID_CHANNEL`.
    pub fn doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus {
        match self.vgpus.get(&gfid) {
            Some(v) if v.tokens.contains_key(&token) => self.backend.doorbell(gfid, token),
            _ => NvStatus::ERR_INVALID_CHANNEL,
        }
    }

    /// The mapping context an `RM_MAP_MEMORY` attached to `fd`, for the device model to back
    /// the guest's `mmap` of that fd.
    pub fn mmap_context(&self, gfid: Gfid, fd: FdId) -> Option<MmapContext> {
        self.vgpus.get(&gfid)?.fds.get(fd)?.mmap
    }

    /// CPU read of a memory object of the guest (guest client and memory handles), through a
    /// mapping context: `offset` is relative to the object.
    pub fn read_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        match self.memory_target(gfid, client, memory, offset, buf.len()) {
            Ok(host) => self.backend.read_memory(gfid, host, memory, offset, buf),
            Err(s) => s,
        }
    }

    /// CPU write of a memory object of the guest.
    pub fn write_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        match self.memory_target(gfid, client, memory, offset, data.len()) {
            Ok(host) => self.backend.write_memory(gfid, host, memory, offset, data),
            Err(s) => s,
        }
    }

    fn memory_target(
        &self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        len: usize,
    ) -> Result<Handle, NvStatus> {
        let c = self
            .vgpus
            .get(&gfid)
            .and_then(|v| v.clients.get(&client))
            .ok_or(NvStatus::ERR_INVALID_CLIENT)?;
        let obj = c.get(memory).ok_or(NvStatus::ERR_INVALID_OBJECT_HANDLE)?;
        let ObjectKind::Memory(m) = &obj.kind else {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        };
        let end = offset
            .checked_add(len as u64)
            .ok_or(NvStatus::ERR_INVALID_OFFSET)?;
        if end > m.size {
            return Err(NvStatus::ERR_INVALID_OFFSET);
        }
        Ok(c.host)
    }

    /// Objects the vGPU `gfid` holds (clients included); 0 for an unknown GFID.
    pub fn object_count(&self, gfid: Gfid) -> usize {
        self.vgpus.get(&gfid).map_or(0, Vgpu::object_count)
    }

    /// Objects all vGPUs hold.
    pub fn total_objects(&self) -> usize {
        self.vgpus.values().map(Vgpu::object_count).sum()
    }

    /// Video memory the vGPU `gfid` has allocated.
    pub fn fb_used(&self, gfid: Gfid) -> u64 {
        self.vgpus.get(&gfid).map_or(0, |v| v.fb_used)
    }

    /// The host client handle of a guest client of `gfid` (for the host daemon and tests).
    pub fn host_client(&self, gfid: Gfid, guest_client: Handle) -> Option<Handle> {
        Some(self.vgpus.get(&gfid)?.clients.get(&guest_client)?.host)
    }

    /// The channel groups of `gfid`: (guest client, TSG handle, its mirrored state).
    pub fn channel_groups(
        &self,
        gfid: Gfid,
    ) -> Vec<(Handle, Handle, objects::channel_group::ChannelGroup)> {
        let Some(v) = self.vgpus.get(&gfid) else {
            return Vec::new();
        };
        v.clients
            .values()
            .flat_map(|c| {
                c.objects().filter_map(move |(h, o)| match &o.kind {
                    ObjectKind::ChannelGroup(g) => Some((c.guest, *h, g.clone())),
                    _ => None,
                })
            })
            .collect()
    }
}
