//! GR engine controls on the subdevice (class 0x2080): the engine's shape from
//! [`GrConfig`](crate::backend::GrConfig), which is what CUDA reads to size its launches. A vGPU
//! without MIG has one GR engine, so the route info is ignored, as RM ignores it while MIG is off.

use super::{get, put, ControlCtx};
use rm_abi::ctrl::*;
use rm_abi::NvStatus;

/// `NV0080_CTRL_GR_INFO_MAX_SIZE` in 580 (`NV0080_CTRL_GR_INFO_INDEX_MAX` + 1): the most entries
/// of a `GR_GET_INFO` list, and the bound of an entry's index.
pub const GR_INFO_MAX_SIZE: u32 = 0x3A;

pub(super) fn gpc_mask(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlGrGetGpcMaskParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    p.gpcMask = ctx.gpu.gr.gpc_mask();
    put(&p, params)
}

/// A GPC that is not present is `NV_ERR_INVALID_ARGUMENT`.
pub(super) fn tpc_mask(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlGrGetTpcMaskParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let Some(&mask) = ctx.gpu.gr.tpc_masks.get(p.gpcId as usize) else {
        return NvStatus::ERR_INVALID_ARGUMENT;
    };
    p.tpcMask = mask;
    put(&p, params)
}

pub(super) fn caps_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0080CtrlGrGetCapsV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    p.capsTbl = ctx.gpu.gr.caps;
    p.bCapsPopulated = 1;
    put(&p, params)
}

/// `GR_GET_INFO`: the `{index, data}` list lives in guest memory at `grInfoList`. A list of 0 or
/// more than [`GR_INFO_MAX_SIZE`] entries, or an index at or past it, is
/// `NV_ERR_INVALID_ARGUMENT`; an unreadable list `NV_ERR_INVALID_ADDRESS`; an index the
/// configuration has no value for `NV_ERR_NOT_SUPPORTED`. Nothing is written unless every entry
/// is answered.
pub(super) fn info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv2080CtrlGrGetInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.grInfoListSize == 0 || p.grInfoListSize > GR_INFO_MAX_SIZE {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let mut list = vec![0u8; p.grInfoListSize as usize * 8];
    if ctx.mem.read(p.grInfoList, &mut list).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    for entry in list.chunks_exact_mut(8) {
        let index = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
        if index >= GR_INFO_MAX_SIZE {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        let Some(&(_, data)) = ctx.gpu.gr.info.iter().find(|(i, _)| *i == index) else {
            return NvStatus::ERR_NOT_SUPPORTED;
        };
        entry[4..].copy_from_slice(&data.to_le_bytes());
    }
    if ctx.mem.write(p.grInfoList, &list).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    NvStatus::OK
}
