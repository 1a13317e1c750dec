//! Shared test helpers: a recording fake backend that checks the backend contract, and a
//! scripted guest that encodes escapes into guest memory the way a client library does.

use crate::backend::{AllocRequest, Backend, Gfid, GpuInfo};
use crate::testing::{self, RmCalls};
use crate::{FdId, GuestMemory, Node, Rm, VecGuestMemory, VgpuConfig};
use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::*;
use rm_abi::{class, read_struct, Handle, NvStatus};
use std::collections::{BTreeMap, BTreeSet};
use zerocopy::{FromBytes, Immutable, IntoBytes};

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
        classes: crate::objects::MODELED_CLASSES.to_vec(),
        engines: vec![
            NV2080_ENGINE_TYPE_GR0,
            NV2080_ENGINE_TYPE_COPY0,
            NV2080_ENGINE_TYPE_COPY0 + 1,
        ],
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

/// Where the scripted guest keeps its structs in its memory.
pub const GUEST_BASE: u64 = 0x10_0000;
/// Size of the scripted guest's memory.
pub const GUEST_SIZE: usize = 1 << 20;
const ARG: u64 = GUEST_BASE;
const PARAMS: u64 = GUEST_BASE + 0x1000;
const XFER_ARG: u64 = GUEST_BASE + 0x800;

/// A scripted guest process: one ctl fd and one device fd, talking escapes through memory.
pub struct Guest {
    /// The GFID it runs in.
    pub gfid: Gfid,
    /// Its `/dev/nvidiactl` fd.
    pub ctl: FdId,
    /// Its `/dev/nvidia0` fd.
    pub dev: FdId,
    /// Its memory, where escapes and params are encoded.
    pub mem: VecGuestMemory,
}

impl std::fmt::Debug for Guest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guest").finish_non_exhaustive()
    }
}

impl Guest {
    /// Creates the vGPU `gfid` if needed and opens the two fds.
    pub fn new<B: Backend>(rm: &mut Rm<B>, gfid: Gfid, quota: u64) -> Self {
        let _ = rm.create_vgpu(gfid, VgpuConfig::with_quota(quota));
        let ctl = rm.open(gfid, Node::Ctl).unwrap();
        let dev = rm.open(gfid, Node::Device(0)).unwrap();
        Self {
            gfid,
            ctl,
            dev,
            mem: VecGuestMemory::new(GUEST_BASE, GUEST_SIZE),
        }
    }

    /// Issues escape `esc` with argument `arg` on `fd`; returns the ioctl result and the
    /// argument as the core left it.
    pub fn escape<B: Backend, T: FromBytes + IntoBytes + Immutable>(
        &mut self,
        rm: &mut Rm<B>,
        fd: FdId,
        esc: Escape,
        arg: &T,
    ) -> (i32, T) {
        let bytes = arg.as_bytes();
        self.mem.write(ARG, bytes).unwrap();
        let req = IoctlRequest::encode(esc as u8, bytes.len() as u32).unwrap();
        let ret = rm.ioctl(self.gfid, fd, req, ARG, &mut self.mem);
        let mut out = vec![0u8; bytes.len()];
        self.mem.read(ARG, &mut out).unwrap();
        (ret, read_struct(&out).unwrap())
    }

    /// The same through `NV_ESC_IOCTL_XFER_CMD`.
    pub fn escape_xfer<B: Backend, T: FromBytes + IntoBytes + Immutable>(
        &mut self,
        rm: &mut Rm<B>,
        fd: FdId,
        esc: Escape,
        arg: &T,
    ) -> (i32, T) {
        let bytes = arg.as_bytes();
        self.mem.write(ARG, bytes).unwrap();
        let x = rm_abi::frontend::NvIoctlXfer {
            cmd: esc as u32,
            size: bytes.len() as u32,
            ptr: ARG,
        };
        self.mem.write(XFER_ARG, x.as_bytes()).unwrap();
        let req = IoctlRequest::encode(Escape::IOCTL_XFER_CMD as u8, 16).unwrap();
        let ret = rm.ioctl(self.gfid, fd, req, XFER_ARG, &mut self.mem);
        let mut out = vec![0u8; bytes.len()];
        self.mem.read(ARG, &mut out).unwrap();
        (ret, read_struct(&out).unwrap())
    }

    /// `RM_ALLOC` (NVOS64) of `class` under `parent` with `params`; returns status and handle.
    pub fn alloc<B: Backend>(
        &mut self,
        rm: &mut Rm<B>,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &[u8],
    ) -> (NvStatus, Handle) {
        let p_alloc = if params.is_empty() { 0 } else { PARAMS };
        self.mem.write(PARAMS, params).unwrap();
        let arg = Nvos64Parameters {
            hRoot: client,
            hObjectParent: parent,
            hObjectNew: new,
            hClass: class_id,
            pAllocParms: p_alloc,
            ..Default::default()
        };
        let (ret, out) = self.escape(rm, self.ctl, Escape::RM_ALLOC, &arg);
        assert_eq!(ret, 0);
        (NvStatus(out.status), out.hObjectNew)
    }

