//! `NV01_DEVICE_0`: the GPU as a client sees it (parent: the client).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::Nv0080AllocParameters;
use rm_abi::NvStatus;

/// Validates a device alloc: device instance 0 only (one GPU per vGPU); `hClientShare` may name
/// only the caller's own client (translated to its host handle); `hTargetClient`/`hTargetDevice`
/// (RM-internal) must be 0.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Client))?;
    let mut p: Nv0080AllocParameters = read(params)?;
    if p.deviceId != 0 {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    if p.hTargetClient != 0 || p.hTargetDevice != 0 {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    match p.hClientShare {
        0 => {}
        h if h == ctx.client.guest => p.hClientShare = ctx.client.host,
        _ => return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS),
    }
    write(&p, params);
    Ok(Constructed::plain(ObjectKind::Device))
}
