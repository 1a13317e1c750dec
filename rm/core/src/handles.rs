//! Client handle translation between a guest's view and the host's.
//!
//! Client handles are global in RM, so each GFID gets its own host range, the one RM itself uses
//! for VF clients (`RS_CLIENT_VF_HANDLE_BASE + (gfid - 1) * 0x100000`). The guest sees handles in
//! the normal user range (`0xC1D00000 + index`), exactly as on bare metal, and can name only
//! clients in its own table: there is no guest handle that reaches another GFID's client.

use crate::backend::Gfid;
use rm_abi::Handle;

/// Base of the guest-visible client handles (`RS_CLIENT_HANDLE_BASE`).
pub const GUEST_CLIENT_BASE: Handle = 0xC1D0_0000;
/// Base of VF client handles on the host (`RS_CLIENT_VF_HANDLE_BASE`).
pub const VF_CLIENT_BASE: Handle = 0xE000_0000;
/// Size of each range (`RS_CLIENT_HANDLE_BUCKET`-sized index space).
pub const CLIENT_RANGE: u32 = 0x10_0000;
/// Highest GFID (`VMMU_MAX_GFID - 1`).
pub const MAX_GFID: Gfid = 63;

/// The index bits of a client handle.
pub const fn client_index(h: Handle) -> u32 {
    h & (CLIENT_RANGE - 1)
}

/// The guest-visible handle of client `index`.
pub const fn guest_client_handle(index: u32) -> Handle {
    GUEST_CLIENT_BASE | (index & (CLIENT_RANGE - 1))
}

/// The host handle of client `index` of `gfid` (1..=MAX_GFID).
pub const fn host_client_handle(gfid: Gfid, index: u32) -> Handle {
    VF_CLIENT_BASE + (gfid - 1) * CLIENT_RANGE + (index & (CLIENT_RANGE - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gfid_ranges_do_not_overlap() {
        assert_eq!(host_client_handle(1, 0x18), 0xE000_0018);
        assert_eq!(host_client_handle(2, 0x18), 0xE010_0018);
        assert_eq!(host_client_handle(MAX_GFID, CLIENT_RANGE - 1), 0xE3EF_FFFF);
        assert_ne!(
            host_client_handle(1, CLIENT_RANGE - 1),
            host_client_handle(2, 0)
        );
        assert_eq!(guest_client_handle(client_index(0xC1D0_0018)), 0xC1D0_0018);
    }
}
