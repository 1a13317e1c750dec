//! GPU backends that execute validated, translated RM calls.
//!
//! [`Backend`] is the boundary between the RM core and a GPU: the core has already decoded the
//! escape, checked sizes and device-node rules, validated the object tree (parents, classes,
//! ownership), sanitised the fields a guest must not set and translated every guest handle into
//! a host handle. A backend therefore sees only well-formed calls at the RM API level, with host
//! handles, and never a guest pointer.

use std::sync::Arc;

use crate::vgpu::VgpuConfig;
use rm_abi::nvos::{Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters};
use rm_abi::{Handle, NvStatus};

/// A vGPU's function id. 0 is the physical function (the host itself); guests use 1..=63.
pub type Gfid = u32;

/// What a backend reports about the GPU behind it. The core answers identity controls (name,
/// UUID, class and engine lists, PCI and architecture info) from this, and framebuffer controls
/// from the vGPU's quota, so every backend reports the same things the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuInfo {
    /// Marketing name, e.g. "NVIDIA H200".
    pub name: String,
    /// The GPU UUID (16 bytes; printed as `GPU-xxxxxxxx-xxxx-...`).
    pub uuid: [u8; 16],
    /// PCI vendor id (0x10de).
    pub pci_vendor_id: u16,
    /// PCI device id.
    pub pci_device_id: u16,
    /// PCI subsystem vendor id.
    pub pci_subsystem_vendor_id: u16,
    /// PCI subsystem id.
    pub pci_subsystem_id: u16,
    /// `NV2080_CTRL_MC_ARCH_INFO_ARCHITECTURE_*` (GH100: 0x180).
    pub architecture: u32,
    /// `NV2080_CTRL_MC_ARCH_INFO_IMPLEMENTATION_*` (GH100: 0x0).
    pub implementation: u32,
    /// Total framebuffer in bytes (the physical GPU's; each vGPU gets a quota of it).
    pub fb_bytes: u64,
    /// Host memory the backend may hold for the contents of GPU memory objects, over all
    /// vGPUs: the sim keeps each written page in host RAM; `u64::MAX` where GPU memory costs
    /// the host nothing. vGPU types divide it as they divide the framebuffer.
    pub host_memory_bytes: u64,
    /// Class ids the GPU can allocate (reported by `NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2`).
    pub classes: Vec<u32>,
    /// `NV2080_ENGINE_TYPE_*` values present (reported by `NV2080_CTRL_CMD_GPU_GET_ENGINES_V2`).
    pub engines: Vec<u32>,
    /// The copy engine (`NV2080_ENGINE_TYPE_COPY*`) that runs a copy object on a GR channel
    /// (the GR copy engine, GRCE). The H200's driver answers COPY1 for CUDA's.
    pub gr_copy_engine: u32,
    /// GR engine 0 as the GR controls describe it.
    pub gr: GrConfig,
}

/// The shape of GR engine 0 (graphics and compute): what `GR_GET_GPC_MASK`, `GR_GET_TPC_MASK`,
/// `GR_GET_CAPS_V2` and `GR_GET_INFO` answer. A time-sliced vGPU sees the whole engine, as on
/// NVIDIA's time-sliced vGPU types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrConfig {
    /// TPC mask of each GPC present, by GPC id (the GPC mask has a bit per entry).
    pub tpc_masks: Vec<u32>,
    /// The `capsTbl` bytes of `GR_GET_CAPS_V2`.
    pub caps: [u8; 23],
    /// `GR_GET_INFO` values by `NV2080_CTRL_GR_INFO_INDEX_*`; an index absent here is
    /// answered `NV_ERR_NOT_SUPPORTED` (an empty table: the whole control is).
    pub info: Vec<(u32, u32)>,
}

impl GrConfig {
    /// The GPC mask: one bit per GPC of [`GrConfig::tpc_masks`].
    pub fn gpc_mask(&self) -> u32 {
        (0..self.tpc_masks.len().min(32)).fold(0, |m, i| m | 1 << i)
    }
}

/// Memory a guest shares with the host as a whole (the vGPU's window): the source of
/// [`ExternalPages`]. Implementations do their own bounds checks and must stay valid for as long
/// as any `Arc` of them lives.
pub trait PageSource: Send + Sync {
    /// Size in bytes; valid offsets are `0..size`.
    fn size(&self) -> u64;
    /// Copies the bytes at `offset` into `buf`; false (and nothing copied) if outside.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool;
    /// Copies `data` to `offset`; false (and nothing written) if outside.
    fn write_at(&self, offset: u64, data: &[u8]) -> bool;
    /// Where offset 0 is mapped in this process, for a backend that hands the pages to a
    /// driver by address (the real driver pins an OS descriptor's pages from a user VA). None
    /// (the default) where the memory has no stable host mapping.
    fn host_address(&self) -> Option<*mut u8> {
        None
    }
}

