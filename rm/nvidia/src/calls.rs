//! RM calls that a host service makes on its own device files: each builds the escape's
//! parameter struct, issues it through [`NvDriver`] and turns "ioctl failed" and "RM said no"
//! into one [`ControlError`]. Used by the VM backend ([`crate::backend`]), whose buffers are all
//! its own (no tenant pointer ever reaches these).

use std::os::fd::RawFd;

use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlRegisterFd;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::{
    Nvos00Parameters, Nvos02Parameters, Nvos02ParametersWithFd, Nvos21Parameters, Nvos33Parameters,
    Nvos33ParametersWithFd, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters,
};
use rm_abi::{Handle, NvStatus};
use zerocopy::IntoBytes;

use super::driver::NvDriver;
pub use super::forward::{control, ControlError};

/// Issues escape `esc` with `arg` as its whole argument; `Err(errno)` if the ioctl failed.
fn issue<D: NvDriver + ?Sized, T: IntoBytes + zerocopy::FromBytes>(
    driver: &D,
    fd: RawFd,
    esc: Escape,
    arg: &mut T,
) -> Result<(), ControlError> {
    let request = IoctlRequest::encode(esc as u8, size_of::<T>() as u32).unwrap_or(0);
    // SAFETY: `arg` is the complete struct of this escape; every pointer inside it was set by
    // the caller to a buffer that outlives the call.
    unsafe { driver.ioctl(fd, u64::from(request), arg.as_mut_bytes().as_mut_ptr()) }
        .map(|_| ())
        .map_err(ControlError::Errno)
}

fn status(s: u32) -> Result<(), ControlError> {
    match NvStatus(s) {
        NvStatus::OK => Ok(()),
        s => Err(ControlError::Status(s)),
    }
}

/// `RM_ALLOC` (NVOS21): allocates `new` (0: the driver picks, for a root client) of `class`
/// under `parent` of `client` with `params`; the handle the driver gave it.
pub fn alloc<D: NvDriver + ?Sized>(
    driver: &D,
    fd: RawFd,
    client: Handle,
    parent: Handle,
    new: Handle,
    class: u32,
    params: &mut [u8],
) -> Result<Handle, ControlError> {
    let mut p = Nvos21Parameters {
        hRoot: client,
        hObjectParent: parent,
        hObjectNew: new,
        hClass: class,
        pAllocParms: if params.is_empty() {
            0
        } else {
            params.as_mut_ptr() as u64
        },
        paramsSize: params.len() as u32,
        status: 0,
    };
    issue(driver, fd, Escape::RM_ALLOC, &mut p)?;
    status(p.status).map(|()| p.hObjectNew)
}

/// `RM_FREE` of `object` of `client` (`object == client` frees the client).
pub fn free<D: NvDriver + ?Sized>(
    driver: &D,
    fd: RawFd,
    client: Handle,
    object: Handle,
) -> Result<(), ControlError> {
    let mut p = Nvos00Parameters {
        hRoot: client,
        hObjectParent: 0,
        hObjectOld: object,
        status: 0,
    };
    issue(driver, fd, Escape::RM_FREE, &mut p)?;
    status(p.status)
}

/// `NVOS02_FLAGS_PHYSICALITY_NONCONTIGUOUS | LOCATION_PCI | COHERENCY_CACHED | MAPPING_NO_MAP`:
/// pages of a process's own memory, with the flags CUDA uses for its host allocations (the
/// H200's driver refuses them without `MAPPING_NO_MAP`: `NV_ERR_INVALID_FLAGS`).
pub const OS_DESCRIPTOR_FLAGS: u32 = 1 << 4 | 1 << 12 | 1 << 30;

