//! Frontend escape argument structs (`nv-ioctl.h`, `nv-ioctl-numa.h`), answered by the kernel
//! frontend (`nv.c`) rather than by RM.

use super::nvos::abi_struct;
use super::Handle;
use crate::assert_layout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

abi_struct! {
    /// `nv_ioctl_xfer_t`: the indirect form for arguments over the 14-bit size field.
    pub struct NvIoctlXfer {
        /// The real request number.
        pub cmd: u32,
        /// The real argument size (at most `NV_ABSOLUTE_MAX_IOCTL_SIZE`).
        pub size: u32,
        /// The real argument (PTR).
        pub ptr: u64,
    }
}
assert_layout!(NvIoctlXfer, 16, cmd @ 0, size @ 4, ptr @ 8);

abi_struct! {
    /// `nv_pci_info_t`.
    pub struct NvPciInfo {
        /// PCI domain.
        pub domain: u32,
        /// Bus.
        pub bus: u8,
        /// Slot.
        pub slot: u8,
        /// Function.
        pub function: u8,
        /// Padding.
        pub _pad: u8,
        /// Vendor id.
        pub vendor_id: u16,
        /// Device id.
        pub device_id: u16,
    }
}
assert_layout!(NvPciInfo, 12, bus @ 4, slot @ 5, function @ 6, vendor_id @ 8, device_id @ 10);

abi_struct! {
    /// `nv_ioctl_card_info_t`; NV_ESC_CARD_INFO takes an array of these.
    pub struct NvIoctlCardInfo {
        /// Whether this entry describes a GPU (`NvBool`).
        pub valid: u8,
        /// Padding.
        pub _pad0: [u8; 3],
        /// PCI location and ids.
        pub pci_info: NvPciInfo,
        /// RM GPU id.
        pub gpu_id: u32,
        /// Interrupt line.
        pub interrupt_line: u16,
        /// Padding.
        pub _pad1: u16,
        /// BAR0 address.
        pub reg_address: u64,
        /// BAR0 size.
        pub reg_size: u64,
        /// Framebuffer BAR address.
        pub fb_address: u64,
        /// Framebuffer BAR size.
        pub fb_size: u64,
        /// Device minor (N in /dev/nvidiaN).
        pub minor_number: u32,
        /// Device name.
        pub dev_name: [u8; 10],
        /// Padding.
        pub _pad2: u16,
    }
}
assert_layout!(NvIoctlCardInfo, 72, pci_info @ 4, gpu_id @ 16, interrupt_line @ 20, reg_address @ 24,
    reg_size @ 32, fb_address @ 40, fb_size @ 48, minor_number @ 56, dev_name @ 60);

abi_struct! {
    /// `nv_ioctl_rm_api_version_t` (NV_ESC_CHECK_VERSION_STR).
    pub struct NvIoctlRmApiVersion {
        /// `NV_RM_API_VERSION_CMD_*`.
        pub cmd: u32,
        /// `NV_RM_API_VERSION_REPLY_*` out.
        pub reply: u32,
        /// NUL-terminated version string, in or out.
        pub versionString: [u8; 64],
    }
}
assert_layout!(NvIoctlRmApiVersion, 72, cmd @ 0, reply @ 4, versionString @ 8);

/// Version check: the whole string must match.
pub const NV_RM_API_VERSION_CMD_STRICT: u32 = 0;
/// Version check: compare up to the first `.`.
pub const NV_RM_API_VERSION_CMD_RELAXED: u32 = b'1' as u32;
/// Version check: just report the driver's version string.
pub const NV_RM_API_VERSION_CMD_QUERY: u32 = b'2' as u32;
/// Reply: the version was not recognized.
pub const NV_RM_API_VERSION_REPLY_UNRECOGNIZED: u32 = 0;
/// Reply: the version was recognized.
pub const NV_RM_API_VERSION_REPLY_RECOGNIZED: u32 = 1;

abi_struct! {
    /// `nv_ioctl_register_fd_t` (NV_ESC_REGISTER_FD).
    pub struct NvIoctlRegisterFd {
        /// The ctl fd whose client context this device fd joins.
        pub ctl_fd: i32,
    }
}
assert_layout!(NvIoctlRegisterFd, 4, ctl_fd @ 0);

abi_struct! {
    /// `nv_ioctl_alloc_os_event_t` (NV_ESC_ALLOC_OS_EVENT).
    pub struct NvIoctlAllocOsEvent {
        /// Client.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// fd the event signals.
        pub fd: u32,
        /// RM status out.
        pub Status: u32,
    }
}
assert_layout!(NvIoctlAllocOsEvent, 16, fd @ 8, Status @ 12);

