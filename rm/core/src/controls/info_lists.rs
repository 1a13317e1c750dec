//! The info-list controls the core answers index by index (`GPU_GET_INFO_V2`,
//! `FB_GET_INFO_V2`): which indices the sim answers, with what, and which it cannot.

use super::{get, put, ControlCtx};
use rm_abi::ctrl::*;
use rm_abi::NvStatus;

/// `NV2080_CTRL_GPU_INFO_INDEX_*` values the sim answers, and the fields of an index word.
mod gpu_info_index {
    /// `_INDEX` field (23:0) of an entry's index word.
    pub const INDEX_MASK: u32 = 0x00FF_FFFF;
    /// `_GROUP_ID` field (30:24): the GPU of a multi-GPU group; a vGPU is group 0 only.
    pub const GROUP_ID_SHIFT: u32 = 24;
    /// `_GROUP_ID` width mask.
    pub const GROUP_ID_MASK: u32 = 0x7F;
    pub const SYSMEM_ACCESS: u32 = 0x1F;
    pub const GEMINI_BOARD: u32 = 0x22;
    pub const GLOBAL_POISON_FUSE_ENABLED: u32 = 0x27;
    pub const NVSWITCH_PROXY_DETECTED: u32 = 0x28;
    pub const GPU_SMC_MODE: u32 = 0x2A;
    pub const GPU_FLA_CAPABILITY: u32 = 0x2D;
    pub const GPU_ATS_CAPABILITY: u32 = 0x30;
    pub const DISPLAY_ENABLED: u32 = 0x34;
    pub const MOBILE_CONFIG_ENABLED: u32 = 0x35;
    pub const GPU_PROFILING_CAPABILITY: u32 = 0x36;
    pub const GPU_DEBUGGING_CAPABILITY: u32 = 0x37;
    pub const GPU_LOCAL_EGM_CAPABILITY: u32 = 0x3A;
    pub const GPU_SELF_HOSTED_CAPABILITY: u32 = 0x3B;
    pub const CMP_SKU: u32 = 0x3C;
    pub const DMABUF_CAPABILITY: u32 = 0x3D;
    pub const IS_RESETLESS_MIG_SUPPORTED: u32 = 0x3F;
}

/// The value of one `GPU_GET_INFO_V2` index on the sim GPU, `None` when the sim cannot answer it
/// honestly (ECID, netlist and minor revisions, SM version, per-runlist CHRAM and the indices
/// this core cannot name; the driver answers `NV_ERR_NOT_SUPPORTED` for an index it cannot serve,
/// as for the ECID indices without GSP).
///
/// Every answered index is a capability the sim does not have, so the value is the `_NO` /
/// `_DISABLED` / `_UNSUPPORTED` one, except `SYSMEM_ACCESS`, which RM hard-codes to YES and the
/// sim does (system memory objects): no MIG (SMC mode UNSUPPORTED, as a vGPU without MIG reports),
/// no fabric, ATS, EGM, display, C2C self-hosting, poison containment or NVSwitch; no debugger or
/// profiler classes (a vGPU reports DISABLED unless its profile enables them); no dma-buf (RM
/// reports NO for any vGPU); one board, not a Gemini or mobile one, not a CMP SKU.
fn gpu_info_value(index: u32) -> Option<u32> {
    use gpu_info_index::*;
    match index {
        SYSMEM_ACCESS => Some(1),
        GEMINI_BOARD
        | GLOBAL_POISON_FUSE_ENABLED
        | NVSWITCH_PROXY_DETECTED
        | GPU_SMC_MODE
        | GPU_FLA_CAPABILITY
        | GPU_ATS_CAPABILITY
        | DISPLAY_ENABLED
        | MOBILE_CONFIG_ENABLED
        | GPU_PROFILING_CAPABILITY
        | GPU_DEBUGGING_CAPABILITY
        | GPU_LOCAL_EGM_CAPABILITY
        | GPU_SELF_HOSTED_CAPABILITY
        | CMP_SKU
        | DMABUF_CAPABILITY
        | IS_RESETLESS_MIG_SUPPORTED => Some(0),
        _ => None,
    }
}

