//! Escape numbers (`_IOC_NR`) of the RM escapes (`nv_escape.h`) and the frontend escapes
//! (`nv-ioctl-numbers.h`), with the argument size each one requires and the device node it is
//! accepted on.

use super::{frontend, nvos};
use core::mem::size_of;

/// Which device node an escape may arrive on (`NV_CTL_DEVICE_ONLY` / `NV_ACTUAL_DEVICE_ONLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRule {
    /// Only on `/dev/nvidiactl`.
    CtlOnly,
    /// Only on `/dev/nvidiaN`.
    DeviceOnly,
    /// On either node.
    Either,
}

/// How the argument size of an escape is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSize {
    /// Exactly this many bytes.
    Exact(u32),
    /// One of two exact sizes (`RM_ALLOC`: NVOS21 or NVOS64).
    EitherOf(u32, u32),
    /// A nonzero multiple of this element size (attach GPUs).
    ArrayOf(u32),
    /// At least this many bytes (card info: an array read as `size / 72` entries; device
    /// interrupt query).
    AtLeast(u32),
}

impl ArgSize {
    /// Whether `size` satisfies this rule.
    pub const fn accepts(self, size: u32) -> bool {
        match self {
            ArgSize::Exact(n) => size == n,
            ArgSize::EitherOf(a, b) => size == a || size == b,
            ArgSize::ArrayOf(n) => size != 0 && size.is_multiple_of(n),
            ArgSize::AtLeast(n) => size >= n,
        }
    }
}

