//! Test support (cargo feature `testing`): the object trees a scripted guest builds, written
//! once over [`RmCalls`], so the RM core's and the sim's tests ([`rm_client::RmClient`] over
//! [`transport::CoreTransport`]) and the vGPU device's tests (going through the escape
//! virtqueue) build them the same way.

pub mod fixtures;
pub mod traces;
pub mod transport;

/// The RM client library the tests drive the core with, re-exported so that crates testing
/// through this feature reach it without depending on it themselves.
pub use rm_client;

use rm_abi::alloc_params::*;
use rm_abi::ctrl::{
    NvA06cCtrlGpfifoScheduleParams, NvC36fCtrlGpfifoGetWorkSubmitTokenParams,
    NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
};
use rm_abi::{class, read_struct, Handle, NvStatus};
use rm_client::RmClient;
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The two RM calls a scripted client needs, however it reaches RM (directly, or through a
/// device's escape queue). Both go through the client's ctl fd.
pub trait RmCalls {
    /// `RM_ALLOC` (NVOS64) of `class_id` under `parent`; returns the status and the new handle.
    fn alloc(
        &mut self,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &[u8],
    ) -> (NvStatus, Handle);

    /// `RM_CONTROL` with `params` in place; returns the status.
    fn control_bytes(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus;

    /// `RM_CONTROL` with a typed param struct; returns the status and the params after it.
    fn control<T: FromBytes + IntoBytes + Immutable>(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &T,
    ) -> (NvStatus, T)
    where
        Self: Sized,
    {
        let mut b = params.as_bytes().to_vec();
        let s = self.control_bytes(client, object, cmd, &mut b);
        (s, read_struct(&b).expect("params keep their size"))
    }

    /// An alloc that must succeed.
    fn alloc_ok(
        &mut self,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &[u8],
    ) -> Handle {
        let (s, h) = self.alloc(client, parent, new, class_id, params);
        assert_eq!(s, NvStatus::OK, "alloc of class {class_id:#x} as {new:#x}");
        h
    }
}

/// The RM client library as the builders' client: its status-returning calls, with a failed
/// ioctl (the transport's or the frontend's error, never RM's) a panic, as in a test.
impl RmCalls for RmClient<'_> {
    fn alloc(
        &mut self,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &[u8],
    ) -> (NvStatus, Handle) {
        let mut p = params.to_vec();
        self.alloc_status(client, parent, new, class_id, &mut p)
            .expect("RM_ALLOC ioctl")
    }

    fn control_bytes(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        self.control_status(client, object, cmd, params)
            .expect("RM_CONTROL ioctl")
    }
}

/// Handle of the device every tree uses (guest-chosen handles, as CUDA picks them).
pub const DEVICE: Handle = 0x5c00_0001;
/// Subdevice handle.
pub const SUBDEVICE: Handle = 0x5c00_0002;
/// VA space handle.
pub const VASPACE: Handle = 0x5c00_0003;
/// GR TSG handle.
pub const TSG: Handle = 0x5c00_0004;
/// Context share handle.
pub const CTXSHARE: Handle = 0x5c00_0005;
/// USERD memory handle.
pub const USERD: Handle = 0x5c00_0006;
/// Channel handle.
pub const CHANNEL: Handle = 0x5c00_0007;
/// Compute object handle.
pub const COMPUTE: Handle = 0x5c00_0008;

/// Handles of a root client with its device, subdevice and VA space.
#[derive(Debug, Clone, Copy)]
pub struct Base {
    /// Root client (handle chosen by RM).
    pub client: Handle,
    /// `NV01_DEVICE_0`.
    pub device: Handle,
    /// `NV20_SUBDEVICE_0`.
    pub subdevice: Handle,
    /// `FERMI_VASPACE_A`.
    pub vaspace: Handle,
}

/// Allocates a root client, device, subdevice and VA space; asserts each succeeds.
pub fn base(c: &mut impl RmCalls) -> Base {
    base_with(c, true)
}

/// [`base`], with the subdevice only if `subdevice` (else `Base::subdevice` is 0).
pub fn base_with(c: &mut impl RmCalls, subdevice: bool) -> Base {
    let client = c.alloc_ok(0, 0, 0, class::NV01_ROOT_CLIENT, &[]);
    let device = c.alloc_ok(
        client,
        client,
        DEVICE,
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    );
    let subdevice = if subdevice {
        c.alloc_ok(
            client,
            device,
            SUBDEVICE,
            class::NV20_SUBDEVICE_0,
            Nv2080AllocParameters::default().as_bytes(),
        )
    } else {
        0
    };
    let vaspace = c.alloc_ok(
        client,
        device,
        VASPACE,
        class::FERMI_VASPACE_A,
        NvVaspaceAllocationParameters::default().as_bytes(),
    );
    Base {
        client,
        device,
        subdevice,
        vaspace,
    }
}

/// Allocates a TSG on `engine_type` (an `NV2080_ENGINE_TYPE_*`) in `b`'s VA space as `tsg`,
/// with a context share `ctxshare`; returns both handles.
pub fn channel_group(
    c: &mut impl RmCalls,
    b: &Base,
    engine_type: u32,
    tsg: Handle,
    ctxshare: Handle,
) -> (Handle, Handle) {
    let tsg = c.alloc_ok(
        b.client,
        b.device,
        tsg,
        class::KEPLER_CHANNEL_GROUP_A,
        NvChannelGroupAllocationParameters {
            hVASpace: b.vaspace,
            engineType: engine_type,
            ..Default::default()
        }
        .as_bytes(),
    );
    let ctxshare = c.alloc_ok(
        b.client,
        tsg,
        ctxshare,
        class::FERMI_CONTEXT_SHARE_A,
        NvCtxshareAllocationParameters {
            hVASpace: b.vaspace,
            ..Default::default()
        }
        .as_bytes(),
    );
    (tsg, ctxshare)
}

/// Allocates `HOPPER_CHANNEL_GPFIFO_A` `new` in `tsg` with `entries` GPFIFO entries at GPU VA
/// `gpfifo_va`, USERD in `userd` (0: RM's own) and the context share `ctxshare` (0: none).
#[allow(clippy::too_many_arguments)]
pub fn channel(
    c: &mut impl RmCalls,
    b: &Base,
    tsg: Handle,
    ctxshare: Handle,
    userd: Handle,
    new: Handle,
    gpfifo_va: u64,
    entries: u32,
) -> Handle {
    let mut p = NvChannelAllocParams {
        gpFifoOffset: gpfifo_va,
        gpFifoEntries: entries,
        hContextShare: ctxshare,
        ..Default::default()
    };
    p.hUserdMemory[0] = userd;
    c.alloc_ok(
        b.client,
        tsg,
        new,
        class::HOPPER_CHANNEL_GPFIFO_A,
        p.as_bytes(),
    )
}

/// Handles of a guest's tree down to one GR channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelTree {
    /// Client, device, subdevice, VA space.
    pub base: Base,
    /// The GR TSG.
    pub tsg: Handle,
    /// Its context share.
    pub ctxshare: Handle,
    /// The channel's USERD memory (64 KiB of video memory).
    pub userd: Handle,
    /// The channel (128 GPFIFO entries at GPU VA 4 GiB).
    pub channel: Handle,
}

