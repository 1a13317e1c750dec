//! Engine objects bound to a channel: `HOPPER_COMPUTE_A` and `HOPPER_DMA_COPY_A` (parent: channel).

use super::{read, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::{
    NvGrAllocationParameters, Nvb0b5AllocationParameters, NV2080_ENGINE_TYPE_COPY0,
};
use rm_abi::{class, NvStatus};

/// Which engine an engine object drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineObject {
    /// Compute (GR).
    Compute,
    /// Copy engine.
    Copy,
}

/// Validates an engine object alloc: the parent must be a channel; a copy object's `engineType`
/// must be 0 or a copy engine the GPU has.
pub fn construct(
    ctx: &AllocContext<'_>,
    class_id: u32,
    params: &mut [u8],
) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Channel(_)))?;
    let kind = if class_id == class::HOPPER_COMPUTE_A {
        let _: NvGrAllocationParameters = read(params)?;
        EngineObject::Compute
    } else {
        let p: Nvb0b5AllocationParameters = read(params)?;
        if p.engineType != 0
            && !(p.engineType >= NV2080_ENGINE_TYPE_COPY0
                && ctx.gpu.engines.contains(&p.engineType))
        {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        EngineObject::Copy
    };
    Ok(Constructed::plain(ObjectKind::EngineObject(kind)))
}
