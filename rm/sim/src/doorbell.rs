//! Doorbells: the work-submit token a client writes to tell the host a channel has new
//! GPFIFO entries.
//!
//! The token is `runlist << 16 | chid` (what `NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN`
//! returns); clients write it to `NVC361_NOTIFY_CHANNEL_PENDING` in their usermode page, kernel
//! RM to `NV_VIRTUAL_FUNCTION_DOORBELL`.

/// `NVC361_NOTIFY_CHANNEL_PENDING`: doorbell offset in the `HOPPER_USERMODE_A` page.
pub const NOTIFY_CHANNEL_PENDING: u64 = 0x90;
/// `NV_VIRTUAL_FUNCTION_DOORBELL`: doorbell offset in BAR0's virtual-function space.
pub const VIRTUAL_FUNCTION_DOORBELL: u64 = 0x30090;

/// A work-submit token naming one channel of one runlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WorkSubmitToken(pub u32);

impl WorkSubmitToken {
    /// The token for channel `chid` (< 65536) of `runlist`.
    pub fn new(runlist: u32, chid: u32) -> Self {
        Self(runlist << 16 | (chid & 0xFFFF))
    }

    /// Runlist the token names.
    pub fn runlist(self) -> u32 {
        self.0 >> 16
    }

    /// Channel id the token names.
    pub fn chid(self) -> u32 {
        self.0 & 0xFFFF
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_layout() {
        let t = WorkSubmitToken::new(3, 0x7FF);
        assert_eq!(t.0, 0x0003_07FF);
        assert_eq!((t.runlist(), t.chid()), (3, 0x7FF));
        assert_eq!(WorkSubmitToken(0xFFFF_FFFF).runlist(), 0xFFFF);
    }
}