/// `GPU_GET_INFO_V2` with the driver's checks (`getGpuInfos`): list size 1..=MAX, every index
/// below MAX and in group 0, else `NV_ERR_INVALID_ARGUMENT`; stops at the first index it cannot
/// answer with `NV_ERR_NOT_SUPPORTED`.
pub(super) fn gpu_info_v2(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    use gpu_info_index::*;
    let mut p: Nv2080CtrlGpuGetInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let n = p.gpuInfoListSize as usize;
    if n == 0 || n > NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    for e in p.gpuInfoList.iter_mut().take(n) {
        let index = e.index & INDEX_MASK;
        let group = (e.index >> GROUP_ID_SHIFT) & GROUP_ID_MASK;
        if index as usize >= NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE || group != 0 {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        match gpu_info_value(index) {
            Some(v) => e.data = v,
            None => {
                tracing::debug!(index, "GPU info index the sim does not model");
                return NvStatus::ERR_NOT_SUPPORTED;
            }
        }
    }
    put(&p, params)
}

/// `NV2080_CTRL_FB_INFO_INDEX_*` values answered from the vGPU's quota (in KiB).
mod fb_index {
    pub const RAM_SIZE: u32 = 0x07;
    pub const TOTAL_RAM_SIZE: u32 = 0x08;
    pub const HEAP_SIZE: u32 = 0x09;
    pub const MAPPABLE_HEAP_SIZE: u32 = 0x0A;
    pub const FB_TAX_SIZE_KB: u32 = 0x10;
    pub const HEAP_FREE: u32 = 0x16;
    pub const RAM_LOCATION: u32 = 0x17;
    pub const FB_IS_BROKEN: u32 = 0x18;
    pub const USABLE_RAM_SIZE: u32 = 0x20;
    pub const IS_ZERO_FB: u32 = 0x36;
}

/// The value of one `FB_GET_INFO_V2` index for a vGPU with `quota` bytes of which `free` are
/// unallocated, `None` for indices the sim cannot answer honestly: memory geometry (bus width,
/// RAM type, FBP/LTC/LTS counts and masks, L2 size), BAR1 and the physical FB's reservations.
/// The sizes are the quota; the FB tax is 0 because nothing is carved out of a vGPU's quota; the
/// FB is dedicated (RAM_LOCATION 0), not broken, not zero-sized.
fn fb_info_value(index: u32, quota: u64, free: u64) -> Option<u32> {
    let kib = |b: u64| u32::try_from(b >> 10).unwrap_or(u32::MAX);
    Some(match index {
        fb_index::RAM_SIZE
        | fb_index::TOTAL_RAM_SIZE
        | fb_index::HEAP_SIZE
        | fb_index::MAPPABLE_HEAP_SIZE
        | fb_index::USABLE_RAM_SIZE => kib(quota),
        fb_index::HEAP_FREE => kib(free),
        fb_index::FB_TAX_SIZE_KB
        | fb_index::RAM_LOCATION
        | fb_index::FB_IS_BROKEN
        | fb_index::IS_ZERO_FB => 0,
        _ => return None,
    })
}

/// `FB_GET_INFO_V2`: list size at most MAX and every index below MAX, else
/// `NV_ERR_INVALID_ARGUMENT`; stops at the first index the sim cannot answer with
/// `NV_ERR_NOT_SUPPORTED`.
pub(super) fn fb_info_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlFbGetInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.fbInfoListSize as usize > NV2080_CTRL_FB_INFO_MAX_LIST_SIZE {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let quota = ctx.vgpu.config.fb_quota;
    let free = quota.saturating_sub(ctx.vgpu.fb_used);
    for e in p.fbInfoList.iter_mut().take(p.fbInfoListSize as usize) {
        if e.index as usize >= NV2080_CTRL_FB_INFO_MAX_LIST_SIZE {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        match fb_info_value(e.index, quota, free) {
            Some(v) => e.data = v,
            None => {
                tracing::debug!(index = e.index, "FB info index the sim does not model");
                return NvStatus::ERR_NOT_SUPPORTED;
            }
        }
    }
    put(&p, params)
}

/// For the info-list controls the core answers index by index (`GPU_GET_INFO_V2`,
/// `FB_GET_INFO_V2`): the first index in `params` that the sim does not model, for which the
/// control answers `NV_ERR_NOT_SUPPORTED`. `None` for other commands or when every index is
/// answered.
pub fn unmodelled_info_index(cmd: u32, params: &[u8]) -> Option<u32> {
    let (n, list) = match cmd {
        NV2080_CTRL_CMD_GPU_GET_INFO_V2 => {
            let p: Nv2080CtrlGpuGetInfoV2Params = get(params).ok()?;
            (p.gpuInfoListSize as usize, p.gpuInfoList.to_vec())
        }
        NV2080_CTRL_CMD_FB_GET_INFO_V2 => {
            let p: Nv2080CtrlFbGetInfoV2Params = get(params).ok()?;
            (p.fbInfoListSize as usize, p.fbInfoList.to_vec())
        }
        _ => return None,
    };
    let answered = |i: u32| match cmd {
        NV2080_CTRL_CMD_GPU_GET_INFO_V2 => gpu_info_value(i & gpu_info_index::INDEX_MASK),
        _ => fb_info_value(i, 0, 0),
    };
    list.iter()
        .take(n)
        .map(|e| e.index)
        .find(|&i| answered(i).is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn unmodelled_info_indices_are_found_in_the_list_used() {
        let mut p = Nv2080CtrlGpuGetInfoV2Params {
            gpuInfoListSize: 2,
            ..Default::default()
        };
        p.gpuInfoList[0].index = gpu_info_index::SYSMEM_ACCESS;
        p.gpuInfoList[1].index = gpu_info_index::GPU_SMC_MODE;
        p.gpuInfoList[2].index = 0x2C;
        let cmd = NV2080_CTRL_CMD_GPU_GET_INFO_V2;
        assert_eq!(unmodelled_info_index(cmd, p.as_bytes()), None);
        p.gpuInfoListSize = 3;
        assert_eq!(unmodelled_info_index(cmd, p.as_bytes()), Some(0x2C));

        let mut f = Nv2080CtrlFbGetInfoV2Params {
            fbInfoListSize: 1,
            ..Default::default()
        };
        f.fbInfoList[0].index = fb_index::HEAP_FREE;
        f.fbInfoList[1].index = 0x0B;
        let cmd = NV2080_CTRL_CMD_FB_GET_INFO_V2;
        assert_eq!(unmodelled_info_index(cmd, f.as_bytes()), None);
        f.fbInfoListSize = 2;
        assert_eq!(unmodelled_info_index(cmd, f.as_bytes()), Some(0x0B));
        assert_eq!(
            unmodelled_info_index(NV2080_CTRL_CMD_GPU_GET_NAME_STRING, f.as_bytes()),
            None
        );
    }
}
