//! The device's view of the RM core: the [`EscapeService`] trait.
//!
//! The device decodes the escape queue and the doorbell and hands each call to an
//! `EscapeService`. Today the service is the RM core in the VMM process
//! ([`crate::rm_service::RmService`]); because the device only sees this trait, the core can move
//! into a host daemon later (the window is a memfd the daemon can map) without touching it.

use thiserror::Error;

use crate::window::HostWindow;

pub use rm_core::backend::Gfid;

/// A guest file id, as the service hands it out on open (the guest's "fd").
pub type FileId = i32;

/// Which device node a guest file is opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileNode {
    /// `/dev/nvidiactl`.
    Ctl,
    /// `/dev/nvidiaN` with minor N.
    Device(u32),
}

/// Why the service refused an open or close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum FileError {
    /// No such vGPU in the service.
    #[error("no vGPU with this GFID")]
    NoVgpu,
    /// The file id is not open.
    #[error("file is not open")]
    BadFile,
    /// The guest holds too many files.
    #[error("too many open files")]
    TooManyFiles,
}

impl FileError {
    /// The negative errno a guest sees for it.
    pub fn ret(self) -> i32 {
        use crate::protocol::errno;
        match self {
            FileError::NoVgpu | FileError::BadFile => -errno::EBADF,
            FileError::TooManyFiles => -errno::ENOMEM,
        }
    }
}

/// A doorbell the service refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DoorbellError {
    /// The token is not a live channel of this GFID.
    #[error("work-submit token {0:#x} is not a channel of this vGPU")]
    NotOwned(u32),
    /// The backend refused it (status code as RM reports it).
    #[error("backend refused the doorbell with status {0:#x}")]
    Backend(u32),
}

/// The RM core as the device reaches it. Every call names the vGPU's GFID; the service keeps
/// each GFID's namespace apart and validates everything the guest sent.
pub trait EscapeService: Send {
    /// Opens a guest file on `node`.
    fn open(&mut self, gfid: Gfid, node: FileNode) -> Result<FileId, FileError>;

    /// Closes a guest file, freeing the RM clients allocated through it.
    fn close(&mut self, gfid: Gfid, file: FileId) -> Result<(), FileError>;

    /// Runs `ioctl(file, request, arg)`: `arg` and every pointer inside the argument are window
    /// offsets, read and written only through `window`'s bounds-checked accessors. Returns 0 or
    /// `-errno`; RM errors go into the argument's `status` field with 0 returned.
    fn ioctl(
        &mut self,
        gfid: Gfid,
        file: FileId,
        request: u32,
        arg: u64,
        window: &HostWindow,
    ) -> i32;

    /// Copies `buf.len()` bytes at `offset` of the mapping `RM_MAP_MEMORY` attached to `file`.
    /// Returns 0 or `-errno`.
    fn read_mapping(&mut self, gfid: Gfid, file: FileId, offset: u64, buf: &mut [u8]) -> i32;

    /// Copies `data` to `offset` of the mapping attached to `file`. Returns 0 or `-errno`.
    fn write_mapping(&mut self, gfid: Gfid, file: FileId, offset: u64, data: &[u8]) -> i32;

    /// A usermode doorbell write (`NVC361_NOTIFY_CHANNEL_PENDING`): the channel with work-submit
    /// `token` has a new GP_PUT. Refused unless the token is a channel of `gfid`.
    fn doorbell(&mut self, gfid: Gfid, token: u32) -> Result<(), DoorbellError>;

    /// The vGPU goes away: free everything `gfid` holds.
    fn teardown(&mut self, gfid: Gfid);
}
