//! Proof that a local process owns the channels it names. `FIFO_DISABLE_CHANNELS` checks nothing
//! about whose channels its list names, and no RM control maps a client handle to a process, so
//! the daemon asks the process for the open `/dev/nvidiactl` file each of its clients was
//! allocated on (passed over the tenant socket) and asks the driver, *through that file*, what
//! the named object is. With the driver's default strict client validation
//! (`RmValidateClientData`), a control naming a client succeeds only on the file the client was
//! allocated on (`rmclientValidate`: the file, not the pid or uid, is compared), and a process can
//! only pass files it holds: the answer proves ownership. [`strict_validation`] checks at start
//! that the driver does validate so.

use crate::driver::NvDriver;
use crate::forward::{control, ControlError};
use crate::sanitize::is_channel_class;
use rm_abi::ctrl::{
    Nv0000CtrlClientGetHandleInfoParams, NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO,
    NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_CLASSID,
};
use rm_abi::{Handle, NvStatus};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use thiserror::Error;
use zerocopy::IntoBytes;

/// `NV_MAJOR_DEVICE_NUMBER`: the NVIDIA character devices' major number.
pub const NV_MAJOR_DEVICE_NUMBER: u32 = 195;
/// `NV_MINOR_DEVICE_NUMBER_CONTROL_DEVICE`: `/dev/nvidiactl`'s minor number.
pub const NV_CONTROL_DEVICE_MINOR: u32 = 255;

/// Why a named channel is not accepted as the peer's.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum OwnershipError {
    /// The file passed for the client is not `/dev/nvidiactl` (another device could answer
    /// the lookup with anything).
    #[error("the file passed for client {0:#x} is not /dev/nvidiactl")]
    NotControlDevice(Handle),
    /// No file was passed for the client.
    #[error("no /dev/nvidiactl was passed for client {0:#x}")]
    NoFile(Handle),
    /// The driver refused the lookup: the client was not allocated on that file, or has no
    /// such object.
    #[error("client {client:#x} has no object {object:#x} on the file passed for it: {why}")]
    NotOnThatFile {
        /// Client named.
        client: Handle,
        /// Object named.
        object: Handle,
        /// What the driver answered.
        why: ControlError,
    },
    /// The object exists but is not a GPFIFO channel.
    #[error("object {object:#x} of client {client:#x} is class {class:#x}, not a channel")]
    NotAChannel {
        /// Client named.
        client: Handle,
        /// Object named.
        object: Handle,
        /// Its class.
        class: u32,
    },
}

/// Whether `fd` is open on the NVIDIA control device (a character device 195:255).
pub fn is_control_device(fd: BorrowedFd<'_>) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid out-pointer for a `struct stat`; the fd is borrowed open.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    st.st_mode & libc::S_IFMT == libc::S_IFCHR
        && libc::major(st.st_rdev) == NV_MAJOR_DEVICE_NUMBER
        && libc::minor(st.st_rdev) == NV_CONTROL_DEVICE_MINOR
}

/// The class of `object` of `client`, asked through `fd` (`CLIENT_GET_HANDLE_INFO`, which the
/// driver never answers from its control cache).
pub fn object_class<D: NvDriver + ?Sized>(
    driver: &D,
    fd: BorrowedFd<'_>,
    client: Handle,
    object: Handle,
) -> Result<u32, ControlError> {
    let mut p = Nv0000CtrlClientGetHandleInfoParams {
        hObject: object,
        index: NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_CLASSID,
        data: 0,
    };
    control(
        driver,
        fd.as_raw_fd(),
        client,
        client,
        NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO,
        p.as_mut_bytes(),
    )?;
    Ok(p.data as u32)
}

