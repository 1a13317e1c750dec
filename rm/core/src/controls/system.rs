//! Client and system controls (class 0x0000): the build version, the GPU ids a client sees (the
//! vGPU's id alone), their PCI location and the address space of a client's objects.

use super::subdevice::gpu_name;
use super::{get, put, ControlCtx};
use crate::objects::ObjectKind;
use rm_abi::ctrl::*;
use rm_abi::{write_struct, NvStatus, NV_VERSION_STRING};

fn guest_gpu_id(ctx: &ControlCtx<'_>) -> u32 {
    ctx.vgpu.config.gpu_id
}

fn id_list(first: Option<u32>) -> [u32; 32] {
    let mut ids = [NV0000_CTRL_GPU_INVALID_ID; 32];
    if let Some(id) = first {
        ids[0] = id;
    }
    ids
}

pub(super) fn build_version(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlSystemGetBuildVersionParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let title = format!("vGPU RM core {NV_VERSION_STRING}");
    let strings = [NV_VERSION_STRING, NV_VERSION_STRING, title.as_str()];
    let needed = strings.iter().map(|s| s.len() + 1).max().unwrap_or(0) as u32;
    let ptrs = [p.pDriverVersionBuffer, p.pVersionBuffer, p.pTitleBuffer];
    if ptrs.contains(&0) {
        p.sizeOfStrings = needed;
    } else if p.sizeOfStrings < needed {
        return NvStatus::ERR_BUFFER_TOO_SMALL;
    } else {
        for (s, addr) in strings.iter().zip(ptrs) {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            if ctx.mem.write(addr, &b).is_err() {
                return NvStatus::ERR_INVALID_ADDRESS;
            }
        }
    }
    p.changelistNumber = 0;
    p.officialChangelistNumber = 0;
    put(&p, params)
}

pub(super) fn attached_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv0000CtrlGpuGetAttachedIdsParams {
            gpuIds: id_list(Some(guest_gpu_id(ctx))),
        },
        params,
    )
}

pub(super) fn probed_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p = Nv0000CtrlGpuGetProbedIdsParams {
        gpuIds: id_list(Some(guest_gpu_id(ctx))),
        excludedGpuIds: id_list(None),
        gpuFlags: [0; 32],
    };
    put(&p, params)
}

pub(super) fn id_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlGpuGetIdInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    if p.szName != 0 {
        let mut name = gpu_name(ctx).into_bytes();
        name.truncate(NV2080_GPU_MAX_NAME_STRING_LENGTH - 1);
        name.push(0);
        if ctx.mem.write(p.szName, &name).is_err() {
            return NvStatus::ERR_INVALID_ADDRESS;
        }
    }
    (
        p.gpuFlags,
        p.deviceInstance,
        p.subDeviceInstance,
        p.sliStatus,
        p.boardId,
        p.gpuInstance,
        p.numaId,
    ) = (0, 0, 0, SINGLE_GPU_SLI_STATUS, p.gpuId, 0, -1);
    put(&p, params)
}

/// `sliStatus` of a GPU that is alone and cannot do SLI: `NV0000_CTRL_SLI_STATUS_GPU_NOT_SUPPORTED
/// | NV0000_CTRL_SLI_STATUS_INVALID_GPU_COUNT`, what the traced H200 reports. The board id of a
/// single-GPU board is the GPU id, as there too.
const SINGLE_GPU_SLI_STATUS: u32 = 0x40 | 0x01;

pub(super) fn id_info_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuGetIdInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    put(
        &Nv0000CtrlGpuGetIdInfoV2Params {
            gpuId: p.gpuId,
            sliStatus: SINGLE_GPU_SLI_STATUS,
            boardId: p.gpuId,
            numaId: -1,
            ..Default::default()
        },
        params,
    )
}

pub(super) fn attach_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlGpuAttachIdsParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let mine = guest_gpu_id(ctx);
    for &id in p
        .gpuIds
        .iter()
        .take_while(|&&id| id != NV0000_CTRL_GPU_INVALID_ID)
    {
        if id != mine && id != NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS {
            p.failedId = id;
            write_struct(&p, params);
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
    }
    put(&p, params)
}

pub(super) fn detach_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuDetachIdsParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let mine = guest_gpu_id(ctx);
    let ok = p
        .gpuIds
        .iter()
        .take_while(|&&id| id != NV0000_CTRL_GPU_INVALID_ID)
        .all(|&id| id == mine || id == NV0000_CTRL_GPU_DETACH_ALL_ATTACHED_IDS);
    if ok {
        NvStatus::OK
    } else {
        NvStatus::ERR_INVALID_ARGUMENT
    }
}

pub(super) fn gpu_pci_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuGetPciInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let cfg = &ctx.vgpu.config;
    put(
        &Nv0000CtrlGpuGetPciInfoParams {
            gpuId: p.gpuId,
            domain: 0,
            bus: cfg.pci_bus.into(),
            slot: cfg.pci_slot.into(),
        },
        params,
    )
}

/// The vGPU as the one active device: no MIG, so no GPU or compute instance.
pub(super) fn active_device_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv0000CtrlGpuGetActiveDeviceIdsParams {
        numDevices: 1,
        ..Default::default()
    };
    p.devices[0] = Nv0000CtrlGpuActiveDevice {
        gpuId: guest_gpu_id(ctx),
        gpuInstanceId: NV0000_CTRL_GPU_INVALID_ID,
        computeInstanceId: NV0000_CTRL_GPU_INVALID_ID,
    };
    put(&p, params)
}

/// A single vGPU is in no sync-boost group: zero groups.
pub(super) fn boost_group_info(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(&Nv0000SyncGpuBoostGroupInfoParams::default(), params)
}

pub(super) fn addr_space_type(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlClientGetAddrSpaceTypeParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let Some(client) = ctx.vgpu.clients.get(&ctx.client) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    p.addrSpaceType = match client.get(p.hObject).map(|o| &o.kind) {
        Some(ObjectKind::Memory(m)) if m.video => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_VIDMEM,
        Some(ObjectKind::Memory(_)) => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_SYSMEM,
        Some(ObjectKind::Usermode) => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_REGMEM,
        Some(_) => return NvStatus::ERR_INVALID_ARGUMENT,
        None => return NvStatus::ERR_INVALID_OBJECT_HANDLE,
    };
    put(&p, params)
}
