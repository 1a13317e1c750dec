//! Class ids (`class/clXXXX.h`) and the alloc-param struct size RM copies in for each
//! (`rmapiGetClassAllocParamSize`; RM ignores the caller's `paramsSize`).

use super::alloc_params as ap;
use core::mem::size_of;

/// What a class's alloc params are, per the resource descriptor table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocParams {
    /// The class takes no params (a non-NULL pointer is ignored).
    None,
    /// A struct of this size that may be NULL (RM then uses defaults).
    Optional(u32),
    /// A struct of this size that must be present (`NV_ERR_INVALID_ARGUMENT` if NULL).
    Required(u32),
    /// The param layout is not pinned in this ABI module.
    Unknown,
}

/// One row of the class table.
#[derive(Debug, Clone, Copy)]
pub struct ClassInfo {
    /// Class id (`hClass`).
    pub id: u32,
    /// Header name.
    pub name: &'static str,
    /// Alloc params.
    pub params: AllocParams,
}

macro_rules! classes {
    ($($name:ident = $id:expr, $params:expr;)*) => {
        $(#[doc = concat!("`", stringify!($name), "`")] pub const $name: u32 = $id;)*

        /// Every class this ABI names, with its alloc params.
        pub const CLASSES: &[ClassInfo] = &[$(ClassInfo { id: $id, name: stringify!($name), params: $params },)*];
    };
}

const fn opt<T>() -> AllocParams {
    AllocParams::Optional(size_of::<T>() as u32)
}
const fn req<T>() -> AllocParams {
    AllocParams::Required(size_of::<T>() as u32)
}

classes! {
    NV01_ROOT = 0x0000, opt::<ap::NvRootAllocParams>();
    NV01_ROOT_NON_PRIV = 0x0001, opt::<ap::NvRootAllocParams>();
    NV01_EVENT = 0x0005, req::<ap::Nv0005AllocParameters>();
    NV01_MEMORY_SYSTEM = 0x003E, req::<ap::NvMemoryAllocationParams>();
    NV01_MEMORY_LOCAL_USER = 0x0040, req::<ap::NvMemoryAllocationParams>();
    NV01_ROOT_CLIENT = 0x0041, opt::<ap::NvRootAllocParams>();
    NV01_MEMORY_SYSTEM_OS_DESCRIPTOR = 0x0071, AllocParams::Unknown;
    NV04_DISPLAY_COMMON = 0x0073, AllocParams::None;
    NV01_EVENT_KERNEL_CALLBACK_EX = 0x007E, req::<ap::Nv0005AllocParameters>();
    NV01_EVENT_OS_EVENT = 0x0079, req::<ap::Nv0005AllocParameters>();
    NV01_EVENT_KERNEL_CALLBACK = 0x0078, req::<ap::Nv0005AllocParameters>();
    NV01_DEVICE_0 = 0x0080, opt::<ap::Nv0080AllocParameters>();
    RM_USER_SHARED_DATA = 0x00DE, AllocParams::Unknown;
    NV20_SUBDEVICE_0 = 0x2080, opt::<ap::Nv2080AllocParameters>();
    NV2081_BINAPI = 0x2081, AllocParams::Unknown;
    NV20_SUBDEVICE_DIAG = 0x208F, AllocParams::None;
    NV50_THIRD_PARTY_P2P = 0x503C, AllocParams::Unknown;
    NV50_MEMORY_VIRTUAL = 0x50A0, AllocParams::Unknown;
    GT200_DEBUGGER = 0x83DE, AllocParams::Unknown;
    FERMI_CONTEXT_SHARE_A = 0x9067, req::<ap::NvCtxshareAllocationParameters>();
    GF100_SUBDEVICE_MASTER = 0x90E6, AllocParams::None;
    GF100_SUBDEVICE_INFOROM = 0x90E7, AllocParams::None;
    FERMI_VASPACE_A = 0x90F1, opt::<ap::NvVaspaceAllocationParameters>();
    KEPLER_DEVICE_VGPU = 0xA080, AllocParams::Unknown;
    NVA081_VGPU_CONFIG = 0xA081, AllocParams::Unknown;
    NVA084_KERNEL_HOST_VGPU_DEVICE = 0xA084, AllocParams::Unknown;
    KEPLER_CHANNEL_GROUP_A = 0xA06C, req::<ap::NvChannelGroupAllocationParameters>();
    VOLTA_CHANNEL_GPFIFO_A = 0xC36F, req::<ap::NvChannelAllocParams>();
    AMPERE_CHANNEL_GPFIFO_A = 0xC56F, req::<ap::NvChannelAllocParams>();
    AMPERE_SMC_CONFIG_SESSION = 0xC639, AllocParams::Unknown;
    AMPERE_SMC_MONITOR_SESSION = 0xC640, AllocParams::Unknown;
    HOPPER_USERMODE_A = 0xC661, opt::<ap::NvHopperUsermodeAParams>();
    HOPPER_CHANNEL_GPFIFO_A = 0xC86F, req::<ap::NvChannelAllocParams>();
    HOPPER_DMA_COPY_A = 0xC8B5, opt::<ap::Nvb0b5AllocationParameters>();
    NV_CONFIDENTIAL_COMPUTE = 0xCB33, AllocParams::Unknown;
    HOPPER_A = 0xCB97, opt::<ap::NvGrAllocationParameters>();
    HOPPER_COMPUTE_A = 0xCBC0, opt::<ap::NvGrAllocationParameters>();
}

/// The class table row for `id`.
pub fn class_info(id: u32) -> Option<&'static ClassInfo> {
    CLASSES.iter().find(|c| c.id == id)
}

/// Whether `id` is one of the event classes that `RM_ALLOC` accepts on a device node too.
pub const fn is_event_class(id: u32) -> bool {
    matches!(
        id,
        NV01_EVENT
            | NV01_EVENT_OS_EVENT
            | NV01_EVENT_KERNEL_CALLBACK
            | NV01_EVENT_KERNEL_CALLBACK_EX
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_param_sizes() {
        let size = |id| match class_info(id).unwrap().params {
            AllocParams::Optional(n) | AllocParams::Required(n) => n,
            other => panic!("{other:?}"),
        };
        assert_eq!(size(NV01_DEVICE_0), 56);
        assert_eq!(size(NV20_SUBDEVICE_0), 4);
        assert_eq!(size(FERMI_VASPACE_A), 56);
        assert_eq!(size(KEPLER_CHANNEL_GROUP_A), 20);
        assert_eq!(size(FERMI_CONTEXT_SHARE_A), 12);
        assert_eq!(size(HOPPER_CHANNEL_GPFIFO_A), 368);
        assert_eq!(size(NV01_MEMORY_LOCAL_USER), 128);
        assert_eq!(size(HOPPER_COMPUTE_A), 16);
        let mut ids: Vec<u32> = CLASSES.iter().map(|c| c.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CLASSES.len(), "duplicate class id");
    }
}
