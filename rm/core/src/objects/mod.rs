//! The per-GFID object model: one module per object kind, as RM keeps one file per class.
//!
//! A [`Client`] owns a tree of [`Object`]s keyed by handle. Object handles are per client (as in
//! RM) and pass to the backend unchanged; the client's own handle is translated to a host handle
//! from the GFID's range (see `core::handles`). Each kind's module validates its alloc params
//! against the tree (parent kind, handles the params name) and sanitises fields a guest must not
//! set, before the backend sees them.

pub mod channel;
pub mod channel_group;
pub mod client;
pub mod context_share;
pub mod device;
pub mod engine_object;
pub mod event;
pub mod memory;
pub mod subdevice;
pub mod usermode;
pub mod vaspace;

pub use client::Client;

use crate::backend::GpuInfo;
use rm_abi::class;
use rm_abi::{Handle, NvStatus};
use std::collections::BTreeSet;

/// What kind of object a handle names, with the state the core keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectKind {
    /// The client itself (`NV01_ROOT_CLIENT`).
    Client,
    /// `NV01_DEVICE_0`.
    Device,
    /// `NV20_SUBDEVICE_0`.
    Subdevice,
    /// `FERMI_VASPACE_A`.
    VaSpace,
    /// `KEPLER_CHANNEL_GROUP_A` (TSG).
    ChannelGroup(channel_group::ChannelGroup),
    /// `FERMI_CONTEXT_SHARE_A`.
    ContextShare(context_share::ContextShare),
    /// A GPFIFO channel.
    Channel(channel::Channel),
    /// A compute or copy engine object on a channel.
    EngineObject(engine_object::EngineObject),
    /// System or video memory.
    Memory(memory::Memory),
    /// `HOPPER_USERMODE_A` (the doorbell page).
    Usermode,
    /// An event (`NV01_EVENT_OS_EVENT`).
    Event(event::Event),
}

/// One RM object of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Class id.
    pub class: u32,
    /// Parent handle (0 for the client).
    pub parent: Handle,
    /// Children, freed with this object.
    pub children: BTreeSet<Handle>,
    /// Objects whose params name this one (e.g. channels using this VA space); freed with it,
    /// as RM frees a resource's dependants.
    pub dependants: BTreeSet<Handle>,
    /// Objects this one names in its params.
    pub depends_on: Vec<Handle>,
    /// Live CPU mappings of this object: (cookie from the backend, device handle used).
    pub cpu_mappings: Vec<(u64, Handle)>,
    /// Kind and state.
    pub kind: ObjectKind,
}

/// What an alloc's validation needs to see.
pub struct AllocContext<'a> {
    /// The client the object is allocated in.
    pub client: &'a Client,
    /// Parent handle.
    pub parent_handle: Handle,
    /// Parent object.
    pub parent: &'a Object,
    /// The GPU.
    pub gpu: &'a GpuInfo,
}

impl<'a> std::fmt::Debug for AllocContext<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AllocContext").finish_non_exhaustive()
    }
}

/// The result of validating an alloc: the new object's state, the objects it names and the
/// framebuffer it charges to the vGPU.
#[derive(Debug)]
pub struct Constructed {
    /// Kind and state.
    pub kind: ObjectKind,
    /// Objects the params name (same client).
    pub depends_on: Vec<Handle>,
    /// Bytes of video memory charged to the GFID's framebuffer quota.
    pub fb_charge: u64,
    /// Bytes of system memory charged to the GFID's system memory quota.
    pub sysmem_charge: u64,
}

impl Constructed {
    /// A plain object with no dependencies and no charge.
    pub fn plain(kind: ObjectKind) -> Self {
        Self {
            kind,
            depends_on: Vec::new(),
            fb_charge: 0,
            sysmem_charge: 0,
        }
    }
}