abi_struct! {
    /// `nv_ioctl_free_os_event_t` (NV_ESC_FREE_OS_EVENT).
    pub struct NvIoctlFreeOsEvent {
        /// Client.
        pub hClient: Handle,
        /// Device.
        pub hDevice: Handle,
        /// fd of the event.
        pub fd: u32,
        /// RM status out.
        pub Status: u32,
    }
}
assert_layout!(NvIoctlFreeOsEvent, 16, fd @ 8, Status @ 12);

abi_struct! {
    /// `nv_ioctl_status_code_t` (NV_ESC_STATUS_CODE).
    pub struct NvIoctlStatusCode {
        /// PCI domain.
        pub domain: u32,
        /// Bus.
        pub bus: u8,
        /// Slot.
        pub slot: u8,
        /// Padding.
        pub _pad: u16,
        /// Status out.
        pub status: u32,
    }
}
assert_layout!(NvIoctlStatusCode, 12, bus @ 4, slot @ 5, status @ 8);

abi_struct! {
    /// `nv_ioctl_query_device_intr` (NV_ESC_QUERY_DEVICE_INTR).
    pub struct NvIoctlQueryDeviceIntr {
        /// Pending interrupt bits out.
        pub intrStatus: u32,
        /// Status out.
        pub status: u32,
    }
}
assert_layout!(NvIoctlQueryDeviceIntr, 8, status @ 4);

abi_struct! {
    /// `nv_ioctl_sys_params_t` (NV_ESC_SYS_PARAMS).
    pub struct NvIoctlSysParams {
        /// Memory block size of the system, out.
        pub memblock_size: u64,
    }
}
assert_layout!(NvIoctlSysParams, 8, memblock_size @ 0);

/// `NV_IOCTL_NUMA_INFO_MAX_OFFLINE_ADDRESSES`.
pub const NV_NUMA_MAX_OFFLINE_ADDRESSES: usize = 64;

abi_struct! {
    /// `nv_ioctl_numa_info_t` (NV_ESC_NUMA_INFO).
    pub struct NvIoctlNumaInfo {
        /// NUMA node id (-1: none).
        pub nid: i32,
        /// `NV_IOCTL_NUMA_STATUS_*`.
        pub status: i32,
        /// Memory block size.
        pub memblock_size: u64,
        /// Base of GPU memory exposed as a NUMA node.
        pub numa_mem_addr: u64,
        /// Its size.
        pub numa_mem_size: u64,
        /// `NvU8 use_auto_online`.
        pub use_auto_online: u8,
        /// Padding.
        pub _pad0: [u8; 7],
        /// `offline_addresses.addresses`.
        pub offline_addresses: [u64; NV_NUMA_MAX_OFFLINE_ADDRESSES],
        /// `offline_addresses.numEntries`.
        pub offline_num_entries: u32,
        /// Padding.
        pub _pad1: u32,
    }
}
assert_layout!(NvIoctlNumaInfo, 560, memblock_size @ 8, numa_mem_addr @ 16, numa_mem_size @ 24,
    use_auto_online @ 32, offline_addresses @ 40, offline_num_entries @ 552);

abi_struct! {
    /// `nv_ioctl_set_numa_status_t` (NV_ESC_SET_NUMA_STATUS).
    pub struct NvIoctlSetNumaStatus {
        /// `NV_IOCTL_NUMA_STATUS_*`.
        pub status: i32,
    }
}
assert_layout!(NvIoctlSetNumaStatus, 4, status @ 0);

abi_struct! {
    /// `nv_ioctl_wait_open_complete_t` (NV_ESC_WAIT_OPEN_COMPLETE).
    pub struct NvIoctlWaitOpenComplete {
        /// Result of the deferred open (`int`, 0 or -errno).
        pub rc: i32,
        /// Adapter status.
        pub adapterStatus: u32,
    }
}
assert_layout!(NvIoctlWaitOpenComplete, 8, adapterStatus @ 4);

/// `nv_ioctl_export_to_dma_buf_fd_t` (2608 bytes in 580). Its layout changed at 580.65.06 and
/// this core does not export dma-bufs, so it is carried as bytes with only its size pinned.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct NvIoctlExportToDmaBufFd {
    /// The raw struct.
    pub bytes: [u8; 2608],
}
assert_layout!(NvIoctlExportToDmaBufFd, 2608);
