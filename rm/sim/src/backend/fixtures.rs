//! Test fixtures of the backend's unit tests: handles, a sim, and helpers that allocate a
//! client's base objects, TSGs and channels and run controls on them.

use super::{SimBackend, DMA_VA_BASE};
use crate::channel::ChannelRef;
use crate::gpu::SimConfig;
use crate::memory::PAGE_SIZE;
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvChannelGroupAllocationParameters, NvMemoryAllocationParams,
    NvRootAllocParams, NvVaspaceAllocationParameters,
};
use rm_abi::class;
use rm_abi::ctrl::*;
use rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A;
use rm_abi::nvos::Nvos46Parameters;
use rm_abi::{read_struct, Handle, NvStatus};
use rm_core::backend::{AllocRequest, Backend, Gfid};
use zerocopy::IntoBytes;

pub(super) const C1: Handle = 0xC1D0_0001;
pub(super) const C2: Handle = 0xC1D0_0002;
pub(super) const DEV: Handle = 0x10;
pub(super) const SUB: Handle = 0x11;
pub(super) const VAS: Handle = 0x12;
pub(super) const MEM: Handle = 0x13;
pub(super) const TSG: Handle = 0x14;
pub(super) const SHARE: Handle = 0x15;
pub(super) const CH: Handle = 0x16;
pub(super) const COMPUTE: Handle = 0x17;
pub(super) const CE_TSG: Handle = 0x18;
pub(super) const CE_CH: Handle = 0x19;
pub(super) const COPY: Handle = 0x1A;
pub(super) const USERMODE: Handle = 0x1B;
pub(super) const NOTIFIER: Handle = 0x1C;

pub(super) fn sim() -> SimBackend {
    SimBackend::new(SimConfig::default())
}

pub(super) fn alloc<T: IntoBytes + zerocopy::Immutable>(
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

pub(super) fn ok(s: NvStatus) {
    assert_eq!(s, NvStatus::OK);
}

pub(super) fn memory(
    b: &mut SimBackend,
    gfid: Gfid,
    client: Handle,
    h: Handle,
    class_id: u32,
    size: u64,
) -> NvStatus {
    let p = NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
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
pub(super) fn base(b: &mut SimBackend, gfid: Gfid, client: Handle) -> u64 {
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

pub(super) fn tsg(
    b: &mut SimBackend,
    gfid: Gfid,
    client: Handle,
    h: Handle,
    engine: u32,
) -> NvStatus {
    let p = NvChannelGroupAllocationParameters {
        hVASpace: VAS,
        engineType: engine,
        ..Default::default()
    };
    alloc(b, gfid, client, DEV, h, class::KEPLER_CHANNEL_GROUP_A, &p).0
}

/// A channel in `tsg_h` with USERD at MEM+0, GPFIFO at MEM+0x1000 (256 entries).
pub(super) fn channel(
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

pub(super) fn ctrl<T: IntoBytes + zerocopy::Immutable + FromBytesT>(
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
pub(super) fn schedule(
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
pub(super) fn disable_channels(
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
pub(super) fn channel_enabled(b: &SimBackend, ch: ChannelRef) -> bool {
    b.gpu().lock().unwrap().chram_read(ch).unwrap() & crate::chram::ENABLE != 0
}

use zerocopy::FromBytes as FromBytesT;