/// A range of guest-shared memory that a backend uses as a memory object's storage (what
/// `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` wraps). Every access is checked against the range, so a
/// backend can reach these pages and no others; cheap to clone, `Send`.
#[derive(Clone)]
pub struct ExternalPages {
    source: Arc<dyn PageSource>,
    base: u64,
    len: u64,
}

impl std::fmt::Debug for ExternalPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalPages")
            .field("base", &self.base)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl ExternalPages {
    /// `len` bytes of `source` from `base`; `None` unless the range lies inside the source.
    pub fn new(source: Arc<dyn PageSource>, base: u64, len: u64) -> Option<Self> {
        let end = base.checked_add(len)?;
        (end <= source.size()).then_some(Self { source, base, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the range is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset of the range in its source (the guest's address of the first byte).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The range's first byte in this process, where the source has a stable mapping
    /// ([`PageSource::host_address`]); valid for `len` bytes while any clone of `self` lives.
    pub fn host_address(&self) -> Option<*mut u8> {
        let base = usize::try_from(self.base).ok()?;
        // `base + len <= size` was checked at construction, so this stays inside the mapping.
        self.source.host_address().map(|p| p.wrapping_add(base))
    }

    fn inside(&self, offset: u64, n: usize) -> Option<u64> {
        let end = offset.checked_add(n as u64)?;
        (end <= self.len).then_some(self.base + offset)
    }

    /// Copies the bytes at `offset` of the range into `buf`; false if outside the range.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        self.inside(offset, buf.len())
            .is_some_and(|at| self.source.read_at(at, buf))
    }

    /// Copies `data` to `offset` of the range; false if outside the range.
    pub fn write(&self, offset: u64, data: &[u8]) -> bool {
        self.inside(offset, data.len())
            .is_some_and(|at| self.source.write_at(at, data))
    }
}

/// One object allocation, with host handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocRequest {
    /// The vGPU the object belongs to (a TSG's runlist header carries it).
    pub gfid: Gfid,
    /// Host client handle.
    pub client: Handle,
    /// Host handle of the parent (equal to `client` for a device; 0 for a client itself).
    pub parent: Handle,
    /// Host handle of the new object (for a client: the client handle itself).
    pub object: Handle,
    /// Class id.
    pub class: u32,
}

/// A GPU that executes RM calls: the `sim` model now, the host NVIDIA driver (`nvidia`) later.
///
/// Conventions for every call:
/// * Handles are host handles. Client handles are unique across all GFIDs; object handles are
///   unique within their client. The core never reuses a handle while the backend still holds it.
/// * `params` slices are exactly the size of the C struct named for the class or command (see
///   [`rm_abi`]); the backend reads its inputs there and writes its outputs in place. Handle
///   fields inside them are already host handles. Pointer (PTR) fields are zero.
/// * The return value is what RM would write into the escape's `status` field.
/// * The backend never needs to free subtrees: the core frees children before their parent and
///   calls [`Backend::free`] once per object, clients last.
pub trait Backend {
    /// Describes the GPU. Called once when the core is created.
    fn gpu_info(&self) -> GpuInfo;

    /// Told when the core creates the vGPU `gfid`, before any of its calls, so the backend can
    /// bound what it holds for it (the sim: [`VgpuConfig::host_memory_quota`]). The default
    /// keeps nothing.
    fn create_vgpu(&mut self, gfid: Gfid, config: &VgpuConfig) {
        let _ = (gfid, config);
    }

    /// Told when the core has freed every object of the vGPU `gfid` and forgotten it.
    fn destroy_vgpu(&mut self, gfid: Gfid) {
        let _ = gfid;
    }

    /// Allocates one object. `params` holds the class's alloc struct (`abi::alloc_params`),
    /// zero-filled when the guest passed none, or is empty for classes without params:
    /// * `NV01_ROOT_CLIENT` (0x41): `client == object`, `parent == 0`, params = `NvRootAllocParams`.
    /// * `NV01_DEVICE_0` (0x80, parent = client): `Nv0080AllocParameters` (handle fields zeroed).
    /// * `NV20_SUBDEVICE_0` (0x2080, parent = device): `Nv2080AllocParameters`.
    /// * `FERMI_VASPACE_A` (0x90F1, parent = device): `NvVaspaceAllocationParameters`.
    /// * `KEPLER_CHANNEL_GROUP_A` (0xA06C, parent = device): `NvChannelGroupAllocationParameters`
    ///   with `hVASpace` a VA space of the same client (or 0) and `bIsCallingContextVgpuPlugin` 0.
    /// * `FERMI_CONTEXT_SHARE_A` (0x9067, parent = TSG): `NvCtxshareAllocationParameters`; write
    ///   `subctxId`.
    /// * `HOPPER_CHANNEL_GPFIFO_A` (0xC86F, parent = TSG): `NvChannelAllocParams` with
    ///   `hVASpace` 0 and `hContextShare`/`hUserdMemory[0]`/`hObjectError` naming objects of the same
    ///   client (or 0), privileged and vGPU-plugin flags cleared, kernel-only fields zeroed; write
    ///   `cid`. `gpFifoOffset` is a GPU VA in the channel's VA space.
    /// * `HOPPER_COMPUTE_A` (0xCBC0) / `HOPPER_DMA_COPY_A` (0xC8B5) (parent = channel):
    ///   `NvGrAllocationParameters` / `Nvb0b5AllocationParameters`.
    /// * `NV01_MEMORY_SYSTEM` (0x3E) / `NV01_MEMORY_LOCAL_USER` (0x40) (parent = device):
    ///   `NvMemoryAllocationParams`; `size` is nonzero and within the vGPU's framebuffer quota
    ///   for video memory. Write `limit` (size - 1) and `offset`.
    /// * `HOPPER_USERMODE_A` (0xC661, parent = subdevice): `NvHopperUsermodeAParams`.
    /// * `NV01_EVENT_OS_EVENT` (0x79): `Nv0005AllocParameters`, handles translated.
    fn alloc(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus;

    /// Allocates an `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` (0x71, parent = device) whose storage is
    /// `pages`, guest memory the GPU then reads and writes in place (mapped with
    /// `map_memory_dma` like any memory object). Backends that cannot use guest pages keep the
    /// default, `NV_ERR_NOT_SUPPORTED`.
    fn alloc_os_descriptor(&mut self, req: &AllocRequest, pages: ExternalPages) -> NvStatus {
        let _ = (req, pages);
        NvStatus::ERR_NOT_SUPPORTED
    }

    /// Frees exactly one object (its children are already freed). For a client, `object == client`.
    fn free(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus;

    /// Runs a control on `object`. The core forwards only the controls its table marks
    /// "backend" (see `core::controls`): the NVA06C TSG controls (GPFIFO_SCHEDULE, BIND,
    /// SET/GET_TIMESLICE, PREEMPT, GET_INFO, SET_INTERLEAVE_LEVEL), NVA06F_GPFIFO_SCHEDULE on a
    /// channel, NVC36F_GET_WORK_SUBMIT_TOKEN on a channel (the token is `runlist << 16 | chid`),
    /// and NV2080_FIFO_DISABLE_CHANNELS on a subdevice, whose `hClientList`/`hChannelList` hold
    /// host handles of the caller's own channels only and whose `pRunlistPreemptEvent` is 0.
    fn control(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus;

    /// Creates a CPU mapping of a memory object (or of a usermode object's doorbell page).
    /// `hClient`/`hDevice`/`hMemory` are host handles; write `pLinearAddress` (an opaque cookie
    /// the core hands back in `unmap_memory`, unique per live mapping).
    fn map_memory(&mut self, gfid: Gfid, params: &mut Nvos33Parameters) -> NvStatus;

    /// Removes a CPU mapping made by `map_memory`.
    fn unmap_memory(&mut self, gfid: Gfid, params: &mut Nvos34Parameters) -> NvStatus;

    /// Maps a memory object into a GPU VA space. `hDma` is a `FERMI_VASPACE_A` of the same
    /// client. Write `dmaOffset` (the GPU VA) unless `NVOS46_FLAGS_DMA_OFFSET_FIXED` is set.
    fn map_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos46Parameters) -> NvStatus;

    /// Removes a GPU VA mapping made by `map_memory_dma`.
    fn unmap_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos47Parameters) -> NvStatus;

    /// CPU read of a memory object's bytes at `offset` (what a guest reads through a mapping).
    fn read_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus;

    /// CPU write of a memory object's bytes at `offset` (what a guest writes through a mapping).
    fn write_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus;

    /// A doorbell write of `token` (the usermode page's NOTIFY_CHANNEL_PENDING). The core has
    /// checked that the token belongs to a live channel of `gfid`.
    fn doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus;

    /// Waits until `channel` has no pending work (GP_GET == GP_PUT, engine idle), at most
    /// `timeout_us` (0: the backend's default); `NV_ERR_TIMEOUT` when it does not idle in time.
    fn idle_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channel: Handle,
        timeout_us: u32,
    ) -> NvStatus;
    /// Waits until every one of `channels` (of one client) is idle, all within one
    /// `timeout_us` (0: the backend's default). The default waits for each in turn.
    ///
    /// A backend whose GPU runs on the host's clock must not wait under the caller's locks:
    /// it answers `NV_ERR_BUSY_RETRY` at once when the channels are not idle yet, and the core
    /// has the call made again later with its lock released, until the channels idle or the
    /// wait's deadline in host time passes (see [`crate::Rm::take_retry`]).
    fn idle_channels(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channels: &[Handle],
        timeout_us: u32,
    ) -> NvStatus {
        for &ch in channels {
            let s = self.idle_channel(gfid, client, ch, timeout_us);
            if !s.is_ok() {
                return s;
            }
        }
        NvStatus::OK
    }
}
