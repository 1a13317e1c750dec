//! `NV20_SUBDEVICE_0`: the one GPU under a device (parent: device).

use super::{read, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::Nv2080AllocParameters;
use rm_abi::NvStatus;

/// Validates a subdevice alloc: subdevice instance 0 only.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Device))?;
    let p: Nv2080AllocParameters = read(params)?;
    if p.subDeviceId != 0 {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    Ok(Constructed::plain(ObjectKind::Subdevice))
}
