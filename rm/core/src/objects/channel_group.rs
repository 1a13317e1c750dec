//! `KEPLER_CHANNEL_GROUP_A`: a TSG, the unit the runlist schedules (parent: device).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::NvChannelGroupAllocationParameters;
use rm_abi::ctrl::NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM;
use rm_abi::{Handle, NvStatus};

/// The TSG default timeslice: `128 << 3` µs (`kfifoChannelGroupGetDefaultTimeslice_GV100`).
pub const DEFAULT_TIMESLICE_US: u64 = 1024;

/// A TSG as the core mirrors it. Timeslice and interleave level are updated only after the
/// backend accepted the control, as RM updates its cache only on `NV_OK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelGroup {
    /// `NV2080_ENGINE_TYPE_*` the TSG runs on (selects its runlist).
    pub engine_type: u32,
    /// VA space its channels use (0: the device default).
    pub va_space: Handle,
    /// Timeslice in µs.
    pub timeslice_us: u64,
    /// `NVA06C_CTRL_INTERLEAVE_LEVEL_*`.
    pub interleave_level: u32,
}

/// Validates a TSG alloc: the engine must exist on the GPU; `hVASpace`, `hObjectError` and
/// `hObjectEccError` must name objects of this client; `bIsCallingContextVgpuPlugin` is cleared
/// (it would put the TSG in GFID 0, outside the guest's vGPU).
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Device))?;
    let mut p: NvChannelGroupAllocationParameters = read(params)?;
    if !ctx.gpu.engines.contains(&p.engineType) {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let device = ctx.parent_handle;
    let va = ctx.optional_ref(p.hVASpace, |k| matches!(k, ObjectKind::VaSpace))?;
    if let Some(v) = va {
        if ctx.client.device_of(v) != Some(device) {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
    }
    let err = ctx.optional_ref(p.hObjectError, |k| matches!(k, ObjectKind::Memory(_)))?;
    let ecc = ctx.optional_ref(p.hObjectEccError, |k| matches!(k, ObjectKind::Memory(_)))?;
    p.bIsCallingContextVgpuPlugin = 0;
    p._pad = [0; 3];
    write(&p, params);
    Ok(Constructed {
        kind: ObjectKind::ChannelGroup(ChannelGroup {
            engine_type: p.engineType,
            va_space: va.unwrap_or(0),
            timeslice_us: DEFAULT_TIMESLICE_US,
            interleave_level: NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM,
        }),
        depends_on: [va, err, ecc].into_iter().flatten().collect(),
        fb_charge: 0,
        sysmem_charge: 0,
    })
}
