//! Controls and escapes that carry channel or TSG handles: the TSG (0xA06C) hooks around the
//! backend, `FIFO_DISABLE_CHANNELS` (0x2080) and `RM_IDLE_CHANNELS`.

use super::{get, put, read_list, ControlCtx};
use crate::backend::Backend;
use crate::dispatch::Caller;
use crate::guest_memory::GuestMemory;
use crate::objects::channel_group::ChannelGroup;
use crate::objects::ObjectKind;
use crate::vgpu::IdleWait;
use crate::Rm;
use rm_abi::ctrl::*;
use rm_abi::nvos::Nvos30Parameters;
use rm_abi::{write_struct, Handle, NvStatus};
use std::time::{Duration, Instant};

fn tsg<'a>(ctx: &'a ControlCtx<'_>) -> Option<&'a ChannelGroup> {
    match &ctx.vgpu.clients.get(&ctx.client)?.get(ctx.object)?.kind {
        ObjectKind::ChannelGroup(g) => Some(g),
        _ => None,
    }
}

fn tsg_mut<'a>(ctx: &'a mut ControlCtx<'_>) -> Option<&'a mut ChannelGroup> {
    match &mut ctx
        .vgpu
        .clients
        .get_mut(&ctx.client)?
        .get_mut(ctx.object)?
        .kind
    {
        ObjectKind::ChannelGroup(g) => Some(g),
        _ => None,
    }
}

pub(super) fn bind_prepare(ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlBindParams = get(params)?;
    match tsg(ctx) {
        Some(g) if g.engine_type == p.engineType => Ok(()),
        _ => Err(NvStatus::ERR_INVALID_ARGUMENT),
    }
}

pub(super) fn timeslice_finish(ctx: &mut ControlCtx<'_>, guest: &[u8], _host: &mut [u8]) {
    if let (Ok(p), Some(g)) = (get::<NvA06cCtrlTimesliceParams>(guest), tsg_mut(ctx)) {
        g.timeslice_us = p.timesliceUs;
    }
}

