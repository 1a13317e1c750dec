//! System and video memory (`NV01_MEMORY_SYSTEM`, `NV01_MEMORY_LOCAL_USER`; parent: device).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::{is_client_memory_owner, NvMemoryAllocationParams};
use rm_abi::{class, Handle, NvStatus};

/// Allocation granularity the framebuffer quota is charged in.
pub const FB_PAGE: u64 = 4096;
/// Largest single allocation accepted (1 TiB), far above any framebuffer.
pub const MAX_ALLOC_BYTES: u64 = 1 << 40;

/// A memory object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memory {
    /// Video memory (charged to the vGPU's framebuffer quota) or system memory.
    pub video: bool,
    /// Size in bytes.
    pub size: u64,
    /// Bytes charged to the framebuffer quota.
    pub fb_charge: u64,
    /// Bytes charged to the system memory quota.
    pub sysmem_charge: u64,
    /// Live GPU mappings: (VA space handle, GPU VA).
    pub dma_mappings: Vec<(Handle, u64)>,
}

/// `NVOS32_ALLOC_FLAGS_VIRTUAL`.
const NVOS32_ALLOC_FLAGS_VIRTUAL: u32 = 0x0008_0000;

/// Validates a memory alloc: an owner tag a client may use (`NV_ERR_INVALID_OWNER`, as the
/// driver's `stdmemValidateParams` answers), nonzero size up to `MAX_ALLOC_BYTES`, not `VIRTUAL`; `hVASpace` must be 0 for video memory and 0 or a VA
/// space of this client. The size, page-rounded, is charged to the vGPU's framebuffer quota
/// (video) or system memory quota (system); the caller checks the quotas.
pub fn construct(
    ctx: &AllocContext<'_>,
    class_id: u32,
    params: &mut [u8],
) -> Result<Constructed, NvStatus> {
    ctx.require_parent(|k| matches!(k, ObjectKind::Device))?;
    let mut p: NvMemoryAllocationParams = read(params)?;
    if !is_client_memory_owner(p.owner) {
        return Err(NvStatus::ERR_INVALID_OWNER);
    }
    if p.size == 0 || p.size > MAX_ALLOC_BYTES {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let video = class_id == class::NV01_MEMORY_LOCAL_USER;
    // The driver's `vidmemConstruct`: "VA space handle used with physical allocation"; and
    // neither class is virtual memory.
    if (video && p.hVASpace != 0) || p.flags & NVOS32_ALLOC_FLAGS_VIRTUAL != 0 {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let va = ctx.optional_ref(p.hVASpace, |k| matches!(k, ObjectKind::VaSpace))?;
    let charge = p.size.div_ceil(FB_PAGE) * FB_PAGE;
    let (fb_charge, sysmem_charge) = if video { (charge, 0) } else { (0, charge) };
    p.address = 0;
    p.internalflags = 0;
    write(&p, params);
    Ok(Constructed {
        kind: ObjectKind::Memory(Memory {
            video,
            size: p.size,
            fb_charge,
            sysmem_charge,
            dma_mappings: Vec::new(),
        }),
        depends_on: va.into_iter().collect(),
        fb_charge,
        sysmem_charge,
    })
}
