//! `HOPPER_USERMODE_A`: the page whose `NOTIFY_CHANNEL_PENDING` register rings doorbells
//! (parent: subdevice).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::NvHopperUsermodeAParams;
use rm_abi::NvStatus;

/// Validates a usermode alloc; `bPriv` (the privileged page, kernel callers only) is refused.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Subdevice))?;
    let p: NvHopperUsermodeAParams = read(params)?;
    if p.bPriv != 0 {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    write(
        &NvHopperUsermodeAParams {
            bBar1Mapping: p.bBar1Mapping,
            bPriv: 0,
        },
        params,
    );
    Ok(Constructed::plain(ObjectKind::Usermode))
}
