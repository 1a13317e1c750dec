//! The negative errno values the frontend returns for faults it catches before RM runs.

use thiserror::Error;

/// A frontend failure: the ioctl returns `-errno` and RM never sees the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Errno {
    /// `EINVAL`: bad size, wrong device node, unknown escape, failed version check.
    #[error("EINVAL")]
    Inval,
    /// `EFAULT`: a guest address could not be read or written.
    #[error("EFAULT")]
    Fault,
    /// `EBADF`: the guest fd is not open.
    #[error("EBADF")]
    BadFd,
    /// `ENOMEM`: out of host memory.
    #[error("ENOMEM")]
    NoMem,
    /// `EBUSY`: a set-once value was set differently before (sys params).
    #[error("EBUSY")]
    Busy,
    /// `EACCES`: the caller lacks the privilege (NUMA status needs root; guests never have it).
    #[error("EACCES")]
    Acces,
    /// `ENODEV`: no GPU behind the device minor (what `nvidia_open` answers for it).
    #[error("ENODEV")]
    NoDev,
}

impl Errno {
    /// The Linux errno number.
    pub const fn code(self) -> i32 {
        match self {
            Errno::Inval => 22,
            Errno::Fault => 14,
            Errno::BadFd => 9,
            Errno::NoMem => 12,
            Errno::Busy => 16,
            Errno::Acces => 13,
            Errno::NoDev => 19,
        }
    }

    /// What the ioctl returns: `-errno`.
    pub const fn ret(self) -> i32 {
        -self.code()
    }
}
