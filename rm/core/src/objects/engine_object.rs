//! Engine objects bound to a channel: `HOPPER_COMPUTE_A` and `HOPPER_DMA_COPY_A` (parent: channel).

use super::{read, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::{
    NvGrAllocationParameters, Nvb0b5AllocationParameters, NV2080_ENGINE_TYPE_COPY0,
    NV2080_ENGINE_TYPE_GR0,
};
use rm_abi::{class, NvStatus};

/// An engine object and the engine (`NV2080_ENGINE_TYPE_*`) its methods run on, which
/// `NV906F_CTRL_GET_CLASS_ENGINEID` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineObject {
    /// Compute (GR) or copy.
    pub kind: EngineKind,
    /// The engine: GR0 for compute; for copy, the one the alloc named, else the channel's copy
    /// engine, else (a copy object on a GR channel) the GPU's GR copy engine.
    pub engine_type: u32,
}

/// Which engine class an engine object drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
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
    let ObjectKind::Channel(channel) = &ctx.parent.kind else {
        return Err(NvStatus::ERR_INVALID_OBJECT_PARENT);
    };
    let object = if class_id == class::HOPPER_COMPUTE_A {
        let _: NvGrAllocationParameters = read(params)?;
        EngineObject {
            kind: EngineKind::Compute,
            engine_type: NV2080_ENGINE_TYPE_GR0,
        }
    } else {
        let p: Nvb0b5AllocationParameters = read(params)?;
        let is_copy = |e: u32| e >= NV2080_ENGINE_TYPE_COPY0 && ctx.gpu.engines.contains(&e);
        if p.engineType != 0 && !is_copy(p.engineType) {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        let engine_type = if p.engineType != 0 {
            p.engineType
        } else if is_copy(channel.engine_type) {
            channel.engine_type
        } else {
            ctx.gpu.gr_copy_engine
        };
        EngineObject {
            kind: EngineKind::Copy,
            engine_type,
        }
    };
    Ok(Constructed::plain(ObjectKind::EngineObject(object)))
}
