//! Shared test helpers: a recording fake backend that checks the backend contract.

use crate::backend::{AllocRequest, Backend, Gfid, GpuInfo};
use rm_abi::alloc_params::{NV2080_ENGINE_TYPE_COPY0, NV2080_ENGINE_TYPE_GR0};
use rm_abi::ctrl::*;
use rm_abi::nvos::*;
use rm_abi::{class, read_struct, Handle, NvStatus};
use std::collections::{BTreeMap, BTreeSet};

/// The GPU the fake reports.
pub fn fake_gpu() -> GpuInfo {
    GpuInfo {
        name: "NVIDIA H200 (fake)".into(),
        uuid: [0x11; 16],
        pci_vendor_id: 0x10de,
        pci_device_id: 0x2335,
        pci_subsystem_vendor_id: 0x10de,
        pci_subsystem_id: 0x18be,
        architecture: 0x180,
        implementation: 0,
        fb_bytes: 16 << 30,
        host_memory_bytes: u64::MAX,
        classes: crate::objects::MODELED_CLASSES.to_vec(),
        engines: vec![
            NV2080_ENGINE_TYPE_GR0,
            NV2080_ENGINE_TYPE_COPY0,
            NV2080_ENGINE_TYPE_COPY0 + 1,
        ],
        gr_copy_engine: NV2080_ENGINE_TYPE_COPY0 + 1,
        gr: crate::backend::GrConfig {
            tpc_masks: vec![0x3, 0x1],
            ..Default::default()
        },
    }
}

/// One backend call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `Backend::alloc`: the request and its params.
    Alloc(AllocRequest, Vec<u8>),
    /// `Backend::free`: GFID, client, object.
    Free(Gfid, Handle, Handle),
    /// `Backend::control`: GFID, client, object, command, params.
    Control(Gfid, Handle, Handle, u32, Vec<u8>),
    /// `Backend::map_memory`: GFID, client, memory.
    Map(Gfid, Handle, Handle),
    /// `Backend::unmap_memory`: GFID, client, memory.
    Unmap(Gfid, Handle, Handle),
    /// `Backend::map_memory_dma`: GFID, client, VA space or DMA context, memory.
    MapDma(Gfid, Handle, Handle, Handle),
    /// `Backend::unmap_memory_dma`: GFID, client, VA space or DMA context, memory.
    UnmapDma(Gfid, Handle, Handle, Handle),
    /// `Backend::doorbell`: GFID, work-submit token.
    Doorbell(Gfid, u32),
    /// `Backend::idle_channels`: GFID, client, device.
    Idle(Gfid, Handle, Handle),
}

/// A backend that keeps the object set the core told it about, panics on contract violations
/// (double alloc, free of an object with live children, handle reuse), and records every call.
#[derive(Default)]
pub struct FakeBackend {
    /// Live objects: (client, object) to (GFID, class, parent).
    pub live: BTreeMap<(Handle, Handle), (Gfid, u32, Handle)>,
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// Contents of memory objects, by (client, object).
    pub memory: BTreeMap<(Handle, Handle), Vec<u8>>,
    next_chid: u32,
    next_cookie: u64,
    next_va: u64,
    tokens: BTreeMap<(Handle, Handle), u32>,
}

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend").finish_non_exhaustive()
    }
}

impl FakeBackend {
    /// Handles the core told the backend to hold.
    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    /// Host client handles seen in any call.
    pub fn clients_touched_by(&self, gfid: Gfid) -> BTreeSet<Handle> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Alloc(r, _) if r.gfid == gfid => Some(r.client),
                Call::Free(g, c, _)
                | Call::Control(g, c, ..)
                | Call::Map(g, c, _)
                | Call::Unmap(g, c, _)
                    if *g == gfid =>
                {
                    Some(*c)
                }
                _ => None,
            })
            .collect()
    }
}

impl Backend for FakeBackend {
    fn gpu_info(&self) -> GpuInfo {
        fake_gpu()
    }

