//! [`SimBackend`]: the [`Backend`] trait on top of [`SimGpu`].
//!
//! It keeps a table from host handles to sim objects (TSGs, channels, VA spaces, memory) and
//! translates each RM call into FIFO-layer and hardware operations. The core has validated the
//! object tree and translated handles; the backend still re-checks everything it dereferences
//! (object kinds, owners' GFID, sizes, offsets), so a core bug cannot reach outside a client.
//!
//! This module holds the backend's state (the handle table, CPU mappings, channel owners), the
//! lookups every escape shares, and the [`Backend`] impl, which hands each escape to the file of
//! its kind:
//! * `alloc`: allocations by class (root client, device, subdevice, VA space, TSG, context
//!   share, channel, engine objects, memory, OS descriptors);
//! * `free`: frees, including a whole client's;
//! * `tsg_control`, `channel_control`, `subdevice_control`: controls, by the class they name;
//! * `mapping`: CPU mappings and GPU (DMA) mappings;
//! * `cpu_access`: CPU reads and writes of memory objects and of channels' USERD;
//! * `work`: doorbells and idle waits.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::channel::ChannelRef;
use super::engine::{NV2080_ENGINE_TYPE_COPY0, NV2080_ENGINE_TYPE_GR0};
use super::gpu::{SimConfig, SimError, SimGpu, H200_GR_CAPS, H200_GR_INFO, H200_TPC_MASKS};
use super::memory::{Aperture, MemoryError, MemoryId};
use super::tsg::TsgRef;
use super::vaspace::{VaError, VaSpaceId};
use rm_abi::class;
use rm_abi::ctrl::{self, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS};
use rm_abi::nvos::{Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters};
use rm_abi::{Handle, NvStatus};
use rm_core::backend::{AllocRequest, Backend, ExternalPages, Gfid, GpuInfo, GrConfig};
use rm_core::VgpuConfig;

mod alloc;
mod channel_control;
mod cpu_access;
#[cfg(test)]
mod fixtures;
mod free;
mod mapping;
mod subdevice_control;
#[cfg(test)]
mod tests;
mod tsg_control;
mod work;

/// GPU name the sim reports: an H200's interface, honestly labelled.
pub const SIM_GPU_NAME: &str = "NVIDIA H200 (sim)";
/// PCI device id of the H200 (GH100) whose interface the sim models.
pub const H200_PCI_DEVICE_ID: u16 = 0x2335;
/// `NV2080_CTRL_MC_ARCH_INFO_ARCHITECTURE_GH100`.
pub const ARCHITECTURE_GH100: u32 = 0x180;
/// Default timeout for waits the caller leaves open (PREEMPT without a manual timeout,
/// `idle_channel(0)`), in µs of GPU time.
pub const DEFAULT_WAIT_US: u64 = 100_000;
/// First GPU VA handed out by `map_memory_dma` without a fixed offset.
pub const DMA_VA_BASE: u64 = 0x1_0000_0000;
/// Alignment of backend-chosen GPU VAs (the big-page size).
pub const DMA_VA_ALIGN: u64 = 2 << 20;

/// What a host handle names inside the sim.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SimObject {
    Client,
    Device,
    Subdevice,
    VaSpace {
        id: VaSpaceId,
        next_va: u64,
    },
    Tsg {
        tsg: TsgRef,
        vaspace: Option<Handle>,
        next_subctx: u32,
    },
    ContextShare {
        vaspace: Option<Handle>,
    },
    Channel {
        ch: ChannelRef,
        internal_userd: Option<MemoryId>,
    },
    EngineObject,
    Memory {
        id: MemoryId,
    },
    Usermode,
    Event,
}

/// A live CPU mapping made by `map_memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuMapping {
    gfid: Gfid,
    client: Handle,
    object: Handle,
}

/// The sim GPU behind the [`Backend`] trait.
#[derive(Debug)]
pub struct SimBackend {
    gpu: Arc<Mutex<SimGpu>>,
    info: GpuInfo,
    objects: BTreeMap<(Handle, Handle), SimObject>,
    owners: BTreeMap<Handle, Gfid>,
    cpu_maps: BTreeMap<u64, CpuMapping>,
    next_cookie: u64,
    /// Owning client of each live channel, for doorbell checks.
    channel_clients: BTreeMap<ChannelRef, Handle>,
}