impl AllocContext<'_> {
    /// Requires the parent to be of `kind`'s shape, else `NV_ERR_INVALID_OBJECT_PARENT`.
    pub fn require_parent(&self, ok: impl Fn(&ObjectKind) -> bool) -> Result<(), NvStatus> {
        if ok(&self.parent.kind) {
            Ok(())
        } else {
            Err(NvStatus::ERR_INVALID_OBJECT_PARENT)
        }
    }

    /// Resolves an optional handle in params: 0 is "none"; anything else must name an object of
    /// this client that `ok` accepts, else `NV_ERR_INVALID_OBJECT_HANDLE` / `NV_ERR_INVALID_ARGUMENT`.
    pub fn optional_ref(
        &self,
        h: Handle,
        ok: impl Fn(&ObjectKind) -> bool,
    ) -> Result<Option<Handle>, NvStatus> {
        if h == 0 {
            return Ok(None);
        }
        let obj = self
            .client
            .get(h)
            .ok_or(NvStatus::ERR_INVALID_OBJECT_HANDLE)?;
        if ok(&obj.kind) {
            Ok(Some(h))
        } else {
            Err(NvStatus::ERR_INVALID_ARGUMENT)
        }
    }

    /// The device this parent lives under (the parent itself when it is a device).
    pub fn device_of_parent(&self) -> Option<Handle> {
        self.client.device_of(self.parent_handle)
    }
}

/// Validates an alloc of `class` under `ctx.parent`, sanitising `params` in place.
/// `Err(NV_ERR_INVALID_CLASS)` for classes the core does not model.
pub fn construct(
    ctx: &AllocContext<'_>,
    class_id: u32,
    params: &mut [u8],
) -> Result<Constructed, NvStatus> {
    match class_id {
        class::NV01_DEVICE_0 => device::construct(ctx, params),
        class::NV20_SUBDEVICE_0 => subdevice::construct(ctx, params),
        class::FERMI_VASPACE_A => vaspace::construct(ctx, params),
        class::KEPLER_CHANNEL_GROUP_A => channel_group::construct(ctx, params),
        class::FERMI_CONTEXT_SHARE_A => context_share::construct(ctx, params),
        class::VOLTA_CHANNEL_GPFIFO_A
        | class::AMPERE_CHANNEL_GPFIFO_A
        | class::HOPPER_CHANNEL_GPFIFO_A => channel::construct(ctx, params),
        class::HOPPER_COMPUTE_A | class::HOPPER_DMA_COPY_A => {
            engine_object::construct(ctx, class_id, params)
        }
        class::NV01_MEMORY_SYSTEM | class::NV01_MEMORY_LOCAL_USER => {
            memory::construct(ctx, class_id, params)
        }
        class::HOPPER_USERMODE_A => usermode::construct(ctx, params),
        class::NV01_EVENT_OS_EVENT => event::construct(ctx, params),
        _ => Err(NvStatus::ERR_INVALID_CLASS),
    }
}

/// Classes the core models (the GPU must also list them in `GpuInfo::classes`).
pub const MODELED_CLASSES: &[u32] = &[
    class::NV01_ROOT_CLIENT,
    class::NV01_DEVICE_0,
    class::NV20_SUBDEVICE_0,
    class::FERMI_VASPACE_A,
    class::KEPLER_CHANNEL_GROUP_A,
    class::FERMI_CONTEXT_SHARE_A,
    class::VOLTA_CHANNEL_GPFIFO_A,
    class::AMPERE_CHANNEL_GPFIFO_A,
    class::HOPPER_CHANNEL_GPFIFO_A,
    class::HOPPER_COMPUTE_A,
    class::HOPPER_DMA_COPY_A,
    class::NV01_MEMORY_SYSTEM,
    class::NV01_MEMORY_LOCAL_USER,
    class::HOPPER_USERMODE_A,
    class::NV01_EVENT_OS_EVENT,
];

/// Reads a params struct (the alloc path sized `params` from the class table).
pub(crate) fn read<T: zerocopy::FromBytes>(params: &[u8]) -> Result<T, NvStatus> {
    rm_abi::read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)
}

/// Writes a params struct back.
pub(crate) fn write<T: zerocopy::IntoBytes + zerocopy::Immutable>(v: &T, params: &mut [u8]) {
    rm_abi::write_struct(v, params);
}
