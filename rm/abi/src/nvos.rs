//! RM API escape argument structs (`nvos.h`, `nv-unix-nvos-params-wrappers.h`), 580 layouts.
//!
//! Naming: `NvosNNParameters` is `NVOSNN_PARAMETERS`. Explicit `_pad` fields stand where the C
//! compiler inserts padding, so every byte of each struct is a named field.

use super::Handle;
use crate::assert_layout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

macro_rules! abi_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
        #[allow(non_snake_case)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }

        impl Default for $name {
            fn default() -> Self {
                zerocopy::FromZeros::new_zeroed()
            }
        }
    };
}
pub(crate) use abi_struct;

abi_struct! {
    /// `NVOS00_PARAMETERS` (RM_FREE). Freeing `hObjectOld == hRoot` frees the whole client.
    pub struct Nvos00Parameters {
        /// Client handle.
        pub hRoot: Handle,
        /// Parent of the object to free.
        pub hObjectParent: Handle,
        /// Object to free.
        pub hObjectOld: Handle,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos00Parameters, 16, hRoot @ 0, hObjectParent @ 4, hObjectOld @ 8, status @ 12);

abi_struct! {
    /// `NVOS02_PARAMETERS` (RM_ALLOC_MEMORY).
    pub struct Nvos02Parameters {
        /// Client handle.
        pub hRoot: Handle,
        /// Parent (device).
        pub hObjectParent: Handle,
        /// New memory object handle.
        pub hObjectNew: Handle,
        /// Memory class (e.g. `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR`).
        pub hClass: u32,
        /// `NVOS02_FLAGS_*`.
        pub flags: u32,
        /// Padding.
        pub _pad0: u32,
        /// User address: input for OS descriptors, output otherwise (PTR).
        pub pMemory: u64,
        /// Size minus one.
        pub limit: u64,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nvos02Parameters, 48, hClass @ 12, flags @ 16, pMemory @ 24, limit @ 32, status @ 40);

abi_struct! {
    /// `nv_ioctl_nvos02_parameters_with_fd`: NVOS02 plus the fd the memory belongs to.
    pub struct Nvos02ParametersWithFd {
        /// The RM parameters.
        pub params: Nvos02Parameters,
        /// fd (`int`).
        pub fd: i32,
        /// Padding.
        pub _pad: u32,
    }
}
assert_layout!(Nvos02ParametersWithFd, 56, params @ 0, fd @ 48);

abi_struct! {
    /// `NVOS05_PARAMETERS` (RM_ALLOC_OBJECT, legacy allocation without parameters).
    pub struct Nvos05Parameters {
        /// Client handle.
        pub hRoot: Handle,
        /// Parent.
        pub hObjectParent: Handle,
        /// New object handle.
        pub hObjectNew: Handle,
        /// Class.
        pub hClass: u32,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos05Parameters, 20, hClass @ 12, status @ 16);

abi_struct! {
    /// `NVOS21_PARAMETERS` (RM_ALLOC, legacy 32-byte form).
    pub struct Nvos21Parameters {
        /// Client handle (0 when allocating a client).
        pub hRoot: Handle,
        /// Parent.
        pub hObjectParent: Handle,
        /// New handle, in/out; 0 lets RM pick.
        pub hObjectNew: Handle,
        /// Class.
        pub hClass: u32,
        /// Alloc params (PTR).
        pub pAllocParms: u64,
        /// Ignored by RM; the class decides the copy-in size.
        pub paramsSize: u32,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos21Parameters, 32, hClass @ 12, pAllocParms @ 16, paramsSize @ 24, status @ 28);

abi_struct! {
    /// `NVOS64_PARAMETERS` (RM_ALLOC with requested access rights, 48 bytes).
    pub struct Nvos64Parameters {
        /// Client handle (0 when allocating a client).
        pub hRoot: Handle,
        /// Parent.
        pub hObjectParent: Handle,
        /// New handle, in/out; 0 lets RM pick.
        pub hObjectNew: Handle,
        /// Class.
        pub hClass: u32,
        /// Alloc params (PTR).
        pub pAllocParms: u64,
        /// `RS_ACCESS_MASK` pointer or NULL (PTR).
        pub pRightsRequested: u64,
        /// Ignored by RM.
        pub paramsSize: u32,
        /// `NVOS64_FLAGS_*`.
        pub flags: u32,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad: u32,
    }
}
assert_layout!(Nvos64Parameters, 48, pAllocParms @ 16, pRightsRequested @ 24, paramsSize @ 32, flags @ 36, status @ 40);

/// `NVOS64_FLAGS_FINN_SERIALIZED`: the params are FINN-serialized (kernel callers only).
pub const NVOS64_FLAGS_FINN_SERIALIZED: u32 = 1;

abi_struct! {
    /// `NVOS54_PARAMETERS` (RM_CONTROL).
    pub struct Nvos54Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Target object.
        pub hObject: Handle,
        /// Control command.
        pub cmd: u32,
        /// `NVOS54_FLAGS_*`.
        pub flags: u32,
        /// Param buffer (PTR); NULL iff `paramsSize == 0`.
        pub params: u64,
        /// Must equal the command's param struct size.
        pub paramsSize: u32,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos54Parameters, 32, hClient @ 0, hObject @ 4, cmd @ 8, flags @ 12, params @ 16, paramsSize @ 24, status @ 28);

/// `NVOS54_FLAGS_IRQL_RAISED`.
pub const NVOS54_FLAGS_IRQL_RAISED: u32 = 1;
/// `NVOS54_FLAGS_LOCK_BYPASS` (kernel callers only).
pub const NVOS54_FLAGS_LOCK_BYPASS: u32 = 2;
/// `NVOS54_FLAGS_FINN_SERIALIZED` (kernel callers only).
pub const NVOS54_FLAGS_FINN_SERIALIZED: u32 = 4;

abi_struct! {
    /// `NVOS30_PARAMETERS` (RM_IDLE_CHANNELS).
    pub struct Nvos30Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// Single channel (when `numChannels == 0`).
        pub hChannel: Handle,
        /// Length of the three lists.
        pub numChannels: u32,
        /// Client handle list (PTR).
        pub phClients: u64,
        /// Device handle list (PTR).
        pub phDevices: u64,
        /// Channel handle list (PTR).
        pub phChannels: u64,
        /// `NVOS30_FLAGS_*`.
        pub flags: u32,
        /// Timeout in µs.
        pub timeout: u32,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad: u32,
    }
}
assert_layout!(Nvos30Parameters, 56, numChannels @ 12, phClients @ 16, phDevices @ 24, phChannels @ 32, flags @ 40, timeout @ 44, status @ 48);

abi_struct! {
    /// `NVOS32_PARAMETERS` (RM_VID_HEAP_CONTROL); the per-function union is kept as bytes.
    pub struct Nvos32Parameters {
        /// Client handle.
        pub hRoot: Handle,
        /// Parent (device).
        pub hObjectParent: Handle,
        /// `NVOS32_FUNCTION_*`.
        pub function: u32,
        /// VA space.
        pub hVASpace: Handle,
        /// `NvS16 ivcHeapNumber`.
        pub ivcHeapNumber: i16,
        /// Padding.
        pub _pad0: u16,
        /// RM status out.
        pub status: u32,
        /// Heap total.
        pub total: u64,
        /// Heap free.
        pub free: u64,
        /// The per-function `data` union.
        pub data: [u64; 18],
    }
}
assert_layout!(Nvos32Parameters, 184, hVASpace @ 12, ivcHeapNumber @ 16, status @ 20, total @ 24, free @ 32, data @ 40);

abi_struct! {
    /// `NVOS33_PARAMETERS` (RM_MAP_MEMORY).
    pub struct Nvos33Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device or subdevice.
        pub hDevice: Handle,
        /// Memory object.
        pub hMemory: Handle,
        /// Padding.
        pub _pad0: u32,
        /// Offset into the memory.
        pub offset: u64,
        /// Length of the mapping.
        pub length: u64,
        /// Out: the mmap cookie (PTR-sized).
        pub pLinearAddress: u64,
        /// RM status out.
        pub status: u32,
        /// `NVOS33_FLAGS_*`.
        pub flags: u32,
    }
}
assert_layout!(Nvos33Parameters, 48, hMemory @ 8, offset @ 16, length @ 24, pLinearAddress @ 32, status @ 40, flags @ 44);

/// `NVOS33_FLAGS_CACHING_TYPE` field (bits 25:23), which `RmIoctl` overwrites with DEFAULT.
pub const NVOS33_FLAGS_CACHING_TYPE_MASK: u32 = 0x7 << 23;
/// `NVOS33_FLAGS_CACHING_TYPE_DEFAULT` (6), already shifted into place.
pub const NVOS33_FLAGS_CACHING_TYPE_DEFAULT: u32 = 6 << 23;

abi_struct! {
    /// `nv_ioctl_nvos33_parameters_with_fd`: NVOS33 plus the fd that will be mmap()ed.
    pub struct Nvos33ParametersWithFd {
        /// The RM parameters.
        pub params: Nvos33Parameters,
        /// fd (`int`).
        pub fd: i32,
        /// Padding.
        pub _pad: u32,
    }
}
assert_layout!(Nvos33ParametersWithFd, 56, params @ 0, fd @ 48);

abi_struct! {
    /// `NVOS34_PARAMETERS` (RM_UNMAP_MEMORY).
    pub struct Nvos34Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device or subdevice.
        pub hDevice: Handle,
        /// Memory object.
        pub hMemory: Handle,
        /// Padding.
        pub _pad0: u32,
        /// The cookie RM_MAP_MEMORY returned.
        pub pLinearAddress: u64,
        /// RM status out.
        pub status: u32,
        /// Flags.
        pub flags: u32,
    }
}
assert_layout!(Nvos34Parameters, 32, pLinearAddress @ 16, status @ 24, flags @ 28);

abi_struct! {
    /// `NVOS39_PARAMETERS` (RM_ALLOC_CONTEXT_DMA2).
    pub struct Nvos39Parameters {
        /// Client handle.
        pub hObjectParent: Handle,
        /// Subdevice.
        pub hSubDevice: Handle,
        /// New context DMA.
        pub hObjectNew: Handle,
        /// Class.
        pub hClass: u32,
        /// Flags.
        pub flags: u32,
        /// Selector.
        pub selector: u32,
        /// Memory to describe.
        pub hMemory: Handle,
        /// Padding.
        pub _pad0: u32,
        /// Offset.
        pub offset: u64,
        /// Limit.
        pub limit: u64,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nvos39Parameters, 56, hMemory @ 24, offset @ 32, limit @ 40, status @ 48);

abi_struct! {
    /// `NVOS46_PARAMETERS` (RM_MAP_MEMORY_DMA), 580.65.06+ layout.
    pub struct Nvos46Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// VA space (or context DMA) to map into.
        pub hDma: Handle,
        /// Memory to map.
        pub hMemory: Handle,
        /// Offset into the memory.
        pub offset: u64,
        /// Length.
        pub length: u64,
        /// `NVOS46_FLAGS_*`.
        pub flags: u32,
        /// `NVOS46_FLAGS2_*` (new in 580).
        pub flags2: u32,
        /// PTE kind override.
        pub kindOverride: u32,
        /// Padding.
        pub _pad0: u32,
        /// In (fixed address) / out: the GPU virtual address.
        pub dmaOffset: u64,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nvos46Parameters, 64, offset @ 16, length @ 24, flags @ 32, flags2 @ 36, kindOverride @ 40, dmaOffset @ 48, status @ 56);

/// `NVOS46_FLAGS_DMA_OFFSET_FIXED` (bit 15): `dmaOffset` is an input.
pub const NVOS46_FLAGS_DMA_OFFSET_FIXED: u32 = 1 << 15;

abi_struct! {
    /// `NVOS47_PARAMETERS` (RM_UNMAP_MEMORY_DMA).
    pub struct Nvos47Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// VA space.
        pub hDma: Handle,
        /// Memory.
        pub hMemory: Handle,
        /// Flags.
        pub flags: u32,
        /// Padding.
        pub _pad0: u32,
        /// GPU virtual address of the mapping.
        pub dmaOffset: u64,
        /// Size.
        pub size: u64,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nvos47Parameters, 48, flags @ 16, dmaOffset @ 24, size @ 32, status @ 40);

abi_struct! {
    /// `NVOS49_PARAMETERS` (RM_BIND_CONTEXT_DMA).
    pub struct Nvos49Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Channel.
        pub hChannel: Handle,
        /// Context DMA.
        pub hCtxDma: Handle,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos49Parameters, 16, status @ 12);

abi_struct! {
    /// `NVOS55_PARAMETERS` (RM_DUP_OBJECT).
    pub struct Nvos55Parameters {
        /// Client receiving the duplicate.
        pub hClient: Handle,
        /// Parent of the duplicate.
        pub hParent: Handle,
        /// New handle.
        pub hObject: Handle,
        /// Source client.
        pub hClientSrc: Handle,
        /// Source object.
        pub hObjectSrc: Handle,
        /// Flags.
        pub flags: u32,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos55Parameters, 28, hClientSrc @ 12, hObjectSrc @ 16, flags @ 20, status @ 24);

abi_struct! {
    /// `NVOS57_PARAMETERS` (RM_SHARE) with its embedded `RS_SHARE_POLICY`.
    pub struct Nvos57Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Object to share.
        pub hObject: Handle,
        /// `RS_SHARE_POLICY.target`.
        pub target: u32,
        /// `RS_SHARE_POLICY.accessMask` (one limb).
        pub accessMask: u32,
        /// `RS_SHARE_POLICY.type`.
        pub policyType: u16,
        /// `RS_SHARE_POLICY.action`.
        pub action: u8,
        /// Padding.
        pub _pad: u8,
        /// RM status out.
        pub status: u32,
    }
}
assert_layout!(Nvos57Parameters, 24, target @ 8, accessMask @ 12, policyType @ 16, action @ 18, status @ 20);

abi_struct! {
    /// `NVOS56_PARAMETERS` (RM_UPDATE_DEVICE_MAPPING_INFO).
    pub struct Nvos56Parameters {
        /// Client handle.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// Memory.
        pub hMemory: Handle,
        /// Padding.
        pub _pad0: u32,
        /// Old CPU address (PTR).
        pub pOldCpuAddress: u64,
        /// New CPU address (PTR).
        pub pNewCpuAddress: u64,
        /// RM status out.
        pub status: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(Nvos56Parameters, 40, pOldCpuAddress @ 16, pNewCpuAddress @ 24, status @ 32);
