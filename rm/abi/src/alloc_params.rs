//! Alloc-param structs of the classes the core validates (`alloc/*.h`, `class/*.h`), 580 layouts.

use super::nvos::abi_struct;
use super::Handle;
use crate::assert_layout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

abi_struct! {
    /// Root client params: an optional `NvHandle`; RM writes the new client handle there.
    pub struct NvRootAllocParams {
        /// Client handle.
        pub hClient: Handle,
    }
}
assert_layout!(NvRootAllocParams, 4);

abi_struct! {
    /// `NV0005_ALLOC_PARAMETERS` (event classes 0x05/0x78/0x79/0x7E).
    pub struct Nv0005AllocParameters {
        /// Client of the resource the event watches (H).
        pub hParentClient: Handle,
        /// Resource the event watches (H).
        pub hSrcResource: Handle,
        /// Event class.
        pub hClass: u32,
        /// Notifier index (`NV01_EVENT_*` flags in the high bits).
        pub notifyIndex: u32,
        /// OS event cookie / fd (PTR-sized).
        pub data: u64,
    }
}
assert_layout!(Nv0005AllocParameters, 24, hClass @ 8, notifyIndex @ 12, data @ 16);

abi_struct! {
    /// `NV0080_ALLOC_PARAMETERS` (NV01_DEVICE_0).
    pub struct Nv0080AllocParameters {
        /// Device instance (not a GPU id).
        pub deviceId: u32,
        /// Client to share the device's VA space with (H, client).
        pub hClientShare: Handle,
        /// Target client (H, client).
        pub hTargetClient: Handle,
        /// Target device (H).
        pub hTargetDevice: Handle,
        /// `NV_DEVICE_ALLOCATION_FLAGS_*`.
        pub flags: u32,
        /// Padding.
        pub _pad0: u32,
        /// VA space size.
        pub vaSpaceSize: u64,
        /// Internal VA start.
        pub vaStartInternal: u64,
        /// Internal VA limit.
        pub vaLimitInternal: u64,
        /// `NV_DEVICE_ALLOCATION_VAMODE_*`.
        pub vaMode: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nv0080AllocParameters, 56, hClientShare @ 4, hTargetClient @ 8, hTargetDevice @ 12, flags @ 16,
    vaSpaceSize @ 24, vaStartInternal @ 32, vaLimitInternal @ 40, vaMode @ 48);

abi_struct! {
    /// `NV2080_ALLOC_PARAMETERS` (NV20_SUBDEVICE_0).
    pub struct Nv2080AllocParameters {
        /// Subdevice instance.
        pub subDeviceId: u32,
    }
}
assert_layout!(Nv2080AllocParameters, 4);

abi_struct! {
    /// `NV_VASPACE_ALLOCATION_PARAMETERS` (FERMI_VASPACE_A), 580 layout with `pasid`.
    pub struct NvVaspaceAllocationParameters {
        /// VA space index.
        pub index: u32,
        /// `NV_VASPACE_ALLOCATION_FLAGS_*`.
        pub flags: u32,
        /// Size.
        pub vaSize: u64,
        /// Internal start.
        pub vaStartInternal: u64,
        /// Internal limit.
        pub vaLimitInternal: u64,
        /// Big page size.
        pub bigPageSize: u32,
        /// Padding.
        pub _pad0: u32,
        /// Base.
        pub vaBase: u64,
        /// PASID (new in 580.65.06).
        pub pasid: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(NvVaspaceAllocationParameters, 56, vaSize @ 8, vaStartInternal @ 16, vaLimitInternal @ 24,
    bigPageSize @ 32, vaBase @ 40, pasid @ 48);

abi_struct! {
    /// `NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS` (KEPLER_CHANNEL_GROUP_A, the TSG).
    pub struct NvChannelGroupAllocationParameters {
        /// Error notifier (H).
        pub hObjectError: Handle,
        /// ECC error notifier (H).
        pub hObjectEccError: Handle,
        /// VA space (H).
        pub hVASpace: Handle,
        /// `NV2080_ENGINE_TYPE_*`.
        pub engineType: u32,
        /// `NvBool`; forces GFID 0 when set. A guest must never set it.
        pub bIsCallingContextVgpuPlugin: u8,
        /// Padding.
        pub _pad: [u8; 3],
    }
}
assert_layout!(NvChannelGroupAllocationParameters, 20, hVASpace @ 8, engineType @ 12, bIsCallingContextVgpuPlugin @ 16);

abi_struct! {
    /// `NV_CTXSHARE_ALLOCATION_PARAMETERS` (FERMI_CONTEXT_SHARE_A).
    pub struct NvCtxshareAllocationParameters {
        /// VA space (H).
        pub hVASpace: Handle,
        /// `NV_CTXSHARE_ALLOCATION_FLAGS_*`.
        pub flags: u32,
        /// Subcontext id, out.
        pub subctxId: u32,
    }
}
assert_layout!(NvCtxshareAllocationParameters, 12, flags @ 4, subctxId @ 8);

abi_struct! {
    /// `NV_MEMORY_DESC_PARAMS`.
    pub struct NvMemoryDescParams {
        /// Base.
        pub base: u64,
        /// Size.
        pub size: u64,
        /// Address space.
        pub addressSpace: u32,
        /// Cache attribute.
        pub cacheAttrib: u32,
    }
}
assert_layout!(NvMemoryDescParams, 24, addressSpace @ 16, cacheAttrib @ 20);

/// `NVOS04_FLAGS_PRIVILEGED_CHANNEL` (bit 5): a guest must never set it.
pub const NVOS04_FLAGS_PRIVILEGED_CHANNEL: u32 = 1 << 5;
/// `NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT` (bit 26): a guest must never set it.
pub const NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT: u32 = 1 << 26;

abi_struct! {
    /// `NV_CHANNEL_ALLOC_PARAMS` (channel GPFIFO classes), 570.86.15+/580 layout.
    pub struct NvChannelAllocParams {
        /// Error notifier memory (H).
        pub hObjectError: Handle,
        /// Unused.
        pub hObjectBuffer: Handle,
        /// GPU VA of the GPFIFO ring.
        pub gpFifoOffset: u64,
        /// Number of GPFIFO entries.
        pub gpFifoEntries: u32,
        /// `NVOS04_FLAGS_*`.
        pub flags: u32,
        /// Context share (H).
        pub hContextShare: Handle,
        /// VA space (H).
        pub hVASpace: Handle,
        /// USERD memory per subdevice (H).
        pub hUserdMemory: [Handle; 8],
        /// USERD offset per subdevice.
        pub userdOffset: [u64; 8],
        /// `NV2080_ENGINE_TYPE_*`.
        pub engineType: u32,
        /// Channel id, out.
        pub cid: u32,
        /// Subdevice id.
        pub subDeviceId: u32,
        /// ECC error notifier (H).
        pub hObjectEccError: Handle,
        /// Instance memory (kernel callers only).
        pub instanceMem: NvMemoryDescParams,
        /// USERD memory (kernel callers only).
        pub userdMem: NvMemoryDescParams,
        /// RAMFC memory (kernel callers only).
        pub ramfcMem: NvMemoryDescParams,
        /// Method buffer memory (kernel callers only).
        pub mthdbufMem: NvMemoryDescParams,
        /// Reserved.
        pub hPhysChannelGroup: Handle,
        /// Reserved.
        pub internalFlags: u32,
        /// Error notifier memory (kernel callers only).
        pub errorNotifierMem: NvMemoryDescParams,
        /// ECC error notifier memory (kernel callers only).
        pub eccErrorNotifierMem: NvMemoryDescParams,
        /// Process id (set by RM).
        pub ProcessID: u32,
        /// Subprocess id (set by RM).
        pub SubProcessID: u32,
        /// CC encrypt IV.
        pub encryptIv: [u32; 3],
        /// CC decrypt IV.
        pub decryptIv: [u32; 3],
        /// CC HMAC nonce.
        pub hmacNonce: [u32; 8],
        /// TPC configuration id (since 570.86.15).
        pub tpcConfigID: u32,
        /// Padding.
        pub _pad: u32,
    }
}
assert_layout!(NvChannelAllocParams, 368, gpFifoOffset @ 8, gpFifoEntries @ 16, flags @ 20, hContextShare @ 24,
    hVASpace @ 28, hUserdMemory @ 32, userdOffset @ 64, engineType @ 128, cid @ 132, subDeviceId @ 136,
    hObjectEccError @ 140, instanceMem @ 144, userdMem @ 168, ramfcMem @ 192, mthdbufMem @ 216,
    hPhysChannelGroup @ 240, internalFlags @ 244, errorNotifierMem @ 248, eccErrorNotifierMem @ 272,
    ProcessID @ 296, SubProcessID @ 300, encryptIv @ 304, decryptIv @ 316, hmacNonce @ 328, tpcConfigID @ 360);

/// `HEAP_OWNER_RM_SCRATCH_BEGIN ..= HEAP_OWNER_RM_SCRATCH_END`: owner tags of RM's own memory.
pub const HEAP_OWNER_RM_SCRATCH: std::ops::RangeInclusive<u32> = 0xDEAF_0000..=0xDEAF_0003;

/// Whether a client may tag memory with `owner` (`stdmemValidateParams`: not 0, not ~0, not
/// RM's scratch tags; `NV_ERR_INVALID_OWNER` otherwise).
pub fn is_client_memory_owner(owner: u32) -> bool {
    owner != 0 && owner != u32::MAX && !HEAP_OWNER_RM_SCRATCH.contains(&owner)
}

/// The owner tag this project's clients give their memory ("VGPU").
pub const VGPU_MEMORY_OWNER: u32 = u32::from_be_bytes(*b"VGPU");

abi_struct! {
    /// `NV_MEMORY_ALLOCATION_PARAMS` (NV01_MEMORY_SYSTEM / NV01_MEMORY_LOCAL_USER).
    pub struct NvMemoryAllocationParams {
        /// Owner tag.
        pub owner: u32,
        /// `NVOS32_TYPE_*`.
        pub r#type: u32,
        /// `NVOS32_ALLOC_FLAGS_*`.
        pub flags: u32,
        /// Width.
        pub width: u32,
        /// Height.
        pub height: u32,
        /// Pitch.
        pub pitch: i32,
        /// `NVOS32_ATTR_*`.
        pub attr: u32,
        /// `NVOS32_ATTR2_*`.
        pub attr2: u32,
        /// Format.
        pub format: u32,
        /// Compression coverage.
        pub comprCovg: u32,
        /// Zcull coverage.
        pub zcullCovg: u32,
        /// Padding.
        pub _pad0: u32,
        /// Range low.
        pub rangeLo: u64,
        /// Range high.
        pub rangeHi: u64,
        /// Size in bytes.
        pub size: u64,
        /// Alignment.
        pub alignment: u64,
        /// Offset, in/out.
        pub offset: u64,
        /// Limit, out.
        pub limit: u64,
        /// Address, out (PTR-sized).
        pub address: u64,
        /// Compression tag offset.
        pub ctagOffset: u32,
        /// VA space (H).
        pub hVASpace: Handle,
        /// Internal flags.
        pub internalflags: u32,
        /// Tag.
        pub tag: u32,
        /// NUMA node.
        pub numaNode: i32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(NvMemoryAllocationParams, 128, rangeLo @ 48, rangeHi @ 56, size @ 64, alignment @ 72, offset @ 80,
    limit @ 88, address @ 96, ctagOffset @ 104, hVASpace @ 108, internalflags @ 112, tag @ 116, numaNode @ 120);

abi_struct! {
    /// `NV_GR_ALLOCATION_PARAMETERS` (compute / graphics classes).
    pub struct NvGrAllocationParameters {
        /// Version.
        pub version: u32,
        /// Flags.
        pub flags: u32,
        /// Size.
        pub size: u32,
        /// Caps.
        pub caps: u32,
    }
}
assert_layout!(NvGrAllocationParameters, 16);

abi_struct! {
    /// `NV_HOPPER_USERMODE_A_PARAMS` (HOPPER_USERMODE_A).
    pub struct NvHopperUsermodeAParams {
        /// `NvBool`: map through BAR1.
        pub bBar1Mapping: u8,
        /// `NvBool`: the privileged page (kernel callers only).
        pub bPriv: u8,
    }
}
assert_layout!(NvHopperUsermodeAParams, 2);

abi_struct! {
    /// `NVB0B5_ALLOCATION_PARAMETERS` (copy engine classes).
    pub struct Nvb0b5AllocationParameters {
        /// Version.
        pub version: u32,
        /// `NV2080_ENGINE_TYPE_COPY*`.
        pub engineType: u32,
    }
}
assert_layout!(Nvb0b5AllocationParameters, 8);

/// `NV2080_ENGINE_TYPE_NULL`.
pub const NV2080_ENGINE_TYPE_NULL: u32 = 0;
/// `NV2080_ENGINE_TYPE_GR0` (graphics/compute).
pub const NV2080_ENGINE_TYPE_GR0: u32 = 1;
/// `NV2080_ENGINE_TYPE_COPY0`; copy engine `i` is `COPY0 + i`.
pub const NV2080_ENGINE_TYPE_COPY0: u32 = 9;
