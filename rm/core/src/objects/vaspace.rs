//! `FERMI_VASPACE_A`: a GPU virtual address space (parent: device).

use super::{read, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::NvVaspaceAllocationParameters;
use rm_abi::NvStatus;

/// `NV_VASPACE_ALLOCATION_INDEX_GPU_NEW`: create a new VA space.
const NV_VASPACE_ALLOCATION_INDEX_GPU_NEW: u32 = 0;

/// Validates a VA space alloc. A PASID binds the VA space to a host process's page tables (ATS);
/// a guest cannot name host processes, so a nonzero `pasid` is refused. Only a new VA space
/// (`NV_VASPACE_ALLOCATION_INDEX_GPU_NEW`): the other indices hand out references to VA spaces
/// the GPU shares (BAR1, global, device, FLA), which would reach beyond the vGPU.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Device))?;
    let p: NvVaspaceAllocationParameters = read(params)?;
    if p.pasid != 0 || p.index != NV_VASPACE_ALLOCATION_INDEX_GPU_NEW {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    Ok(Constructed::plain(ObjectKind::VaSpace))
}