fn status_of(e: &SimError) -> NvStatus {
    match e {
        SimError::Memory(
            MemoryError::OutOfMemory { .. }
            | MemoryError::HostMemoryFull { .. }
            | MemoryError::OwnerHostMemoryFull { .. },
        ) => NvStatus::ERR_NO_MEMORY,
        SimError::Memory(MemoryError::OutOfBounds { .. }) => NvStatus::ERR_INVALID_OFFSET,
        SimError::Memory(_) => NvStatus::ERR_INVALID_ARGUMENT,
        SimError::Va(VaError::Overlap { .. }) => NvStatus::ERR_INVALID_OFFSET,
        SimError::Va(VaError::NotMapped(_)) => NvStatus::ERR_INVALID_OFFSET,
        SimError::Va(_) => NvStatus::ERR_INVALID_ARGUMENT,
        SimError::OutOfChannelIds(_) | SimError::OutOfTsgIds(_) => NvStatus::ERR_NO_FREE_FIFOS,
        SimError::TsgFull(_) => NvStatus::ERR_INSUFFICIENT_RESOURCES,
        SimError::TsgNotEmpty(_) => NvStatus::ERR_STATE_IN_USE,
        SimError::PreemptTimeout(_) => NvStatus::ERR_TIMEOUT,
        SimError::NoSuchChannel(_) => NvStatus::ERR_INVALID_CHANNEL,
        SimError::NoSuchTsg(_) | SimError::NoSuchVaSpace(_) => NvStatus::ERR_INVALID_OBJECT,
        _ => NvStatus::ERR_INVALID_ARGUMENT,
    }
}

fn st(r: Result<(), SimError>) -> NvStatus {
    match r {
        Ok(()) => NvStatus::OK,
        Err(e) => status_of(&e),
    }
}

impl SimBackend {
    /// A backend over a new sim GPU built from `config`.
    pub fn new(config: SimConfig) -> Self {
        let gpu = SimGpu::new(config);
        let engines: Vec<u32> = gpu.engines().iter().map(|e| e.nv2080_engine_type).collect();
        let fb_bytes = gpu.memory().available(Aperture::Vidmem);
        let info = GpuInfo {
            name: SIM_GPU_NAME.to_string(),
            // A fixed, recognisable UUID: "GPU-5e0051a1-..." ("sim" GPU), version nibble 4.
            uuid: [
                0x5E, 0x00, 0x51, 0xA1, 0x48, 0x20, 0x40, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x00, 0x01,
            ],
            pci_vendor_id: 0x10DE,
            pci_device_id: H200_PCI_DEVICE_ID,
            pci_subsystem_vendor_id: 0x10DE,
            pci_subsystem_id: 0,
            architecture: ARCHITECTURE_GH100,
            implementation: 0,
            fb_bytes,
            host_memory_bytes: gpu.memory().resident_limit(),
            // The H200's answer (see `GpuInfo::gr_copy_engine`); the sim runs a GR channel's
            // copy methods on the GR runlist, as a GRCE does.
            gr_copy_engine: NV2080_ENGINE_TYPE_COPY0 + 1,
            gr: GrConfig {
                tpc_masks: H200_TPC_MASKS.to_vec(),
                caps: H200_GR_CAPS,
                info: (0..).zip(H200_GR_INFO).collect(),
            },
            classes: vec![
                class::NV01_ROOT,
                class::NV01_ROOT_NON_PRIV,
                class::NV01_ROOT_CLIENT,
                class::NV01_EVENT,
                class::NV01_EVENT_OS_EVENT,
                class::NV01_MEMORY_SYSTEM,
                class::NV01_MEMORY_LOCAL_USER,
                class::NV01_DEVICE_0,
                class::NV20_SUBDEVICE_0,
                class::FERMI_CONTEXT_SHARE_A,
                class::FERMI_VASPACE_A,
                class::KEPLER_CHANNEL_GROUP_A,
                rm_abi::methods::HOPPER_USERMODE_A,
                rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A,
                rm_abi::methods::HOPPER_DMA_COPY_A,
                rm_abi::methods::HOPPER_COMPUTE_A,
            ],
            engines,
        };
        Self {
            gpu: Arc::new(Mutex::new(gpu)),
            info,
            objects: BTreeMap::new(),
            owners: BTreeMap::new(),
            cpu_maps: BTreeMap::new(),
            next_cookie: 1,
            channel_clients: BTreeMap::new(),
        }
    }

