//! Device controls (class 0x0080): subdevice count, class list, host caps and channel ids.

use super::{get, put, read_list, ControlCtx};
use crate::objects::{ObjectKind, MODELED_CLASSES};
use rm_abi::ctrl::*;
use rm_abi::ioctl::RMAPI_PARAM_COPY_MAX_PARAMS_SIZE;
use rm_abi::NvStatus;

pub(super) fn num_subdevices(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv0080CtrlGpuGetNumSubdevicesParams { numSubDevices: 1 },
        params,
    )
}

pub(super) fn classlist_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv0080CtrlGpuGetClasslistV2Params::default();
    let classes = ctx
        .gpu
        .classes
        .iter()
        .filter(|c| MODELED_CLASSES.contains(c))
        .take(NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE);
    for (slot, &c) in p.classList.iter_mut().zip(classes) {
        *slot = c;
        p.numClasses += 1;
    }
    put(&p, params)
}

/// Every host caps bit is a workaround flag for a bug of an older chip's host interface (semaphore
/// acquire, duplicate completion, CPU write WARs); the sim's Hopper FIFO has none, as the H200
/// itself reports: an all-zero table.
pub(super) fn host_caps_v2(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(&Nv0080CtrlHostGetCapsV2Params::default(), params)
}

/// Channel handles to channel ids, as `deviceCtrlCmdFifoGetChannelList` does: `numChannels`
/// must be nonzero; both lists are guest arrays; a handle that is not one of the caller's
/// channels gets `NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL`. The id is the channel's id
/// in its runlist (the low 16 bits of its work-submit token).
pub(super) fn fifo_channel_list(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0080CtrlFifoGetChannellistParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let n = p.numChannels as usize;
    if n == 0
        || n > RMAPI_PARAM_COPY_MAX_PARAMS_SIZE as usize / 4
        || p.pChannelHandleList == 0
        || p.pChannelList == 0
    {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let Some(handles) = read_list(ctx.mem, p.pChannelHandleList, n) else {
        return NvStatus::ERR_INVALID_ADDRESS;
    };
    let Some(client) = ctx.vgpu.clients.get(&ctx.client) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let chids: Vec<u8> = handles
        .iter()
        .flat_map(|&h| {
            let chid = match client.get(h).map(|o| &o.kind) {
                Some(ObjectKind::Channel(ch)) => ch
                    .work_submit_token
                    .map_or(NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL, |t| {
                        t & 0xFFFF
                    }),
                _ => NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL,
            };
            chid.to_le_bytes()
        })
        .collect();
    if ctx.mem.write(p.pChannelList, &chids).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    NvStatus::OK
}
