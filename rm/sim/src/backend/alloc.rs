//! Allocations by class: the root client, device, subdevice, VA space, TSG (channel group),
//! context share (subcontext), GPFIFO channel, the engine objects on a channel, usermode,
//! events, memory, and memory from the caller's own pages (OS descriptors).

use super::{engine_type_or_gr0, status_of, SimBackend, SimObject, DMA_VA_BASE};
use crate::channel::ChannelConfig;
use crate::engine::{EngineKind, NV2080_ENGINE_TYPE_COPY0};
use crate::fault::ErrorNotifier;
use crate::memory::{Aperture, PAGE_SIZE};
use crate::userd::Userd;
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvChannelGroupAllocationParameters, NvCtxshareAllocationParameters,
    NvMemoryAllocationParams, Nvb0b5AllocationParameters,
};
use rm_abi::class;
use rm_abi::{read_struct, write_struct, NvStatus};
use rm_core::backend::{AllocRequest, ExternalPages};

impl SimBackend {
    /// [`rm_core::backend::Backend::alloc`]: registers a root client, or makes the object of
    /// `req.class` under its parent and records it.
    pub(super) fn alloc_object(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus {
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
                self.alloc_memory(req, params)
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

    /// [`rm_core::backend::Backend::alloc_os_descriptor`]: memory over the caller's pages,
    /// under a device.
    pub(super) fn alloc_external_memory(
        &mut self,
        req: &AllocRequest,
        pages: ExternalPages,
    ) -> NvStatus {
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
                    .alloc_memory(req.gfid, Aperture::Sysmem, PAGE_SIZE)
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

    fn alloc_memory(
        &mut self,
        req: &AllocRequest,
        params: &mut [u8],
    ) -> Result<SimObject, NvStatus> {
        let mut p: NvMemoryAllocationParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)?;
        if p.size == 0 {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        let aperture = if req.class == class::NV01_MEMORY_LOCAL_USER {
            Aperture::Vidmem
        } else {
            Aperture::Sysmem
        };
        let mut gpu = self.lock();
        let id = gpu
            .alloc_memory(req.gfid, aperture, p.size)
            .map_err(|e| status_of(&e))?;
        let size = gpu.memory().size(id).unwrap_or(p.size);
        drop(gpu);
        p.limit = size - 1;
        p.offset = 0;
        write_struct(&p, params);
        Ok(SimObject::Memory { id })
    }
}