/// Checks that `channel` is a channel of `client` and that `client` was allocated on `file`,
/// the file the peer passed for it.
pub fn verify_channel<D: NvDriver + ?Sized>(
    driver: &D,
    file: &impl AsFd,
    client: Handle,
    channel: Handle,
) -> Result<(), OwnershipError> {
    let fd = file.as_fd();
    if !is_control_device(fd) {
        return Err(OwnershipError::NotControlDevice(client));
    }
    let class =
        object_class(driver, fd, client, channel).map_err(|why| OwnershipError::NotOnThatFile {
            client,
            object: channel,
            why,
        })?;
    if !is_channel_class(class) {
        return Err(OwnershipError::NotAChannel {
            client,
            object: channel,
            class,
        });
    }
    Ok(())
}

/// Whether the driver validates client handles against the file (its default): asks about
/// `client`, allocated on another file, through `other`, an open `/dev/nvidiactl` on which it
/// was not. `NV_ERR_INVALID_CLIENT` means it validates; success means it does not, and no
/// ownership check could hold.
pub fn strict_validation<D: NvDriver + ?Sized>(
    driver: &D,
    other: BorrowedFd<'_>,
    client: Handle,
) -> Result<bool, ControlError> {
    match object_class(driver, other, client, client) {
        Ok(_) => Ok(false),
        Err(ControlError::Status(NvStatus::ERR_INVALID_CLIENT)) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Most clients whose files one tenant connection may pass.
pub const MAX_CLIENT_FILES: usize = 64;

/// The files one tenant passed for its RM clients, and the channel check over them.
#[derive(Debug, Default)]
pub struct ClientFiles {
    files: HashMap<Handle, OwnedFd>,
}

/// Why a passed file is not kept.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ClientFileError {
    /// `CLIENT` came without a file.
    #[error("CLIENT {0:#x} came without a file")]
    NoFile(Handle),
    /// Not `/dev/nvidiactl`.
    #[error("the file passed for client {0:#x} is not /dev/nvidiactl")]
    NotControlDevice(Handle),
    /// Over [`MAX_CLIENT_FILES`] clients.
    #[error("more than {MAX_CLIENT_FILES} clients")]
    TooMany,
}

impl ClientFiles {
    /// Keeps `file` as the one `client` was allocated on (replacing an earlier one).
    pub fn add(&mut self, client: Handle, file: Option<OwnedFd>) -> Result<(), ClientFileError> {
        let file = file.ok_or(ClientFileError::NoFile(client))?;
        if !is_control_device(file.as_fd()) {
            return Err(ClientFileError::NotControlDevice(client));
        }
        if self.files.len() >= MAX_CLIENT_FILES && !self.files.contains_key(&client) {
            return Err(ClientFileError::TooMany);
        }
        self.files.insert(client, file);
        Ok(())
    }

    /// Splits `pairs` (client, channel) into those proven the tenant's and the errors of the
    /// others (a client without a file counts as not on it).
    pub fn verify<D: NvDriver + ?Sized>(
        &self,
        driver: &D,
        pairs: &[(Handle, Handle)],
    ) -> (Vec<(Handle, Handle)>, Vec<OwnershipError>) {
        let mut ok = Vec::with_capacity(pairs.len());
        let mut refused = Vec::new();
        for &(client, channel) in pairs {
            let checked = match self.files.get(&client) {
                Some(file) => verify_channel(driver, file, client, channel),
                None => Err(OwnershipError::NoFile(client)),
            };
            match checked {
                Ok(()) => ok.push((client, channel)),
                Err(e) => refused.push(e),
            }
        }
        (ok, refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_control_device_is_accepted_as_a_client_file() {
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(!is_control_device(file.as_fd()));
        let null = std::fs::File::open("/dev/null").unwrap();
        assert!(!is_control_device(null.as_fd()), "a character device, 1:3");
        assert_eq!(
            verify_channel(&crate::SyscallDriver, &null, 0xc1d0_0001, 0x5c00_0001),
            Err(OwnershipError::NotControlDevice(0xc1d0_0001))
        );
    }
}
