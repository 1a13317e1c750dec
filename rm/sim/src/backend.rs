//! [`SimBackend`]: the [`Backend`] trait on top of [`SimGpu`].
//!
//! It keeps a table from host handles to sim objects (TSGs, channels, VA spaces, memory) and
//! translates each RM call into FIFO-layer and hardware operations. The core has validated the
//! object tree and translated handles; the backend still re-checks everything it dereferences
//! (object kinds, owners' GFID, sizes, offsets), so a core bug cannot reach outside a client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::channel::{ChannelConfig, ChannelRef};
use super::engine::{EngineKind, NV2080_ENGINE_TYPE_COPY0, NV2080_ENGINE_TYPE_GR0};
use super::fault::ErrorNotifier;
use super::gpu::{SimConfig, SimError, SimGpu};
use super::memory::{Aperture, MemoryError, MemoryId, PAGE_SIZE};
use super::runlist::InterleaveLevel;
use super::tsg::TsgRef;
use super::userd::{self, Userd, USERD_SIZE};
use super::vaspace::{VaError, VaSpaceId, VA_BITS};
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvChannelGroupAllocationParameters, NvCtxshareAllocationParameters,
    NvMemoryAllocationParams, Nvb0b5AllocationParameters,
};
use rm_abi::class;
use rm_abi::ctrl::{self, *};
use rm_abi::nvos::{
    Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters,
    NVOS46_FLAGS_DMA_OFFSET_FIXED,
};
use rm_abi::{read_struct, write_struct, Handle, NvStatus};
use rm_core::backend::{AllocRequest, Backend, ExternalPages, Gfid, GpuInfo};

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
        SimError::Memory(MemoryError::OutOfMemory { .. }) => NvStatus::ERR_NO_MEMORY,
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

    /// Memory a CPU access through `h` reaches: a memory object, or a channel's USERD.
    fn cpu_target(
        &self,
        gfid: Gfid,
        client: Handle,
        h: Handle,
    ) -> Result<(MemoryId, u64, u64), NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::Memory { id } => {
                let size = self
                    .lock()
                    .memory()
                    .size(*id)
                    .map_err(|_| NvStatus::ERR_INVALID_OBJECT)?;
                Ok((*id, 0, size))
            }
            SimObject::Channel { ch, .. } => {
                let cfg = self.lock().channel_config(*ch).map_err(|e| status_of(&e))?;
                Ok((cfg.userd.memory, cfg.userd.offset, USERD_SIZE))
            }
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }

    /// Where `len` bytes at `offset` of what `h` reaches for the CPU lie: the memory and the
    /// offset in it. `NV_ERR_INVALID_OFFSET` when the range runs past the end.
    fn cpu_range(
        &self,
        gfid: Gfid,
        client: Handle,
        h: Handle,
        offset: u64,
        len: usize,
    ) -> Result<(MemoryId, u64), NvStatus> {
        let (id, base, size) = self.cpu_target(gfid, client, h)?;
        if offset.checked_add(len as u64).is_none_or(|e| e > size) {
            return Err(NvStatus::ERR_INVALID_OFFSET);
        }
        Ok((id, base + offset))
    }

    fn runlist_for(&self, engine_type: u32) -> Result<u32, NvStatus> {
        self.lock()
            .runlist_for_engine_type(engine_type_or_gr0(engine_type))
            .ok_or(NvStatus::ERR_INVALID_ARGUMENT)
    }

    /// Checks that `req.client` is a client of `req.gfid` and that `req.object` is a free handle.
    fn check_new_handle(&self, req: &AllocRequest) -> Result<(), NvStatus> {
        if self.owners.get(&req.client) != Some(&req.gfid) {
            return Err(NvStatus::ERR_INVALID_CLIENT);
        }
        if self.objects.contains_key(&(req.client, req.object)) {
            return Err(NvStatus::ERR_INSERT_DUPLICATE_NAME);
        }
        Ok(())
    }

    fn alloc_tsg(&mut self, req: &AllocRequest, params: &[u8]) -> Result<SimObject, NvStatus> {
        let p: NvChannelGroupAllocationParameters =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        if p.hVASpace != 0 {
            self.vaspace_id(req.gfid, req.client, p.hVASpace)?;
        }
        let runlist = self.runlist_for(p.engineType)?;
        let tsg = self
            .lock()
            .create_tsg(runlist, req.gfid)
            .map_err(|e| status_of(&e))?;
        Ok(SimObject::Tsg {
            tsg,
            vaspace: (p.hVASpace != 0).then_some(p.hVASpace),
            next_subctx: 0,
        })
    }

    fn alloc_ctxshare(
        &mut self,
        req: &AllocRequest,
        params: &mut [u8],
    ) -> Result<SimObject, NvStatus> {
        let mut p: NvCtxshareAllocationParameters =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        if p.hVASpace != 0 {
            self.vaspace_id(req.gfid, req.client, p.hVASpace)?;
        }
        let Some(SimObject::Tsg {
            next_subctx,
            vaspace,
            ..
        }) = self.objects.get_mut(&(req.client, req.parent))
        else {
            return Err(NvStatus::ERR_INVALID_OBJECT_PARENT);
        };
        // Hopper has 64 subcontexts (VEIDs) per TSG.
        if *next_subctx >= 64 {
            return Err(NvStatus::ERR_INSUFFICIENT_RESOURCES);
        }
        p.subctxId = *next_subctx;
        *next_subctx += 1;
        let vas = if p.hVASpace != 0 {
            Some(p.hVASpace)
        } else {
            *vaspace
        };
        write_struct(&p, params);
        Ok(SimObject::ContextShare { vaspace: vas })
    }

    fn alloc_channel(
        &mut self,
        req: &AllocRequest,
        params: &mut [u8],
    ) -> Result<SimObject, NvStatus> {
        let mut p: NvChannelAllocParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        let (tsg, tsg_vas) = match self.get(req.gfid, req.client, req.parent)? {
            SimObject::Tsg { tsg, vaspace, .. } => (*tsg, *vaspace),
            _ => return Err(NvStatus::ERR_INVALID_OBJECT_PARENT),
        };
        let engine_runlist = if p.engineType == 0 {
            tsg.runlist
        } else {
            self.runlist_for(p.engineType)?
        };
        if engine_runlist != tsg.runlist {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        let share_vas = match p.hContextShare {
            0 => None,
            h => match self.get(req.gfid, req.client, h)? {
                SimObject::ContextShare { vaspace } => *vaspace,
                _ => return Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
            },
        };
        let vas_handle = [share_vas, (p.hVASpace != 0).then_some(p.hVASpace), tsg_vas]
            .into_iter()
            .flatten()
            .next()
            .ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
        let vaspace = self.vaspace_id(req.gfid, req.client, vas_handle)?;
        let error_notifier = match p.hObjectError {
            0 => None,
            h => Some(ErrorNotifier {
                memory: self.memory_id(req.gfid, req.client, h)?,
                offset: 0,
            }),
        };
        let (userd, internal) = match p.hUserdMemory[0] {
            0 => {
                let id = self
                    .lock()
                    .alloc_memory(Aperture::Sysmem, PAGE_SIZE)
                    .map_err(|e| status_of(&e))?;
                (
                    Userd {
                        memory: id,
                        offset: 0,
                    },
                    Some(id),
                )
            }
            h => (
                Userd {
                    memory: self.memory_id(req.gfid, req.client, h)?,
                    offset: p.userdOffset[0],
                },
                None,
            ),
        };
        let cfg = ChannelConfig {
            vaspace,
            gpfifo_va: p.gpFifoOffset,
            gpfifo_entries: p.gpFifoEntries,
            userd,
            error_notifier,
        };
        let mut gpu = self.lock();
        match gpu.create_channel(tsg, cfg) {
            Ok(ch) => {
                drop(gpu);
                p.cid = ch.chid;
                write_struct(&p, params);
                Ok(SimObject::Channel {
                    ch,
                    internal_userd: internal,
                })
            }
            Err(e) => {
                if let Some(id) = internal {
                    let _ = gpu.free_memory(id);
                }
                Err(status_of(&e))
            }
        }
    }

    fn alloc_engine_object(
        &mut self,
        req: &AllocRequest,
        params: &[u8],
    ) -> Result<SimObject, NvStatus> {
        let ch = self.channel_ref(req.gfid, req.client, req.parent)?;
        let kind = self.lock().engines()[ch.runlist as usize].kind;
        let copy_engine = read_struct::<Nvb0b5AllocationParameters>(params).map(|p| p.engineType);
        match (req.class, kind) {
            (rm_abi::methods::HOPPER_COMPUTE_A, EngineKind::Graphics) => {
                Ok(SimObject::EngineObject)
            }
            // On a copy-engine channel the object is that engine's.
            (rm_abi::methods::HOPPER_DMA_COPY_A, EngineKind::Copy(n)) => match copy_engine {
                Some(et) if et != 0 && et != NV2080_ENGINE_TYPE_COPY0 + n => {
                    Err(NvStatus::ERR_INVALID_ARGUMENT)
                }
                _ => Ok(SimObject::EngineObject),
            },
            // On a GR channel the GR engine's copy engine serves it; a named engine must be a
            // copy engine the GPU has.
            (rm_abi::methods::HOPPER_DMA_COPY_A, EngineKind::Graphics) => match copy_engine {
                Some(et)
                    if et != 0
                        && (et < NV2080_ENGINE_TYPE_COPY0
                            || self.lock().runlist_for_engine_type(et).is_none()) =>
                {
                    Err(NvStatus::ERR_INVALID_ARGUMENT)
                }
                _ => Ok(SimObject::EngineObject),
            },
            _ => Err(NvStatus::ERR_INVALID_CLASS),
        }
    }

    fn alloc_memory(&mut self, class_id: u32, params: &mut [u8]) -> Result<SimObject, NvStatus> {
        let mut p: NvMemoryAllocationParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        if p.size == 0 {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        let aperture = if class_id == class::NV01_MEMORY_LOCAL_USER {
            Aperture::Vidmem
        } else {
            Aperture::Sysmem
        };
        let mut gpu = self.lock();
        let id = gpu
            .alloc_memory(aperture, p.size)
            .map_err(|e| status_of(&e))?;
        let size = gpu.memory().size(id).unwrap_or(p.size);
        drop(gpu);
        p.limit = size - 1;
        p.offset = 0;
        write_struct(&p, params);
        Ok(SimObject::Memory { id })
    }

    fn ctrl_tsg(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> Result<(), NvStatus> {
        let tsg = self.tsg_ref(gfid, client, object)?;
        let bad = NvStatus::ERR_INVALID_PARAM_STRUCT;
        let mut gpu = self.lock();
        match cmd {
            NVA06C_CTRL_CMD_GPFIFO_SCHEDULE => {
                let p: NvA06cCtrlGpfifoScheduleParams = read_struct(params).ok_or(bad)?;
                gpu.schedule_tsg(tsg, p.bEnable != 0)
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_BIND => {
                let p: NvA06cCtrlBindParams = read_struct(params).ok_or(bad)?;
                match gpu.runlist_for_engine_type(engine_type_or_gr0(p.engineType)) {
                    Some(r) if r == tsg.runlist => Ok(()),
                    _ => Err(NvStatus::ERR_INVALID_ARGUMENT),
                }
            }
            NVA06C_CTRL_CMD_SET_TIMESLICE => {
                let p: NvA06cCtrlTimesliceParams = read_struct(params).ok_or(bad)?;
                gpu.set_tsg_timeslice_us(tsg, p.timesliceUs)
                    .map(|_| ())
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_GET_TIMESLICE => {
                let info = gpu.tsg_info(tsg).map_err(|e| status_of(&e))?;
                write_struct(
                    &NvA06cCtrlTimesliceParams {
                        timesliceUs: info.timeslice_us,
                    },
                    params,
                );
                Ok(())
            }
            NVA06C_CTRL_CMD_PREEMPT => {
                let p: NvA06cCtrlPreemptParams = read_struct(params).ok_or(bad)?;
                if p.bManualTimeout != 0 && p.timeoutUs > ctrl::NVA06C_PREEMPT_MAX_MANUAL_TIMEOUT_US
                {
                    return Err(NvStatus::ERR_INVALID_ARGUMENT);
                }
                if p.bWait == 0 {
                    return gpu.preempt_tsg(tsg).map_err(|e| status_of(&e));
                }
                let us = if p.bManualTimeout != 0 {
                    u64::from(p.timeoutUs)
                } else {
                    DEFAULT_WAIT_US
                };
                gpu.preempt_tsg_and_wait(tsg, us * 1000)
                    .map(|_| ())
                    .map_err(|e| status_of(&e))
            }
            NVA06C_CTRL_CMD_GET_INFO => {
                write_struct(&NvA06cCtrlGetInfoParams { tsgID: tsg.tsgid }, params);
                Ok(())
            }
            NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL => {
                let p: NvA06cCtrlInterleaveLevelParams = read_struct(params).ok_or(bad)?;
                let level = InterleaveLevel::from_raw(p.tsgInterleaveLevel)
                    .ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
                gpu.set_tsg_interleave(tsg, level)
                    .map_err(|e| status_of(&e))
            }
            // Not in the 580/595 exported method table, so RM answers NOT_SUPPORTED.
            _ => Err(NvStatus::ERR_NOT_SUPPORTED),
        }
    }

    fn ctrl_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> Result<(), NvStatus> {
        let ch = self.channel_ref(gfid, client, object)?;
        let mut gpu = self.lock();
        match cmd {
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN => {
                let token = gpu.work_submit_token(ch).map_err(|e| status_of(&e))?;
                write_struct(
                    &NvC36fCtrlGpfifoGetWorkSubmitTokenParams {
                        workSubmitToken: token.0,
                    },
                    params,
                );
                Ok(())
            }
            NVA06F_CTRL_CMD_GPFIFO_SCHEDULE => {
                let p: NvA06cCtrlGpfifoScheduleParams =
                    read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
                let tsg = gpu.channel_tsg(ch).map_err(|e| status_of(&e))?;
                if p.bEnable != 0 && !gpu.tsg_info(tsg).map_err(|e| status_of(&e))?.scheduled {
                    gpu.schedule_tsg(tsg, true).map_err(|e| status_of(&e))?;
                }
                gpu.set_channel_enabled(ch, p.bEnable != 0)
                    .map_err(|e| status_of(&e))
            }
            _ => Err(NvStatus::ERR_NOT_SUPPORTED),
        }
    }

    fn ctrl_disable_channels(&mut self, gfid: Gfid, params: &mut [u8]) -> Result<(), NvStatus> {
        let p: Nv2080CtrlFifoDisableChannelsParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        let n = p.numChannels as usize;
        if n > NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        if p.pRunlistPreemptEvent != 0 {
            return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
        }
        let chans = (0..n)
            .map(|i| self.channel_ref(gfid, p.hClientList[i], p.hChannelList[i]))
            .collect::<Result<Vec<_>, _>>()?;
        let mut gpu = self.lock();
        let mut tsgs = Vec::new();
        for &c in &chans {
            gpu.set_channel_enabled(c, p.bDisable == 0)
                .map_err(|e| status_of(&e))?;
            if p.bDisable != 0 && p.bRewindGpPut != 0 {
                // Drop queued entries: GP_PUT back to GP_GET.
                let u = gpu.channel_config(c).map_err(|e| status_of(&e))?.userd;
                let get = u
                    .read(gpu.memory(), userd::GP_GET)
                    .map_err(|_| NvStatus::ERR_INVALID_STATE)?;
                u.write(gpu.memory_mut(), userd::GP_PUT, get)
                    .map_err(|_| NvStatus::ERR_INVALID_STATE)?;
            }
            let t = gpu.channel_tsg(c).map_err(|e| status_of(&e))?;
            if !tsgs.contains(&t) {
                tsgs.push(t);
            }
        }
        if p.bDisable != 0 && p.bOnlyDisableScheduling == 0 {
            // Disabling takes effect at the next switch: preempt what is loaded now, all within
            // one call's host work budget.
            let limit = gpu.call_work_limit();
            for t in tsgs {
                if gpu.resident_tsg(t.runlist).ok().flatten() == Some(t) {
                    gpu.preempt_tsg_and_wait_within(t, DEFAULT_WAIT_US * 1000, limit)
                        .map_err(|e| status_of(&e))?;
                }
            }
        }
        Ok(())
    }

    fn free_object(&mut self, obj: SimObject) -> NvStatus {
        if let SimObject::Channel { ch, .. } = obj {
            self.channel_clients.remove(&ch);
        }
        let mut gpu = self.lock();
        match obj {
            SimObject::VaSpace { id, .. } => st(gpu.destroy_vaspace(id)),
            SimObject::Tsg { tsg, .. } => st(gpu.destroy_tsg(tsg)),
            SimObject::Channel { ch, internal_userd } => {
                let r = gpu.destroy_channel(ch);
                if let Some(id) = internal_userd {
                    let _ = gpu.free_memory(id);
                }
                st(r)
            }
            SimObject::Memory { id } => st(gpu.free_memory(id)),
            _ => NvStatus::OK,
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

/// The length a mapping of `length` bytes at `offset` of an object of `size` bytes covers
/// (`length` 0: to the end), or `None` when that is empty or runs past the end.
fn mapped_length(offset: u64, length: u64, size: u64) -> Option<u64> {
    let length = if length == 0 {
        size.saturating_sub(offset)
    } else {
        length
    };
    (length != 0 && offset.checked_add(length).is_some_and(|e| e <= size)).then_some(length)
}

impl Backend for SimBackend {
    fn gpu_info(&self) -> GpuInfo {
        self.info.clone()
    }

    fn alloc(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus {
        let is_root = matches!(
            req.class,
            class::NV01_ROOT | class::NV01_ROOT_NON_PRIV | class::NV01_ROOT_CLIENT
        );
        if is_root {
            if self.owners.contains_key(&req.client) {
                return NvStatus::ERR_INSERT_DUPLICATE_NAME;
            }
            self.owners.insert(req.client, req.gfid);
            self.objects
                .insert((req.client, req.client), SimObject::Client);
            return NvStatus::OK;
        }
        if let Err(s) = self.check_new_handle(req) {
            return s;
        }
        if !self.objects.contains_key(&(req.client, req.parent)) {
            return NvStatus::ERR_INVALID_OBJECT_PARENT;
        }
        let made = match req.class {
            class::NV01_DEVICE_0 => Ok(SimObject::Device),
            class::NV20_SUBDEVICE_0 => Ok(SimObject::Subdevice),
            class::FERMI_VASPACE_A => {
                let id = self.lock().create_vaspace();
                Ok(SimObject::VaSpace {
                    id,
                    next_va: DMA_VA_BASE,
                })
            }
            class::KEPLER_CHANNEL_GROUP_A => self.alloc_tsg(req, params),
            class::FERMI_CONTEXT_SHARE_A => self.alloc_ctxshare(req, params),
            rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A => self.alloc_channel(req, params),
            rm_abi::methods::HOPPER_COMPUTE_A | rm_abi::methods::HOPPER_DMA_COPY_A => {
                self.alloc_engine_object(req, params)
            }
            class::NV01_MEMORY_SYSTEM | class::NV01_MEMORY_LOCAL_USER => {
                self.alloc_memory(req.class, params)
            }
            rm_abi::methods::HOPPER_USERMODE_A => Ok(SimObject::Usermode),
            class::NV01_EVENT | class::NV01_EVENT_OS_EVENT => Ok(SimObject::Event),
            _ => Err(NvStatus::ERR_INVALID_CLASS),
        };
        match made {
            Ok(o) => {
                if let SimObject::Channel { ch, .. } = o {
                    self.channel_clients.insert(ch, req.client);
                }
                self.objects.insert((req.client, req.object), o);
                NvStatus::OK
            }
            Err(s) => s,
        }
    }

    fn alloc_os_descriptor(&mut self, req: &AllocRequest, pages: ExternalPages) -> NvStatus {
        if let Err(s) = self.check_new_handle(req) {
            return s;
        }
        if self.objects.get(&(req.client, req.parent)) != Some(&SimObject::Device) {
            return NvStatus::ERR_INVALID_OBJECT_PARENT;
        }
        let made = self.lock().memory_mut().alloc_external(pages);
        match made {
            Ok(id) => {
                self.objects
                    .insert((req.client, req.object), SimObject::Memory { id });
                NvStatus::OK
            }
            Err(_) => NvStatus::ERR_INVALID_LIMIT,
        }
    }

    fn free(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus {
        if let Err(s) = self.get(gfid, client, object) {
            return s;
        }
        let Some(obj) = self.objects.remove(&(client, object)) else {
            return NvStatus::ERR_INVALID_OBJECT_HANDLE;
        };
        self.cpu_maps
            .retain(|_, m| !(m.client == client && (m.object == object || object == client)));
        if object == client {
            // The core frees children first; anything left is released here all the same,
            // channels before their TSGs.
            self.owners.remove(&client);
            let rest: Vec<SimObject> = self
                .objects
                .iter()
                .filter(|((c, _), _)| *c == client)
                .map(|(_, o)| o.clone())
                .collect();
            self.objects.retain(|(c, _), _| *c != client);
            let rank = |o: &SimObject| match o {
                SimObject::Channel { .. } => 0,
                SimObject::Tsg { .. } => 1,
                _ => 2,
            };
            let mut rest = rest;
            rest.sort_by_key(rank);
            for o in rest {
                self.free_object(o);
            }
        }
        self.free_object(obj)
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
        let (client, object) = (params.hClient, params.hMemory);
        let size = match self.get(gfid, client, object) {
            Ok(SimObject::Usermode) => PAGE_SIZE,
            Ok(_) => match self.cpu_target(gfid, client, object) {
                Ok((_, _, size)) => size,
                Err(s) => return s,
            },
            Err(s) => return s,
        };
        if mapped_length(params.offset, params.length, size).is_none() {
            return NvStatus::ERR_INVALID_LIMIT;
        }
        let cookie = self.next_cookie << 32;
        self.next_cookie += 1;
        self.cpu_maps.insert(
            cookie,
            CpuMapping {
                gfid,
                client,
                object,
            },
        );
        params.pLinearAddress = cookie;
        NvStatus::OK
    }

    fn unmap_memory(&mut self, gfid: Gfid, params: &mut Nvos34Parameters) -> NvStatus {
        match self.cpu_maps.get(&params.pLinearAddress) {
            Some(m)
                if m.gfid == gfid && m.client == params.hClient && m.object == params.hMemory =>
            {
                self.cpu_maps.remove(&params.pLinearAddress);
                NvStatus::OK
            }
            _ => NvStatus::ERR_INVALID_ARGUMENT,
        }
    }

    fn map_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos46Parameters) -> NvStatus {
        let client = params.hClient;
        let mem = match self.memory_id(gfid, client, params.hMemory) {
            Ok(m) => m,
            Err(s) => return s,
        };
        let (vas, next_va) = match self.get(gfid, client, params.hDma) {
            Ok(SimObject::VaSpace { id, next_va }) => (*id, *next_va),
            Ok(_) => return NvStatus::ERR_INVALID_OBJECT_HANDLE,
            Err(s) => return s,
        };
        let size = match self.lock().memory().size(mem) {
            Ok(s) => s,
            Err(_) => return NvStatus::ERR_INVALID_OBJECT,
        };
        let length = match mapped_length(params.offset, params.length, size) {
            Some(l) if params.offset.is_multiple_of(PAGE_SIZE) => l,
            _ => return NvStatus::ERR_INVALID_OFFSET,
        };
        let len = length.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let fixed = params.flags & NVOS46_FLAGS_DMA_OFFSET_FIXED != 0;
        let va = if fixed { params.dmaOffset } else { next_va };
        if va.checked_add(len).is_none_or(|e| e > 1 << VA_BITS) {
            return NvStatus::ERR_NO_MEMORY;
        }
        let r = self.lock().map(vas, va, mem, params.offset, len);
        if let Err(e) = r {
            return status_of(&e);
        }
        if !fixed {
            if let Some(SimObject::VaSpace { next_va, .. }) =
                self.objects.get_mut(&(client, params.hDma))
            {
                *next_va = (va + len).div_ceil(DMA_VA_ALIGN) * DMA_VA_ALIGN;
            }
        }
        params.dmaOffset = va;
        NvStatus::OK
    }

    fn unmap_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos47Parameters) -> NvStatus {
        let vas = match self.vaspace_id(gfid, params.hClient, params.hDma) {
            Ok(v) => v,
            Err(s) => return s,
        };
        let mem = match self.memory_id(gfid, params.hClient, params.hMemory) {
            Ok(m) => m,
            Err(s) => return s,
        };
        let mut gpu = self.lock();
        let owned = gpu
            .vaspace(vas)
            .and_then(|v| v.translate(params.dmaOffset))
            .is_some_and(|(m, _, _)| m == mem);
        if !owned {
            return NvStatus::ERR_INVALID_OFFSET;
        }
        st(gpu.unmap(vas, params.dmaOffset))
    }

    fn read_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        let (id, at) = match self.cpu_range(gfid, client, memory, offset, buf.len()) {
            Ok(r) => r,
            Err(s) => return s,
        };
        match self.lock().memory().read(id, at, buf) {
            Ok(()) => NvStatus::OK,
            Err(_) => NvStatus::ERR_INVALID_OFFSET,
        }
    }

    fn write_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        let (id, at) = match self.cpu_range(gfid, client, memory, offset, data.len()) {
            Ok(r) => r,
            Err(s) => return s,
        };
        match self.lock().memory_mut().write(id, at, data) {
            Ok(()) => NvStatus::OK,
            Err(_) => NvStatus::ERR_INVALID_OFFSET,
        }
    }

    fn doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus {
        let t = super::doorbell::WorkSubmitToken(token);
        let ch = ChannelRef {
            runlist: t.runlist(),
            chid: t.chid(),
        };
        let owned = self
            .channel_clients
            .get(&ch)
            .is_some_and(|c| self.owners.get(c) == Some(&gfid));
        if !owned {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        st(self.lock().doorbell(t))
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

    /// Waits for all of `channels` within one timeout and one call's host work budget, so a
    /// guest's long timeout or long channel list cannot hold the host.
    fn idle_channels(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channels: &[Handle],
        timeout_us: u32,
    ) -> NvStatus {
        let chans = match channels
            .iter()
            .map(|&h| self.channel_ref(gfid, client, h))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(c) => c,
            Err(s) => return s,
        };
        let timeout_ns = if timeout_us == 0 {
            DEFAULT_WAIT_US
        } else {
            u64::from(timeout_us)
        } * 1000;
        let mut gpu = self.lock();
        let step = gpu.timing().sync_quantum_ns;
        let limit = gpu.call_work_limit();
        let idle = gpu.wait_until(timeout_ns, step, limit, |g| {
            chans
                .iter()
                .try_fold(true, |all, &c| Ok(all && g.channel_idle(c)?))
        });
        match idle {
            Ok(true) => NvStatus::OK,
            Ok(false) => NvStatus::ERR_TIMEOUT,
            Err(e) => status_of(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_abi::alloc_params::{NvRootAllocParams, NvVaspaceAllocationParameters};
    use rm_abi::methods::{
        host, HOPPER_CHANNEL_GPFIFO_A, HOPPER_COMPUTE_A, HOPPER_DMA_COPY_A, HOPPER_USERMODE_A,
    };
    use rm_abi::pushbuffer::{inc_header, GpEntry};
    use zerocopy::IntoBytes;

    const C1: Handle = 0xC1D0_0001;
    const C2: Handle = 0xC1D0_0002;
    const DEV: Handle = 0x10;
    const SUB: Handle = 0x11;
    const VAS: Handle = 0x12;
    const MEM: Handle = 0x13;
    const TSG: Handle = 0x14;
    const SHARE: Handle = 0x15;
    const CH: Handle = 0x16;
    const COMPUTE: Handle = 0x17;
    const CE_TSG: Handle = 0x18;
    const CE_CH: Handle = 0x19;
    const COPY: Handle = 0x1A;
    const USERMODE: Handle = 0x1B;
    const NOTIFIER: Handle = 0x1C;

    fn sim() -> SimBackend {
        SimBackend::new(SimConfig::default())
    }

    fn alloc<T: IntoBytes + zerocopy::Immutable>(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        parent: Handle,
        object: Handle,
        class: u32,
        params: &T,
    ) -> (NvStatus, Vec<u8>) {
        let mut bytes = params.as_bytes().to_vec();
        let s = b.alloc(
            &AllocRequest {
                gfid,
                client,
                parent,
                object,
                class,
            },
            &mut bytes,
        );
        (s, bytes)
    }

    fn ok(s: NvStatus) {
        assert_eq!(s, NvStatus::OK);
    }

    fn memory(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        h: Handle,
        class_id: u32,
        size: u64,
    ) -> NvStatus {
        let p = NvMemoryAllocationParams {
            size,
            ..Default::default()
        };
        let (s, out) = alloc(b, gfid, client, DEV, h, class_id, &p);
        if s == NvStatus::OK {
            let back: NvMemoryAllocationParams = read_struct(&out).unwrap();
            assert_eq!(back.limit, size.div_ceil(PAGE_SIZE) * PAGE_SIZE - 1);
        }
        s
    }

    /// Root client, device, subdevice, VA space, 4 MiB of video memory mapped into it.
    fn base(b: &mut SimBackend, gfid: Gfid, client: Handle) -> u64 {
        ok(alloc(
            b,
            gfid,
            client,
            0,
            client,
            class::NV01_ROOT_CLIENT,
            &NvRootAllocParams { hClient: client },
        )
        .0);
        ok(alloc(
            b,
            gfid,
            client,
            client,
            DEV,
            class::NV01_DEVICE_0,
            &[0u8; 56],
        )
        .0);
        ok(alloc(
            b,
            gfid,
            client,
            DEV,
            SUB,
            class::NV20_SUBDEVICE_0,
            &[0u8; 4],
        )
        .0);
        ok(alloc(
            b,
            gfid,
            client,
            DEV,
            VAS,
            class::FERMI_VASPACE_A,
            &NvVaspaceAllocationParameters::default(),
        )
        .0);
        ok(memory(
            b,
            gfid,
            client,
            MEM,
            class::NV01_MEMORY_LOCAL_USER,
            4 << 20,
        ));
        let mut m = Nvos46Parameters {
            hClient: client,
            hDevice: DEV,
            hDma: VAS,
            hMemory: MEM,
            ..Default::default()
        };
        ok(b.map_memory_dma(gfid, &mut m));
        assert_eq!(m.dmaOffset, DMA_VA_BASE);
        m.dmaOffset
    }

    fn tsg(b: &mut SimBackend, gfid: Gfid, client: Handle, h: Handle, engine: u32) -> NvStatus {
        let p = NvChannelGroupAllocationParameters {
            hVASpace: VAS,
            engineType: engine,
            ..Default::default()
        };
        alloc(b, gfid, client, DEV, h, class::KEPLER_CHANNEL_GROUP_A, &p).0
    }

    /// A channel in `tsg_h` with USERD at MEM+0, GPFIFO at MEM+0x1000 (256 entries).
    fn channel(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        tsg_h: Handle,
        h: Handle,
        va: u64,
        userd_off: u64,
    ) -> (NvStatus, u32) {
        let mut p = NvChannelAllocParams {
            gpFifoOffset: va + 0x1000 + userd_off * 8,
            gpFifoEntries: 256,
            hObjectError: 0,
            ..Default::default()
        };
        p.hUserdMemory[0] = MEM;
        p.userdOffset[0] = userd_off;
        let (s, out) = alloc(b, gfid, client, tsg_h, h, HOPPER_CHANNEL_GPFIFO_A, &p);
        (s, read_struct::<NvChannelAllocParams>(&out).unwrap().cid)
    }

    fn ctrl<T: IntoBytes + zerocopy::Immutable + FromBytesT>(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        obj: Handle,
        cmd: u32,
        p: &T,
    ) -> (NvStatus, T) {
        let mut bytes = p.as_bytes().to_vec();
        let s = b.control(gfid, client, obj, cmd, &mut bytes);
        (s, read_struct(&bytes).unwrap())
    }

    /// `NVA06C_CTRL_CMD_GPFIFO_SCHEDULE` on TSG `tsg_h`.
    fn schedule(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        tsg_h: Handle,
        on: bool,
    ) -> NvStatus {
        let p = NvA06cCtrlGpfifoScheduleParams {
            bEnable: u8::from(on),
            ..Default::default()
        };
        ctrl(b, gfid, client, tsg_h, NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, &p).0
    }

    /// `NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS` on the subdevice of `client`.
    fn disable_channels(
        b: &mut SimBackend,
        gfid: Gfid,
        client: Handle,
        p: &Nv2080CtrlFifoDisableChannelsParams,
    ) -> NvStatus {
        ctrl(
            b,
            gfid,
            client,
            SUB,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            p,
        )
        .0
    }

    /// Whether the channel's CHRAM entry has ENABLE set.
    fn channel_enabled(b: &SimBackend, ch: ChannelRef) -> bool {
        b.gpu().lock().unwrap().chram_read(ch).unwrap() & super::super::chram::ENABLE != 0
    }

    use zerocopy::FromBytes as FromBytesT;

    #[test]
    fn gpu_program_lifecycle_and_teardown() {
        let mut b = sim();
        let va = base(&mut b, 1, C1);
        ok(tsg(&mut b, 1, C1, TSG, NV2080_ENGINE_TYPE_GR0));
        let (s, out) = alloc(
            &mut b,
            1,
            C1,
            TSG,
            SHARE,
            class::FERMI_CONTEXT_SHARE_A,
            &NvCtxshareAllocationParameters {
                hVASpace: VAS,
                ..Default::default()
            },
        );
        ok(s);
        assert_eq!(
            read_struct::<NvCtxshareAllocationParameters>(&out)
                .unwrap()
                .subctxId,
            0
        );
        ok(memory(
            &mut b,
            1,
            C1,
            NOTIFIER,
            class::NV01_MEMORY_SYSTEM,
            4096,
        ));
        let (s, chid) = channel(&mut b, 1, C1, TSG, CH, va, 0);
        ok(s);
        ok(alloc(&mut b, 1, C1, CH, COMPUTE, HOPPER_COMPUTE_A, &[0u8; 16]).0);
        // A GR channel hosts the copy class too (as CUDA uses it), with any copy engine the
        // GPU has or none named; a compute object never goes on a copy-engine channel.
        assert_eq!(
            alloc(
                &mut b,
                1,
                C1,
                CH,
                COPY,
                HOPPER_DMA_COPY_A,
                &Nvb0b5AllocationParameters {
                    version: 0,
                    engineType: NV2080_ENGINE_TYPE_GR0,
                },
            )
            .0,
            NvStatus::ERR_INVALID_ARGUMENT
        );
        ok(alloc(&mut b, 1, C1, CH, COPY, HOPPER_DMA_COPY_A, &[0u8; 8]).0);
        ok(b.free(1, C1, COPY));
        ok(tsg(&mut b, 1, C1, CE_TSG, NV2080_ENGINE_TYPE_COPY0));
        let (s, _) = channel(&mut b, 1, C1, CE_TSG, CE_CH, va, 0x200);
        ok(s);
        ok(alloc(
            &mut b,
            1,
            C1,
            CE_CH,
            COPY,
            HOPPER_DMA_COPY_A,
            &Nvb0b5AllocationParameters {
                version: 0,
                engineType: NV2080_ENGINE_TYPE_COPY0,
            },
        )
        .0);
        ok(alloc(&mut b, 1, C1, SUB, USERMODE, HOPPER_USERMODE_A, &[0u8; 2]).0);
        let mut m = Nvos33Parameters {
            hClient: C1,
            hDevice: DEV,
            hMemory: USERMODE,
            ..Default::default()
        };
        ok(b.map_memory(1, &mut m));
        assert_ne!(m.pLinearAddress, 0);

        // Controls.
        let (s, tok) = ctrl(
            &mut b,
            1,
            C1,
            CH,
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
        );
        ok(s);
        assert_eq!(tok.workSubmitToken, chid);
        ok(ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_SET_TIMESLICE,
            &NvA06cCtrlTimesliceParams { timesliceUs: 3000 },
        )
        .0);
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_GET_TIMESLICE,
                &NvA06cCtrlTimesliceParams::default()
            )
            .1
            .timesliceUs,
            3000
        );
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
                &NvA06cCtrlInterleaveLevelParams {
                    tsgInterleaveLevel: 3
                }
            )
            .0,
            NvStatus::ERR_INVALID_ARGUMENT
        );
        ok(ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
            &NvA06cCtrlInterleaveLevelParams {
                tsgInterleaveLevel: 2,
            },
        )
        .0);
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL,
                &NvA06cCtrlInterleaveLevelParams::default()
            )
            .0,
            NvStatus::ERR_NOT_SUPPORTED
        );
        ok(ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_BIND,
            &NvA06cCtrlBindParams {
                engineType: NV2080_ENGINE_TYPE_GR0,
            },
        )
        .0);
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_BIND,
                &NvA06cCtrlBindParams { engineType: 9 }
            )
            .0,
            NvStatus::ERR_INVALID_ARGUMENT
        );
        let tsgid = b.tsg_of(C1, TSG).unwrap().tsgid;
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_GET_INFO,
                &NvA06cCtrlGetInfoParams::default()
            )
            .1
            .tsgID,
            tsgid
        );
        ok(schedule(&mut b, 1, C1, TSG, true));
        {
            let g = b.gpu();
            let g = g.lock().unwrap();
            let slots = g.runlist_slots(0).unwrap();
            assert_eq!(
                (slots[0].gfid, slots[0].timeslice.as_ns() / 1000),
                (1, 2998)
            );
        }

        // Program: pushbuffer at MEM+0x10000 with SET_OBJECT, 50 µs of work, a semaphore
        // release with timestamp to MEM+0x20000; one GPFIFO entry; GP_PUT = 1; doorbell.
        let sem = va + 0x20000;
        let words = [
            inc_header(0, host::SET_OBJECT, 1),
            HOPPER_COMPUTE_A,
            inc_header(0, rm_abi::methods::compute::SIM_WORK_NS_LO, 3),
            50_000,
            0,
            0,
            inc_header(0, host::SEM_ADDR_LO, 4),
            sem as u32,
            (sem >> 32) as u32,
            42,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
        ];
        ok(b.write_memory(1, C1, MEM, 0x10000, words.as_bytes()));
        let entry = GpEntry::encode(va + 0x10000, words.len() as u32);
        ok(b.write_memory(1, C1, MEM, 0x1000, &entry.to_le_bytes()));
        ok(b.write_memory(1, C1, MEM, userd::GP_PUT, &1u32.to_le_bytes()));
        ok(b.doorbell(1, tok.workSubmitToken));
        assert_eq!(
            b.doorbell(2, tok.workSubmitToken),
            NvStatus::ERR_INVALID_ARGUMENT,
            "not gfid 2's channel"
        );
        ok(b.idle_channel(1, C1, CH, 0));
        let mut v = [0u8; 16];
        ok(b.read_memory(1, C1, MEM, 0x20000, &mut v));
        assert_eq!(u32::from_le_bytes(v[0..4].try_into().unwrap()), 42);
        assert!(u64::from_le_bytes(v[8..16].try_into().unwrap()) >= 50_000);
        let mut gp_get = [0u8; 4];
        ok(b.read_memory(1, C1, CH, userd::GP_GET, &mut gp_get));
        assert_eq!(
            u32::from_le_bytes(gp_get),
            1,
            "USERD reachable through the channel handle"
        );
        assert_eq!(
            b.read_memory(1, C1, MEM, (4 << 20) - 2, &mut v),
            NvStatus::ERR_INVALID_OFFSET
        );

        ok(ctrl(
            &mut b,
            1,
            C1,
            TSG,
            NVA06C_CTRL_CMD_PREEMPT,
            &NvA06cCtrlPreemptParams {
                bWait: 1,
                bManualTimeout: 1,
                timeoutUs: 1000,
                ..Default::default()
            },
        )
        .0);
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_PREEMPT,
                &NvA06cCtrlPreemptParams {
                    bWait: 1,
                    bManualTimeout: 1,
                    timeoutUs: 1_000_001,
                    ..Default::default()
                }
            )
            .0,
            NvStatus::ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            ctrl(
                &mut b,
                1,
                C1,
                TSG,
                NVA06C_CTRL_CMD_MAKE_REALTIME,
                &NvA06cCtrlMakeRealtimeParams::default()
            )
            .0,
            NvStatus::ERR_NOT_SUPPORTED
        );

        // Teardown in the core's order: children before parents, client last.
        for h in [COMPUTE, CH, SHARE, TSG, COPY, CE_CH, CE_TSG, USERMODE] {
            ok(b.free(1, C1, h));
        }
        let mut u = Nvos47Parameters {
            hClient: C1,
            hDevice: DEV,
            hDma: VAS,
            hMemory: MEM,
            dmaOffset: va,
            ..Default::default()
        };
        ok(b.unmap_memory_dma(1, &mut u));
        for h in [MEM, NOTIFIER, VAS, SUB, DEV, C1] {
            ok(b.free(1, C1, h));
        }
        assert_eq!(b.object_count(), 0);
        assert_eq!(
            b.doorbell(1, tok.workSubmitToken),
            NvStatus::ERR_INVALID_ARGUMENT,
            "freed channel"
        );
        let g = b.gpu();
        let g = g.lock().unwrap();
        assert_eq!(
            (g.channel_count(), g.tsg_count(), g.vaspace_count()),
            (0, 0, 0)
        );
        assert!(g.memory().is_empty());
    }

    /// Found by `tests/fuzz_sim.rs`: an idle with a guest-chosen timeout of hours on a channel
    /// that never idles stepped the clock 10 µs at a time for all of it (hours of host CPU).
    /// Now the wait ends at one call's host work budget, with `NV_ERR_TIMEOUT`.
    #[test]
    fn waits_are_bounded_by_the_host_work_budget() {
        let mut b = SimBackend::new(SimConfig {
            timing: super::super::timing::Timing {
                work_budget_per_call: 10_000,
                ..Default::default()
            },
            ..SimConfig::default()
        });
        let va = base(&mut b, 1, C1);
        ok(tsg(&mut b, 1, C1, TSG, NV2080_ENGINE_TYPE_GR0));
        ok(channel(&mut b, 1, C1, TSG, CH, va, 0).0);
        ok(schedule(&mut b, 1, C1, TSG, true));
        // An acquire of a value the semaphore never takes: the channel never idles.
        let sem = va + 0x20000;
        let words = [
            inc_header(0, host::SEM_ADDR_LO, 4),
            sem as u32,
            (sem >> 32) as u32,
            1,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::ACQUIRE,
        ];
        ok(b.write_memory(1, C1, MEM, 0x10000, words.as_bytes()));
        let entry = GpEntry::encode(va + 0x10000, words.len() as u32);
        ok(b.write_memory(1, C1, MEM, 0x1000, &entry.to_le_bytes()));
        ok(b.write_memory(1, C1, MEM, userd::GP_PUT, &1u32.to_le_bytes()));
        let (_, tok) = ctrl(
            &mut b,
            1,
            C1,
            CH,
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
        );
        ok(b.doorbell(1, tok.workSubmitToken));
        let gpu = b.gpu();
        let work = |g: &Arc<Mutex<SimGpu>>| g.lock().unwrap().host_work_units();
        let w0 = work(&gpu);
        assert_eq!(b.idle_channel(1, C1, CH, u32::MAX), NvStatus::ERR_TIMEOUT);
        let spent = work(&gpu) - w0;
        let runlists = gpu.lock().unwrap().runlist_count() as u64;
        assert!(
            spent <= 10_000 * (runlists + 1),
            "idle spent {spent} units of host work"
        );
        // The same for a long channel list in one call.
        let w0 = work(&gpu);
        assert_eq!(
            b.idle_channels(1, C1, &[CH; 64], u32::MAX),
            NvStatus::ERR_TIMEOUT
        );
        assert!(work(&gpu) - w0 <= 10_000 * (runlists + 1));
        // A preempt wait is bounded the same way, and a wait that can finish still does.
        ok(schedule(&mut b, 1, C1, TSG, false));
        ok(b.write_memory(1, C1, MEM, 0x20000, &1u32.to_le_bytes()));
        ok(schedule(&mut b, 1, C1, TSG, true));
        ok(b.idle_channel(1, C1, CH, u32::MAX));
    }

    #[test]
    fn another_gfid_cannot_touch_objects() {
        let mut b = sim();
        let va = base(&mut b, 1, C1);
        ok(tsg(&mut b, 1, C1, TSG, 0));
        ok(channel(&mut b, 1, C1, TSG, CH, va, 0).0);
        // GFID 2 naming client 1's handles.
        assert_eq!(b.free(2, C1, CH), NvStatus::ERR_INVALID_CLIENT);
        assert_eq!(
            ctrl(
                &mut b,
                2,
                C1,
                TSG,
                NVA06C_CTRL_CMD_SET_TIMESLICE,
                &NvA06cCtrlTimesliceParams { timesliceUs: 1 }
            )
            .0,
            NvStatus::ERR_INVALID_CLIENT
        );
        assert_eq!(
            b.write_memory(2, C1, MEM, 0, &[1]),
            NvStatus::ERR_INVALID_CLIENT
        );
        assert_eq!(
            alloc(&mut b, 2, C1, DEV, 0x99, class::FERMI_VASPACE_A, &[0u8; 56]).0,
            NvStatus::ERR_INVALID_CLIENT
        );
        // FIFO_DISABLE_CHANNELS from GFID 2's own subdevice listing client 1's channel.
        base(&mut b, 2, C2);
        let mut p = Nv2080CtrlFifoDisableChannelsParams {
            bDisable: 1,
            numChannels: 1,
            ..Default::default()
        };
        p.hClientList[0] = C1;
        p.hChannelList[0] = CH;
        assert_eq!(
            disable_channels(&mut b, 2, C2, &p),
            NvStatus::ERR_INVALID_CLIENT
        );
        let ch = b.channel_of(C1, CH).unwrap();
        ok(schedule(&mut b, 1, C1, TSG, true));
        assert!(channel_enabled(&b, ch));
        // The owner can disable (and re-enable) its own channel.
        p.hClientList[0] = C1;
        ok(disable_channels(&mut b, 1, C1, &p));
        assert!(!channel_enabled(&b, ch));
        p.bDisable = 0;
        ok(disable_channels(&mut b, 1, C1, &p));
        p.numChannels = 65;
        assert_eq!(
            disable_channels(&mut b, 1, C1, &p),
            NvStatus::ERR_INVALID_ARGUMENT
        );
        p.numChannels = 1;
        p.pRunlistPreemptEvent = 0x1000;
        assert_eq!(
            disable_channels(&mut b, 1, C1, &p),
            NvStatus::ERR_INSUFFICIENT_PERMISSIONS
        );
        // Freeing the client releases everything it still held.
        ok(b.free(1, C1, C1));
        ok(b.free(2, C2, C2));
        assert_eq!(b.object_count(), 0);
        let g = b.gpu();
        let g = g.lock().unwrap();
        assert_eq!((g.channel_count(), g.tsg_count()), (0, 0));
        assert!(g.memory().is_empty());
    }

    #[test]
    fn bad_parameters_get_rm_errors() {
        let mut b = sim();
        let va = base(&mut b, 1, C1);
        assert_eq!(
            tsg(&mut b, 1, C1, TSG, 0x55),
            NvStatus::ERR_INVALID_ARGUMENT
        );
        ok(tsg(&mut b, 1, C1, TSG, 0));
        let alloc_channel = |b: &mut SimBackend, p: &NvChannelAllocParams| {
            alloc(b, 1, C1, TSG, CH, HOPPER_CHANNEL_GPFIFO_A, p).0
        };
        let mut p = NvChannelAllocParams {
            gpFifoOffset: va + 0x1000,
            gpFifoEntries: 3,
            ..Default::default()
        };
        p.hUserdMemory[0] = MEM;
        assert_eq!(alloc_channel(&mut b, &p), NvStatus::ERR_INVALID_ARGUMENT);
        p.gpFifoEntries = 256;
        p.userdOffset[0] = (4 << 20) - 256;
        assert_eq!(alloc_channel(&mut b, &p), NvStatus::ERR_INVALID_OFFSET);
        p.userdOffset[0] = 0;
        p.hUserdMemory[0] = 0;
        ok(alloc_channel(&mut b, &p));
        assert_eq!(
            alloc_channel(&mut b, &p),
            NvStatus::ERR_INSERT_DUPLICATE_NAME
        );
        assert_eq!(
            memory(&mut b, 1, C1, 0x40, class::NV01_MEMORY_LOCAL_USER, 1 << 60),
            NvStatus::ERR_NO_MEMORY
        );
        assert_eq!(
            memory(&mut b, 1, C1, 0x41, class::NV01_MEMORY_LOCAL_USER, 0),
            NvStatus::ERR_INVALID_ARGUMENT
        );
        let mut m = Nvos46Parameters {
            hClient: C1,
            hDevice: DEV,
            hDma: VAS,
            hMemory: MEM,
            offset: 1,
            ..Default::default()
        };
        assert_eq!(b.map_memory_dma(1, &mut m), NvStatus::ERR_INVALID_OFFSET);
        m.offset = 0;
        m.flags = NVOS46_FLAGS_DMA_OFFSET_FIXED;
        m.dmaOffset = va;
        assert_eq!(
            b.map_memory_dma(1, &mut m),
            NvStatus::ERR_INVALID_OFFSET,
            "overlaps the first mapping"
        );
        let mut c = Nvos33Parameters {
            hClient: C1,
            hDevice: DEV,
            hMemory: MEM,
            offset: 4 << 20,
            length: 1,
            ..Default::default()
        };
        assert_eq!(b.map_memory(1, &mut c), NvStatus::ERR_INVALID_LIMIT);
        assert_eq!(
            b.control(1, C1, TSG, NVA06C_CTRL_CMD_SET_TIMESLICE, &mut [0u8; 4]),
            NvStatus::ERR_INVALID_PARAM_STRUCT
        );
        assert_eq!(
            b.control(1, C1, SUB, 0x2080_0102, &mut [0u8; 564]),
            NvStatus::ERR_NOT_SUPPORTED
        );
        assert_eq!(
            b.control(1, C1, CH, NVA06C_CTRL_CMD_SET_TIMESLICE, &mut [0u8; 8]),
            NvStatus::ERR_INVALID_OBJECT_HANDLE
        );
    }
}