pub(super) fn preempt_prepare(_ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlPreemptParams = get(params)?;
    if p.bManualTimeout != 0 && p.timeoutUs > NVA06C_PREEMPT_MAX_MANUAL_TIMEOUT_US {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    Ok(())
}

pub(super) fn interleave_prepare(_ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlInterleaveLevelParams = get(params)?;
    if p.tsgInterleaveLevel > NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    Ok(())
}

pub(super) fn interleave_finish(ctx: &mut ControlCtx<'_>, guest: &[u8], _host: &mut [u8]) {
    if let (Ok(p), Some(g)) = (get::<NvA06cCtrlInterleaveLevelParams>(guest), tsg_mut(ctx)) {
        g.interleave_level = p.tsgInterleaveLevel;
    }
}

/// `FIFO_DISABLE_CHANNELS` carries client *and* channel handles: every client entry must be
/// the caller's own client (else `NV_ERR_INSUFFICIENT_PERMISSIONS`), every channel one of its
/// channels (else `NV_ERR_INVALID_CHANNEL`), and `pRunlistPreemptEvent` NULL. The client
/// entries are rewritten to the host handle; unused entries are zeroed.
pub(super) fn disable_channels_prepare(
    ctx: &ControlCtx<'_>,
    params: &mut [u8],
) -> Result<(), NvStatus> {
    let mut p: Nv2080CtrlFifoDisableChannelsParams = get(params)?;
    if p.pRunlistPreemptEvent != 0 {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    let n = p.numChannels as usize;
    if n > NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let client = ctx
        .vgpu
        .clients
        .get(&ctx.client)
        .ok_or(NvStatus::ERR_INVALID_CLIENT)?;
    for i in 0..n {
        if p.hClientList[i] != ctx.client {
            return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
        }
        if !matches!(
            client.get(p.hChannelList[i]).map(|o| &o.kind),
            Some(ObjectKind::Channel(_))
        ) {
            return Err(NvStatus::ERR_INVALID_CHANNEL);
        }
        p.hClientList[i] = client.host;
    }
    for i in n..NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
        p.hClientList[i] = 0;
        p.hChannelList[i] = 0;
    }
    write_struct(&p, params);
    Ok(())
}

pub(super) fn disable_channels_finish(_ctx: &mut ControlCtx<'_>, guest: &[u8], host: &mut [u8]) {
    host.copy_from_slice(guest);
}

/// `RM_IDLE_CHANNELS`: waits for the caller's own channels to idle. With `numChannels == 0`
/// the single `hChannel`; otherwise the three guest lists, every client entry of which must be
/// the caller's own client.
pub(crate) fn idle_channels<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &Nvos30Parameters,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    const MAX_IDLE_CHANNELS: u32 = 64;
    let Some((backend, client)) = rm
        .parts(c.gfid)
        .and_then(|(backend, _, v)| Some((backend, v.client_for(c.fd, p.hClient)?)))
    else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let is_channel =
        |h: Handle| matches!(client.get(h).map(|o| &o.kind), Some(ObjectKind::Channel(_)));
    let channels: Vec<Handle> = if p.numChannels == 0 {
        vec![p.hChannel]
    } else {
        if p.numChannels > MAX_IDLE_CHANNELS {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        let n = p.numChannels as usize;
        let (Some(clients), Some(_devices), Some(chans)) = (
            read_list(mem, p.phClients, n),
            read_list(mem, p.phDevices, n),
            read_list(mem, p.phChannels, n),
        ) else {
            return NvStatus::ERR_INVALID_ADDRESS;
        };
        if clients.iter().any(|&h| h != p.hClient) {
            return NvStatus::ERR_INSUFFICIENT_PERMISSIONS;
        }
        chans
    };
    if let Some(&bad) = channels.iter().find(|&&h| !is_channel(h)) {
        tracing::debug!(
            channel = bad,
            "idle of a handle that is not the caller's channel"
        );
        return NvStatus::ERR_INVALID_CHANNEL;
    }
    let host_client = client.host;
    let status = backend.idle_channels(c.gfid, host_client, &channels, p.timeout);
    let Some(vgpu) = rm.vgpus.get_mut(&c.gfid) else {
        return status;
    };
    if status != NvStatus::ERR_BUSY_RETRY {
        vgpu.idle_wait = None;
        return status;
    }
    // Not idle yet on a GPU that runs on the host's clock: the call is made again with the
    // core unlocked, until its timeout passes in host time.
    let call = (c.fd, p.hClient, channels, p.timeout);
    let now = Instant::now();
    let wait = match vgpu.idle_wait.take() {
        Some(w) if w.call == call => w,
        _ => IdleWait {
            call,
            deadline: now + idle_timeout(p.timeout),
        },
    };
    if now >= wait.deadline {
        return NvStatus::ERR_TIMEOUT;
    }
    vgpu.idle_wait = Some(wait);
    rm.retry = true;
    NvStatus::ERR_BUSY_RETRY
}

/// The longest an `RM_IDLE_CHANNELS` call waits in host time, whatever timeout it asks for.
pub const MAX_IDLE_WAIT: Duration = Duration::from_secs(10);

/// The wait a timeout in µs asks for (0: 100 ms, the sim's default for waits left open),
/// capped at [`MAX_IDLE_WAIT`].
fn idle_timeout(timeout_us: u32) -> Duration {
    match timeout_us {
        0 => Duration::from_millis(100),
        us => Duration::from_micros(u64::from(us)),
    }
    .min(MAX_IDLE_WAIT)
}

/// `NV906F_CTRL_GET_CLASS_ENGINEID` on a channel: the class and engine of one of the channel's
/// engine objects. `classEngineID` equals the class id, as the H200's driver answers; an
/// `hObject` that is not an engine object of this channel is `NV_ERR_INVALID_OBJECT_HANDLE`.
pub(super) fn class_engine_id(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv906fCtrlGetClassEngineidParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let object = ctx
        .vgpu
        .clients
        .get(&ctx.client)
        .and_then(|c| c.get(p.hObject))
        .filter(|o| o.parent == ctx.object);
    let Some((class, ObjectKind::EngineObject(e))) = object.map(|o| (o.class, &o.kind)) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    p.classEngineID = class;
    p.classID = class;
    p.engineID = e.engine_type;
    put(&p, params)
}