    /// The shared GPU: the scheduler drives runlists through it, a
    /// [`super::driver::RealTimeDriver`] advances it, tests advance it by hand.
    pub fn gpu(&self) -> Arc<Mutex<SimGpu>> {
        self.gpu.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SimGpu> {
        self.gpu.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The TSG a host TSG handle names (for schedulers mapping RM objects to runlists).
    pub fn tsg_of(&self, client: Handle, object: Handle) -> Option<TsgRef> {
        match self.objects.get(&(client, object)) {
            Some(SimObject::Tsg { tsg, .. }) => Some(*tsg),
            _ => None,
        }
    }

    /// The channel a host channel handle names.
    pub fn channel_of(&self, client: Handle, object: Handle) -> Option<ChannelRef> {
        match self.objects.get(&(client, object)) {
            Some(SimObject::Channel { ch, .. }) => Some(*ch),
            _ => None,
        }
    }

    /// Objects the backend holds (0 after every client is freed).
    pub fn object_count(&self) -> usize {
        self.objects.len()
    }

    /// Looks up an object of `client`, checking the client belongs to `gfid`.
    fn get(&self, gfid: Gfid, client: Handle, object: Handle) -> Result<&SimObject, NvStatus> {
        if self.owners.get(&client) != Some(&gfid) {
            return Err(NvStatus::ERR_INVALID_CLIENT);
        }
        self.objects
            .get(&(client, object))
            .ok_or(NvStatus::ERR_INVALID_OBJECT_HANDLE)
    }

    fn memory_id(&self, gfid: Gfid, client: Handle, h: Handle) -> Result<MemoryId, NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::Memory { id } => Ok(*id),
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }

    fn vaspace_id(&self, gfid: Gfid, client: Handle, h: Handle) -> Result<VaSpaceId, NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::VaSpace { id, .. } => Ok(*id),
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }

    fn tsg_ref(&self, gfid: Gfid, client: Handle, h: Handle) -> Result<TsgRef, NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::Tsg { tsg, .. } => Ok(*tsg),
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }

    fn channel_ref(&self, gfid: Gfid, client: Handle, h: Handle) -> Result<ChannelRef, NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::Channel { ch, .. } => Ok(*ch),
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }
}

fn ok_or_status(r: Result<(), NvStatus>) -> NvStatus {
    r.err().unwrap_or(NvStatus::OK)
}

/// An engine type from the guest, where 0 means graphics (GR0), as in RM.
fn engine_type_or_gr0(engine_type: u32) -> u32 {
    if engine_type == 0 {
        NV2080_ENGINE_TYPE_GR0
    } else {
        engine_type
    }
}

impl Backend for SimBackend {
    fn gpu_info(&self) -> GpuInfo {
        self.info.clone()
    }

    fn create_vgpu(&mut self, gfid: Gfid, config: &VgpuConfig) {
        let quota = (config.host_memory_quota != u64::MAX).then_some(config.host_memory_quota);
        self.lock().set_host_memory_quota(gfid, quota);
    }

    fn destroy_vgpu(&mut self, gfid: Gfid) {
        self.lock().set_host_memory_quota(gfid, None);
    }

    fn alloc(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus {
        self.alloc_object(req, params)
    }

    fn alloc_os_descriptor(&mut self, req: &AllocRequest, pages: ExternalPages) -> NvStatus {
        self.alloc_external_memory(req, pages)
    }

    fn free(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus {
        self.free_handle(gfid, client, object)
    }

    fn control(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        let r = match ctrl::cmd_class(cmd) {
            0xA06C => self.ctrl_tsg(gfid, client, object, cmd, params),
            0xA06F | 0xC36F => self.ctrl_channel(gfid, client, object, cmd, params),
            0x2080 if cmd == NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS => {
                match self.get(gfid, client, object) {
                    Ok(SimObject::Subdevice) => self.ctrl_disable_channels(gfid, params),
                    Ok(_) => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
                    Err(s) => Err(s),
                }
            }
            _ => Err(NvStatus::ERR_NOT_SUPPORTED),
        };
        ok_or_status(r)
    }

    fn map_memory(&mut self, gfid: Gfid, params: &mut Nvos33Parameters) -> NvStatus {
        self.map_cpu(gfid, params)
    }

    fn unmap_memory(&mut self, gfid: Gfid, params: &mut Nvos34Parameters) -> NvStatus {
        self.unmap_cpu(gfid, params)
    }

    fn map_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos46Parameters) -> NvStatus {
        self.map_dma(gfid, params)
    }

    fn unmap_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos47Parameters) -> NvStatus {
        self.unmap_dma(gfid, params)
    }

    fn read_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        self.cpu_read(gfid, client, memory, offset, buf)
    }

    fn write_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        self.cpu_write(gfid, client, memory, offset, data)
    }

    fn doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus {
        self.ring_doorbell(gfid, token)
    }

    fn idle_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channel: Handle,
        timeout_us: u32,
    ) -> NvStatus {
        self.idle_channels(gfid, client, &[channel], timeout_us)
    }

    fn idle_channels(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channels: &[Handle],
        timeout_us: u32,
    ) -> NvStatus {
        self.wait_idle(gfid, client, channels, timeout_us)
    }
}
