//! ioctl request numbers: `_IOWR('F', nr, size)` encoding and decoding.
//!
//! The driver (`nvidia_ioctl`) looks only at `_IOC_NR` and `_IOC_SIZE`; it ignores the direction
//! bits and the `'F'` type. [`IoctlRequest::decode`] does the same, so a request that the real
//! driver accepts decodes here too.

/// `NV_IOCTL_MAGIC`: the ioctl type byte of every NVIDIA request.
pub const NV_IOCTL_MAGIC: u8 = b'F';
/// `NV_IOCTL_BASE`: the first frontend escape number.
pub const NV_IOCTL_BASE: u8 = 200;
/// `NV_ABSOLUTE_MAX_IOCTL_SIZE`: the largest argument `NV_ESC_IOCTL_XFER_CMD` may carry.
pub const NV_ABSOLUTE_MAX_IOCTL_SIZE: u32 = 16384;
/// `RMAPI_PARAM_COPY_MAX_PARAMS_SIZE`: the largest embedded RM_CONTROL / RM_ALLOC param buffer.
pub const RMAPI_PARAM_COPY_MAX_PARAMS_SIZE: u32 = 1 << 20;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_READ_WRITE: u32 = 3;

/// The largest size the 14-bit `_IOC_SIZE` field can hold.
pub const IOC_SIZE_MAX: u32 = (1 << IOC_SIZEBITS) - 1;

/// A decoded ioctl request number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoctlRequest {
    /// `_IOC_NR`: the escape number.
    pub nr: u8,
    /// `_IOC_TYPE`: `'F'` for NVIDIA requests (not checked by the driver).
    pub ty: u8,
    /// `_IOC_SIZE`: the argument size in bytes.
    pub size: u32,
    /// `_IOC_DIR`: direction bits (not checked by the driver).
    pub dir: u32,
}

impl IoctlRequest {
    /// Decodes a full request number the way `nvidia_ioctl` does.
    pub const fn decode(request: u32) -> Self {
        Self {
            nr: ((request >> IOC_NRSHIFT) & ((1 << IOC_NRBITS) - 1)) as u8,
            ty: ((request >> IOC_TYPESHIFT) & ((1 << IOC_TYPEBITS) - 1)) as u8,
            size: (request >> IOC_SIZESHIFT) & IOC_SIZE_MAX,
            dir: request >> IOC_DIRSHIFT,
        }
    }

    /// `_IOWR('F', nr, size)`; `None` when `size` does not fit the 14-bit size field.
    pub const fn encode(nr: u8, size: u32) -> Option<u32> {
        if size > IOC_SIZE_MAX {
            return None;
        }
        Some(
            (IOC_READ_WRITE << IOC_DIRSHIFT)
                | (size << IOC_SIZESHIFT)
                | ((NV_IOCTL_MAGIC as u32) << IOC_TYPESHIFT)
                | nr as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_request_numbers_round_trip() {
        for (nr, size, full) in [
            (0x2A, 32, 0xC020_462A_u32),
            (0x2B, 48, 0xC030_462B),
            (0x27, 56, 0xC038_4627),
            (200, 72 * 32, 0xC900_46C8),
            (215, 560, 0xC230_46D7),
            (217, 2608, 0xCA30_46D9),
        ] {
            assert_eq!(IoctlRequest::encode(nr, size), Some(full));
            let d = IoctlRequest::decode(full);
            assert_eq!((d.nr, d.size, d.ty, d.dir), (nr, size, b'F', 3));
        }
    }

    #[test]
    fn oversized_request_cannot_be_encoded() {
        assert_eq!(IoctlRequest::encode(42, IOC_SIZE_MAX + 1), None);
        assert!(IoctlRequest::encode(42, IOC_SIZE_MAX).is_some());
    }
}