/// `RM_ALLOC_MEMORY` of an `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR`: `len` bytes of this process's
/// memory at `address` become memory object `new` under `device`. Issued on a `/dev/nvidiaN`
/// fd registered to the client's ctl fd (the driver's node rule).
///
/// # Safety
/// `address..address + len` must be mapped in this process for as long as the object lives
/// (the driver pins the pages when it allocates the object).
#[allow(clippy::too_many_arguments)]
pub unsafe fn alloc_os_descriptor<D: NvDriver + ?Sized>(
    driver: &D,
    gpu_fd: RawFd,
    client: Handle,
    device: Handle,
    new: Handle,
    class: u32,
    address: *mut u8,
    len: u64,
) -> Result<(), ControlError> {
    let mut p = Nvos02ParametersWithFd {
        params: Nvos02Parameters {
            hRoot: client,
            hObjectParent: device,
            hObjectNew: new,
            hClass: class,
            flags: OS_DESCRIPTOR_FLAGS,
            pMemory: address as u64,
            limit: len.saturating_sub(1),
            ..Default::default()
        },
        fd: -1,
        _pad: 0,
    };
    issue(driver, gpu_fd, Escape::RM_ALLOC_MEMORY, &mut p)?;
    status(p.params.status)
}

/// `REGISTER_FD`: joins the device fd `gpu_fd` to the client context of `ctl_fd`.
pub fn register_fd<D: NvDriver + ?Sized>(
    driver: &D,
    gpu_fd: RawFd,
    ctl_fd: RawFd,
) -> Result<(), ControlError> {
    let mut p = NvIoctlRegisterFd { ctl_fd };
    issue(driver, gpu_fd, Escape::REGISTER_FD, &mut p)
}

/// `RM_MAP_MEMORY` with `map_fd` as the file to `mmap` afterwards (at offset 0, one mapping
/// context per file); `p.pLinearAddress` is the driver's cookie on success.
pub fn map_memory<D: NvDriver + ?Sized>(
    driver: &D,
    ctl_fd: RawFd,
    map_fd: RawFd,
    p: &mut Nvos33Parameters,
) -> Result<(), ControlError> {
    let mut w = Nvos33ParametersWithFd {
        params: *p,
        fd: map_fd,
        _pad: 0,
    };
    issue(driver, ctl_fd, Escape::RM_MAP_MEMORY, &mut w)?;
    *p = w.params;
    status(p.status)
}

/// `RM_UNMAP_MEMORY`.
pub fn unmap_memory<D: NvDriver + ?Sized>(
    driver: &D,
    ctl_fd: RawFd,
    p: &mut Nvos34Parameters,
) -> Result<(), ControlError> {
    issue(driver, ctl_fd, Escape::RM_UNMAP_MEMORY, p)?;
    status(p.status)
}

/// `RM_MAP_MEMORY_DMA`.
pub fn map_memory_dma<D: NvDriver + ?Sized>(
    driver: &D,
    ctl_fd: RawFd,
    p: &mut Nvos46Parameters,
) -> Result<(), ControlError> {
    issue(driver, ctl_fd, Escape::RM_MAP_MEMORY_DMA, p)?;
    status(p.status)
}

/// `RM_UNMAP_MEMORY_DMA`.
pub fn unmap_memory_dma<D: NvDriver + ?Sized>(
    driver: &D,
    ctl_fd: RawFd,
    p: &mut Nvos47Parameters,
) -> Result<(), ControlError> {
    issue(driver, ctl_fd, Escape::RM_UNMAP_MEMORY_DMA, p)?;
    status(p.status)
}

impl ControlError {
    /// What a guest's status field gets for this failure: RM's own status, or for a failed
    /// ioctl the status the driver's frontend reports for it.
    pub fn status(self) -> NvStatus {
        match self {
            ControlError::Status(s) => s,
            ControlError::Errno(libc::ENOMEM) => NvStatus::ERR_NO_MEMORY,
            ControlError::Errno(libc::EFAULT) => NvStatus::ERR_INVALID_ADDRESS,
            ControlError::Errno(libc::EINVAL) => NvStatus::ERR_INVALID_ARGUMENT,
            ControlError::Errno(_) => NvStatus::ERR_OPERATING_SYSTEM,
        }
    }
}
