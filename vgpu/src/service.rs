//! The device's view of the RM core: the [`EscapeService`] trait.
//!
//! The device decodes the escape queue and the doorbell and hands each call to an
//! `EscapeService`: in `vgpud` that is the RM core (`mdev::rm_service::RmService`), in device
//! tests a fake. The trait speaks the core's vocabulary (GFID, device node, fd, errno).

use thiserror::Error;

use crate::window::HostWindow;

pub use rm_core::backend::Gfid;
pub use rm_core::{Errno, FdId, Node};

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

/// What an ioctl came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoctlOutcome {
    /// Finished: 0 or `-errno`, as [`EscapeService::ioctl`] describes.
    Done(i32),
    /// A wait that is not over (an idle on a GPU that runs on the host's clock): the device
    /// keeps the request and makes the same call again later, serving no further request of
    /// that queue meanwhile, as the guest's calling thread would block in the driver.
    Again,
}

/// The RM core as the device reaches it. Every call names the vGPU's GFID; the service keeps
/// each GFID's namespace apart and validates everything the guest sent.
pub trait EscapeService: Send {
    /// Opens a guest file on `node`.
    fn open(&mut self, gfid: Gfid, node: Node) -> Result<FdId, Errno>;

    /// Closes a guest file, freeing the RM clients allocated through it.
    fn close(&mut self, gfid: Gfid, file: FdId) -> Result<(), Errno>;

    /// Runs `ioctl(file, request, arg)`: `arg` and every pointer inside the argument are window
    /// offsets, read and written only through `window`'s bounds-checked accessors. Returns 0 or
    /// `-errno`; RM errors go into the argument's `status` field with 0 returned. A wait that
    /// would block returns [`IoctlOutcome::Again`] instead of holding the caller.
    fn ioctl(
        &mut self,
        gfid: Gfid,
        file: FdId,
        request: u32,
        arg: u64,
        window: &HostWindow,
    ) -> IoctlOutcome;

    /// Copies `buf.len()` bytes at `offset` of the mapping `RM_MAP_MEMORY` attached to `file`.
    fn read_mapping(
        &mut self,
        gfid: Gfid,
        file: FdId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno>;

    /// Copies `data` to `offset` of the mapping attached to `file`.
    fn write_mapping(
        &mut self,
        gfid: Gfid,
        file: FdId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Errno>;

    /// A usermode doorbell write (`NVC361_NOTIFY_CHANNEL_PENDING`): the channel with work-submit
    /// `token` has a new GP_PUT. Refused unless the token is a channel of `gfid`.
    fn doorbell(&mut self, gfid: Gfid, token: u32) -> Result<(), DoorbellError>;

    /// The vGPU goes away: free everything `gfid` holds.
    fn teardown(&mut self, gfid: Gfid);
}
