//! The one place that issues ioctls on the host driver's device files.
//!
//! Everything above this works on byte buffers the forwarder owns; [`NvDriver::ioctl`] hands such
//! a buffer to the kernel. [`SyscallDriver`] uses the raw `ioctl` system call rather than libc's
//! `ioctl` symbol, so that it still reaches the kernel when this code runs inside an `LD_PRELOAD`
//! interposer that defines `ioctl` itself. Tests replace it with a scripted driver.

use std::os::fd::RawFd;

/// Issues an ioctl on a host NVIDIA device file.
pub trait NvDriver: Send + Sync {
    /// `ioctl(fd, request, arg)`: `Ok(return value)` or `Err(errno)`.
    ///
    /// # Safety
    /// `arg` must point to a buffer of at least `_IOC_SIZE(request)` bytes (for the XFER escape:
    /// an `nv_ioctl_xfer_t` whose `ptr` points to `size` bytes) that stays valid for the call,
    /// and every pointer field inside it must be valid for what the driver does with it.
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: *mut u8) -> Result<i32, i32>;
}

/// The real driver, through the `ioctl` system call.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyscallDriver;

impl NvDriver for SyscallDriver {
    unsafe fn ioctl(&self, fd: RawFd, request: u64, arg: *mut u8) -> Result<i32, i32> {
        // The raw system call, not libc's `ioctl`: inside `librmshim.so` that symbol is the
        // interposer itself.
        // SAFETY: forwarded from the caller's contract; `syscall` reads three integer args.
        let r = unsafe { libc::syscall(libc::SYS_ioctl, fd, request, arg) };
        if r < 0 {
            Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO))
        } else {
            Ok(r as i32)
        }
    }
}

/// `EFAULT`.
pub const EFAULT: i32 = 14;
/// `EINVAL`.
pub const EINVAL: i32 = 22;
/// `EBADF`.
pub const EBADF: i32 = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_driver_reports_errno() {
        let mut buf = [0u8; 32];
        // SAFETY: fd -1 is never valid; the kernel returns EBADF without touching the buffer.
        let r = unsafe { SyscallDriver.ioctl(-1, 0xC020_462A, buf.as_mut_ptr()) };
        assert_eq!(r, Err(EBADF));
    }
}