    /// Reads back the alloc params after an alloc.
    pub fn alloc_params_out<T: FromBytes>(&self) -> T {
        let mut b = vec![0u8; core::mem::size_of::<T>()];
        self.mem.read(PARAMS, &mut b).unwrap();
        read_struct(&b).unwrap()
    }

    /// Allocates a root client.
    pub fn client<B: Backend>(&mut self, rm: &mut Rm<B>) -> Handle {
        let (s, h) = self.alloc(rm, 0, 0, 0, class::NV01_ROOT, &[]);
        assert_eq!(s, NvStatus::OK);
        h
    }

    /// `RM_CONTROL` with a typed param struct; returns status and the params after the call.
    pub fn control<B: Backend, T: FromBytes + IntoBytes + Immutable>(
        &mut self,
        rm: &mut Rm<B>,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &T,
    ) -> (NvStatus, T) {
        let mut b = params.as_bytes().to_vec();
        let s = self.control_raw(rm, client, object, cmd, &mut b);
        (s, read_struct(&b).unwrap())
    }

    /// `RM_CONTROL` with param bytes of any size, in place.
    pub fn control_raw<B: Backend>(
        &mut self,
        rm: &mut Rm<B>,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        self.mem.write(PARAMS, params).unwrap();
        let arg = Nvos54Parameters {
            hClient: client,
            hObject: object,
            cmd,
            params: if params.is_empty() { 0 } else { PARAMS },
            paramsSize: params.len() as u32,
            ..Default::default()
        };
        let (ret, out) = self.escape(rm, self.ctl, Escape::RM_CONTROL, &arg);
        assert_eq!(ret, 0);
        self.mem.read(PARAMS, params).unwrap();
        NvStatus(out.status)
    }

    /// `RM_FREE`.
    pub fn free<B: Backend>(
        &mut self,
        rm: &mut Rm<B>,
        client: Handle,
        parent: Handle,
        object: Handle,
    ) -> NvStatus {
        let arg = Nvos00Parameters {
            hRoot: client,
            hObjectParent: parent,
            hObjectOld: object,
            status: 0,
        };
        let (ret, out) = self.escape(rm, self.ctl, Escape::RM_FREE, &arg);
        assert_eq!(ret, 0);
        NvStatus(out.status)
    }
}

/// A guest with the core it talks to, as the shared builders' [`RmCalls`].
pub struct Calls<'a, B: Backend> {
    /// The core.
    pub rm: &'a mut Rm<B>,
    /// The guest.
    pub g: &'a mut Guest,
}

impl<'a, B: Backend> std::fmt::Debug for Calls<'a, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calls").finish_non_exhaustive()
    }
}

impl<B: Backend> RmCalls for Calls<'_, B> {
    fn alloc(
        &mut self,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &[u8],
    ) -> (NvStatus, Handle) {
        self.g.alloc(self.rm, client, parent, new, class_id, params)
    }

    fn control_bytes(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        self.g.control_raw(self.rm, client, object, cmd, params)
    }
}

/// Handles of a standard object tree.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    /// `client`.
    pub client: Handle,
    /// `device`.
    pub device: Handle,
    /// `subdevice`.
    pub subdevice: Handle,
    /// `vaspace`.
    pub vaspace: Handle,
    /// `tsg`.
    pub tsg: Handle,
    /// `ctxshare`.
    pub ctxshare: Handle,
    /// `userd`.
    pub userd: Handle,
    /// `channel`.
    pub channel: Handle,
    /// `compute`.
    pub compute: Handle,
    /// `copy_tsg`.
    pub copy_tsg: Handle,
    /// `copy_channel`.
    pub copy_channel: Handle,
    /// `copy`.
    pub copy: Handle,
}

/// Builds the shared channel tree (client, device, subdevice, VA space, a GR TSG with context
/// share, USERD memory, channel) plus a compute object, and a copy-engine TSG with a channel
/// and copy object; asserts each alloc succeeds.
pub fn build_tree<B: Backend>(rm: &mut Rm<B>, g: &mut Guest) -> Tree {
    let mut c = Calls { rm, g };
    let t = testing::channel_tree(&mut c);
    let b = t.base;
    let compute = c.alloc_ok(
        b.client,
        t.channel,
        testing::COMPUTE,
        class::HOPPER_COMPUTE_A,
        NvGrAllocationParameters::default().as_bytes(),
    );
    let copy_tsg = c.alloc_ok(
        b.client,
        b.device,
        0x5c00_000a,
        class::KEPLER_CHANNEL_GROUP_A,
        NvChannelGroupAllocationParameters {
            hVASpace: b.vaspace,
            engineType: NV2080_ENGINE_TYPE_COPY0,
            ..Default::default()
        }
        .as_bytes(),
    );
    let copy_channel =
        testing::channel(&mut c, &b, copy_tsg, 0, 0, 0x5c00_000b, 0x1_0000_0000, 128);
    let copy = c.alloc_ok(
        b.client,
        copy_channel,
        0x5c00_0009,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters::default().as_bytes(),
    );
    Tree {
        client: b.client,
        device: b.device,
        subdevice: b.subdevice,
        vaspace: b.vaspace,
        tsg: t.tsg,
        ctxshare: t.ctxshare,
        userd: t.userd,
        channel: t.channel,
        compute,
        copy_tsg,
        copy_channel,
        copy,
    }
}