    fn alloc(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus {
        assert!(
            !self.live.contains_key(&(req.client, req.object)),
            "double alloc {req:?}"
        );
        if req.class != class::NV01_ROOT_CLIENT {
            let parent = self
                .live
                .get(&(req.client, req.parent))
                .expect("parent must be live");
            assert_eq!(parent.0, req.gfid, "parent of another GFID");
        }
        self.calls.push(Call::Alloc(*req, params.to_vec()));
        match req.class {
            class::HOPPER_CHANNEL_GPFIFO_A => {
                let chid = self.next_chid;
                self.next_chid += 1;
                params[132..136].copy_from_slice(&chid.to_le_bytes());
                self.tokens.insert((req.client, req.object), chid);
            }
            class::NV01_MEMORY_LOCAL_USER | class::NV01_MEMORY_SYSTEM => {
                let size = u64::from_le_bytes(params[64..72].try_into().unwrap());
                self.memory.insert(
                    (req.client, req.object),
                    vec![0; size.min(1 << 24) as usize],
                );
                params[88..96].copy_from_slice(&(size - 1).to_le_bytes());
            }
            _ => {}
        }
        self.live
            .insert((req.client, req.object), (req.gfid, req.class, req.parent));
        NvStatus::OK
    }

    fn free(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus {
        self.calls.push(Call::Free(gfid, client, object));
        let children = self
            .live
            .iter()
            .filter(|(k, v)| k.0 == client && v.2 == object && k.1 != object)
            .count();
        if object == client {
            assert_eq!(
                self.live.keys().filter(|k| k.0 == client).count(),
                1,
                "client freed before its objects"
            );
        } else {
            assert_eq!(children, 0, "object {object:#x} freed before its children");
        }
        let (g, ..) = self
            .live
            .remove(&(client, object))
            .expect("free of an object the backend does not hold");
        assert_eq!(g, gfid);
        self.memory.remove(&(client, object));
        self.tokens.remove(&(client, object));
        NvStatus::OK
    }

    fn control(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        self.calls
            .push(Call::Control(gfid, client, object, cmd, params.to_vec()));
        assert!(
            self.live.contains_key(&(client, object)),
            "control on an object the backend does not hold"
        );
        match cmd {
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN => {
                let chid = self.tokens[&(client, object)];
                params.copy_from_slice(&chid.to_le_bytes());
            }
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS => {
                let p: Nv2080CtrlFifoDisableChannelsParams = read_struct(params).unwrap();
                for i in 0..p.numChannels as usize {
                    let owner = self
                        .live
                        .get(&(p.hClientList[i], p.hChannelList[i]))
                        .expect("disable of an unknown channel");
                    assert_eq!(owner.0, gfid, "disable reached another GFID's channel");
                }
            }
            _ => {}
        }
        NvStatus::OK
    }

    fn map_memory(&mut self, gfid: Gfid, p: &mut Nvos33Parameters) -> NvStatus {
        self.calls.push(Call::Map(gfid, p.hClient, p.hMemory));
        self.next_cookie += 0x1000;
        p.pLinearAddress = 0x7000_0000_0000 + self.next_cookie;
        NvStatus::OK
    }

    fn unmap_memory(&mut self, gfid: Gfid, p: &mut Nvos34Parameters) -> NvStatus {
        self.calls.push(Call::Unmap(gfid, p.hClient, p.hMemory));
        NvStatus::OK
    }

    fn map_memory_dma(&mut self, gfid: Gfid, p: &mut Nvos46Parameters) -> NvStatus {
        self.calls
            .push(Call::MapDma(gfid, p.hClient, p.hDma, p.hMemory));
        self.next_va += 0x10_0000;
        p.dmaOffset = 0x1_0000_0000 + self.next_va;
        NvStatus::OK
    }

    fn unmap_memory_dma(&mut self, gfid: Gfid, p: &mut Nvos47Parameters) -> NvStatus {
        self.calls
            .push(Call::UnmapDma(gfid, p.hClient, p.hDma, p.hMemory));
        NvStatus::OK
    }

    fn read_memory(
        &mut self,
        _gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        let m = &self.memory[&(client, memory)];
        buf.copy_from_slice(&m[offset as usize..offset as usize + buf.len()]);
        NvStatus::OK
    }

    fn write_memory(
        &mut self,
        _gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        let m = self.memory.get_mut(&(client, memory)).unwrap();
        m[offset as usize..offset as usize + data.len()].copy_from_slice(data);
        NvStatus::OK
    }

    fn doorbell(&mut self, gfid: Gfid, token: u32) -> NvStatus {
        self.calls.push(Call::Doorbell(gfid, token));
        NvStatus::OK
    }

    fn idle_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channel: Handle,
        _timeout_us: u32,
    ) -> NvStatus {
        self.calls.push(Call::Idle(gfid, client, channel));
        NvStatus::OK
    }
}