/// Builds [`base`], a GR TSG with a context share, USERD memory and a channel; asserts each
/// alloc succeeds.
pub fn channel_tree(c: &mut impl RmCalls) -> ChannelTree {
    let base = base(c);
    let (tsg, ctxshare) = channel_group(c, &base, NV2080_ENGINE_TYPE_GR0, TSG, CTXSHARE);
    let userd = c.alloc_ok(
        base.client,
        base.device,
        USERD,
        class::NV01_MEMORY_LOCAL_USER,
        NvMemoryAllocationParams {
            owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
            size: 0x1_0000,
            ..Default::default()
        }
        .as_bytes(),
    );
    let channel = channel(c, &base, tsg, ctxshare, userd, CHANNEL, 0x1_0000_0000, 128);
    ChannelTree {
        base,
        tsg,
        ctxshare,
        userd,
        channel,
    }
}

/// Puts `tsg` on its runlist (`GPFIFO_SCHEDULE`) and returns `channel`'s work-submit token.
pub fn schedule_and_token(c: &mut impl RmCalls, client: Handle, tsg: Handle, ch: Handle) -> u32 {
    let (s, _) = c.control(
        client,
        tsg,
        NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
        &NvA06cCtrlGpfifoScheduleParams {
            bEnable: 1,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, tok) = c.control(
        client,
        ch,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    tok.workSubmitToken
}

/// Handles of [`full_tree`]: the channel tree with a compute object, and a copy-engine TSG
/// with a channel and a copy object.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    /// Root client.
    pub client: Handle,
    /// `NV01_DEVICE_0`.
    pub device: Handle,
    /// `NV20_SUBDEVICE_0`.
    pub subdevice: Handle,
    /// `FERMI_VASPACE_A`.
    pub vaspace: Handle,
    /// The GR TSG.
    pub tsg: Handle,
    /// Its context share.
    pub ctxshare: Handle,
    /// The GR channel's USERD memory.
    pub userd: Handle,
    /// The GR channel.
    pub channel: Handle,
    /// `HOPPER_COMPUTE_A` on the GR channel.
    pub compute: Handle,
    /// The copy-engine TSG.
    pub copy_tsg: Handle,
    /// Its channel.
    pub copy_channel: Handle,
    /// `HOPPER_DMA_COPY_A` on the copy channel.
    pub copy: Handle,
}

/// Builds [`channel_tree`] plus a compute object, and a copy-engine TSG with a channel and copy
/// object; asserts each alloc succeeds.
pub fn full_tree(c: &mut impl RmCalls) -> Tree {
    let t = channel_tree(c);
    let b = t.base;
    let compute = c.alloc_ok(
        b.client,
        t.channel,
        COMPUTE,
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
    let copy_channel = channel(c, &b, copy_tsg, 0, 0, 0x5c00_000b, 0x1_0000_0000, 128);
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