macro_rules! escapes {
    ($($(#[$doc:meta])* $name:ident = $nr:expr, $size:expr, $node:ident;)*) => {
        /// An escape this ABI knows, by `_IOC_NR`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(non_camel_case_types)]
        pub enum Escape { $($(#[$doc])* $name = $nr,)* }

        impl Escape {
            /// Every escape, in escape-number order of declaration.
            pub const ALL: &'static [Escape] = &[$(Escape::$name,)*];

            /// The escape with number `nr`, if known.
            pub const fn from_nr(nr: u8) -> Option<Escape> {
                match nr { $($nr => Some(Escape::$name),)* _ => None }
            }

            /// The `NV_ESC_*` name.
            pub const fn name(self) -> &'static str {
                match self { $(Escape::$name => concat!("NV_ESC_", stringify!($name)),)* }
            }

            /// The argument size rule.
            pub const fn arg_size(self) -> ArgSize {
                match self { $(Escape::$name => $size,)* }
            }

            /// The device-node rule.
            pub const fn node_rule(self) -> NodeRule {
                match self { $(Escape::$name => NodeRule::$node,)* }
            }
        }
    };
}

const fn exact<T>() -> ArgSize {
    ArgSize::Exact(size_of::<T>() as u32)
}

escapes! {
    /// Allocate memory (NVOS02 + fd); device node only.
    RM_ALLOC_MEMORY = 0x27, exact::<nvos::Nvos02ParametersWithFd>(), DeviceOnly;
    /// Legacy object allocation (NVOS05).
    RM_ALLOC_OBJECT = 0x28, exact::<nvos::Nvos05Parameters>(), CtlOnly;
    /// Free an object and its subtree (NVOS00).
    RM_FREE = 0x29, exact::<nvos::Nvos00Parameters>(), CtlOnly;
    /// Control call (NVOS54).
    RM_CONTROL = 0x2A, exact::<nvos::Nvos54Parameters>(), CtlOnly;
    /// Allocate an object (NVOS21 or NVOS64); events also on the device node.
    RM_ALLOC = 0x2B, ArgSize::EitherOf(size_of::<nvos::Nvos21Parameters>() as u32, size_of::<nvos::Nvos64Parameters>() as u32), CtlOnly;
    /// Duplicate an object from another client (NVOS55).
    RM_DUP_OBJECT = 0x34, exact::<nvos::Nvos55Parameters>(), CtlOnly;
    /// Share an object with other clients (NVOS57).
    RM_SHARE = 0x35, exact::<nvos::Nvos57Parameters>(), CtlOnly;
    /// Wait for channels to idle (NVOS30).
    RM_IDLE_CHANNELS = 0x41, exact::<nvos::Nvos30Parameters>(), CtlOnly;
    /// Video heap control (NVOS32).
    RM_VID_HEAP_CONTROL = 0x4A, exact::<nvos::Nvos32Parameters>(), CtlOnly;
    /// Map memory for CPU access (NVOS33 + fd).
    RM_MAP_MEMORY = 0x4E, exact::<nvos::Nvos33ParametersWithFd>(), CtlOnly;
    /// Unmap a CPU mapping (NVOS34).
    RM_UNMAP_MEMORY = 0x4F, exact::<nvos::Nvos34Parameters>(), CtlOnly;
    /// Allocate a context DMA (NVOS39).
    RM_ALLOC_CONTEXT_DMA2 = 0x54, exact::<nvos::Nvos39Parameters>(), CtlOnly;
    /// Map memory into a GPU virtual address space (NVOS46, 580 layout).
    RM_MAP_MEMORY_DMA = 0x57, exact::<nvos::Nvos46Parameters>(), CtlOnly;
    /// Unmap a GPU virtual mapping (NVOS47).
    RM_UNMAP_MEMORY_DMA = 0x58, exact::<nvos::Nvos47Parameters>(), CtlOnly;
    /// Bind a context DMA to a channel (NVOS49).
    RM_BIND_CONTEXT_DMA = 0x59, exact::<nvos::Nvos49Parameters>(), CtlOnly;
    /// Update a CPU mapping after mremap (NVOS56).
    RM_UPDATE_DEVICE_MAPPING_INFO = 0x5E, exact::<nvos::Nvos56Parameters>(), CtlOnly;
    /// Card info: an array of `nv_ioctl_card_info_t`.
    CARD_INFO = 200, ArgSize::AtLeast(size_of::<frontend::NvIoctlCardInfo>() as u32), CtlOnly;
    /// Connect a device-node fd to a ctl fd.
    REGISTER_FD = 201, exact::<frontend::NvIoctlRegisterFd>(), Either;
    /// Allocate an OS event on an fd.
    ALLOC_OS_EVENT = 206, exact::<frontend::NvIoctlAllocOsEvent>(), Either;
    /// Free an OS event.
    FREE_OS_EVENT = 207, exact::<frontend::NvIoctlFreeOsEvent>(), Either;
    /// Query a GPU's status code by PCI location.
    STATUS_CODE = 209, exact::<frontend::NvIoctlStatusCode>(), CtlOnly;
    /// Driver version check (strict / relaxed / query).
    CHECK_VERSION_STR = 210, exact::<frontend::NvIoctlRmApiVersion>(), CtlOnly;
    /// Indirect call for arguments larger than the 14-bit size field.
    IOCTL_XFER_CMD = 211, exact::<frontend::NvIoctlXfer>(), Either;
    /// Attach GPUs to a ctl fd: `NvU32 gpuIds[n]`, once per fd.
    ATTACH_GPUS_TO_FD = 212, ArgSize::ArrayOf(4), CtlOnly;
    /// Query pending device interrupts.
    QUERY_DEVICE_INTR = 213, ArgSize::AtLeast(size_of::<frontend::NvIoctlQueryDeviceIntr>() as u32), DeviceOnly;
    /// System parameters (memory block size).
    SYS_PARAMS = 214, exact::<frontend::NvIoctlSysParams>(), CtlOnly;
    /// NUMA information of the GPU.
    NUMA_INFO = 215, exact::<frontend::NvIoctlNumaInfo>(), DeviceOnly;
    /// Set the GPU's NUMA status.
    SET_NUMA_STATUS = 216, exact::<frontend::NvIoctlSetNumaStatus>(), DeviceOnly;
    /// Export memory to a dma-buf fd.
    EXPORT_TO_DMABUF_FD = 217, exact::<frontend::NvIoctlExportToDmaBufFd>(), DeviceOnly;
    /// Wait until the device's open has completed.
    WAIT_OPEN_COMPLETE = 218, exact::<frontend::NvIoctlWaitOpenComplete>(), Either;
}

impl Escape {
    /// Whether this escape is answered by the kernel frontend (`nv.c`) rather than RM.
    pub const fn is_frontend(self) -> bool {
        (self as u8) >= super::ioctl::NV_IOCTL_BASE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_request_numbers_match_the_reference() {
        use crate::ioctl::IoctlRequest;
        let cases = [
            (Escape::RM_ALLOC_MEMORY, 0xC038_4627_u32),
            (Escape::RM_ALLOC_OBJECT, 0xC014_4628),
            (Escape::RM_FREE, 0xC010_4629),
            (Escape::RM_CONTROL, 0xC020_462A),
            (Escape::RM_DUP_OBJECT, 0xC01C_4634),
            (Escape::RM_SHARE, 0xC018_4635),
            (Escape::RM_IDLE_CHANNELS, 0xC038_4641),
            (Escape::RM_VID_HEAP_CONTROL, 0xC0B8_464A),
            (Escape::RM_MAP_MEMORY, 0xC038_464E),
            (Escape::RM_UNMAP_MEMORY, 0xC020_464F),
            (Escape::RM_UPDATE_DEVICE_MAPPING_INFO, 0xC028_465E),
            (Escape::REGISTER_FD, 0xC004_46C9),
            (Escape::ALLOC_OS_EVENT, 0xC010_46CE),
            (Escape::FREE_OS_EVENT, 0xC010_46CF),
            (Escape::STATUS_CODE, 0xC00C_46D1),
            (Escape::CHECK_VERSION_STR, 0xC048_46D2),
            (Escape::IOCTL_XFER_CMD, 0xC010_46D3),
            (Escape::SYS_PARAMS, 0xC008_46D6),
            (Escape::NUMA_INFO, 0xC230_46D7),
            (Escape::SET_NUMA_STATUS, 0xC004_46D8),
            (Escape::EXPORT_TO_DMABUF_FD, 0xCA30_46D9),
            (Escape::WAIT_OPEN_COMPLETE, 0xC008_46DA),
        ];
        for (esc, full) in cases {
            let ArgSize::Exact(size) = esc.arg_size() else {
                panic!("{esc:?} not exact")
            };
            assert_eq!(
                IoctlRequest::encode(esc as u8, size),
                Some(full),
                "{}",
                esc.name()
            );
        }
        assert!(Escape::RM_ALLOC.arg_size().accepts(32));
        assert!(Escape::RM_ALLOC.arg_size().accepts(48));
        assert!(!Escape::RM_ALLOC.arg_size().accepts(40));
        assert!(Escape::CARD_INFO.arg_size().accepts(72 * 32));
        assert!(!Escape::CARD_INFO.arg_size().accepts(71));
        assert!(!Escape::ATTACH_GPUS_TO_FD.arg_size().accepts(0));
        assert!(!Escape::ATTACH_GPUS_TO_FD.arg_size().accepts(6));
    }

    #[test]
    fn numbers_round_trip() {
        for &e in Escape::ALL {
            assert_eq!(Escape::from_nr(e as u8), Some(e));
        }
        assert_eq!(Escape::from_nr(0x2C), None);
    }
}
