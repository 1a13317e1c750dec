//! `FERMI_VASPACE_A`: a GPU virtual address space (parent: device).

use super::{read, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::NvVaspaceAllocationParameters;
use rm_abi::NvStatus;

/// Validates a VA space alloc. A PASID binds the VA space to a host process's page tables (ATS);
/// a guest cannot name host processes, so a nonzero `pasid` is refused.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Device))?;
    let p: NvVaspaceAllocationParameters = read(params)?;
    if p.pasid != 0 {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    Ok(Constructed::plain(ObjectKind::VaSpace))
}
