//! The doorbell mailbox, driver side (`vgpu/PROTOCOL.md`, "Doorbell mailbox"): while the device
//! polls (it says so in the mailbox's `FLAGS`), a doorbell is a token in the window and a new
//! `HEAD`, with no trapped access; otherwise, or with the ring full, the driver writes the
//! `DOORBELL` register as before.

use std::sync::atomic::{fence, Ordering};
use std::sync::Mutex;

use super::protocol::mailbox;
use super::window::{OutOfWindow, SharedWindow};

/// A mailbox the device accepted, at a fixed window offset.
#[derive(Debug)]
pub struct Mailbox {
    at: u64,
    /// Threads of one process post one at a time (`HEAD` is read, then moved).
    post: Mutex<()>,
}

impl Mailbox {
    /// The mailbox at window offset `at`, zeroed (so the device finds `HEAD` = `TAIL` = 0 when
    /// the driver registers it).
    pub fn create(window: &SharedWindow, at: u64) -> Result<Self, OutOfWindow> {
        window.zero(at, mailbox::SIZE as usize)?;
        Ok(Self::adopt(at))
    }

    /// The mailbox an earlier process of this guest registered at `at`.
    pub fn adopt(at: u64) -> Self {
        Self {
            at,
            post: Mutex::new(()),
        }
    }

    /// Window offset of the mailbox.
    pub fn offset(&self) -> u64 {
        self.at
    }

    /// Posts `token` if the device is polling the mailbox and it has room. Returns whether the
    /// device will see it without a `DOORBELL` write: `false` means the caller writes the
    /// register (also when the device stopped polling while the token was being published: it
    /// may then ring twice, which is harmless).
    pub fn post(&self, window: &SharedWindow, token: u32) -> Result<bool, OutOfWindow> {
        let _one = self.post.lock().unwrap_or_else(|p| p.into_inner());
        if window.load32(self.at + mailbox::FLAGS)? & mailbox::POLLED == 0 {
            return Ok(false);
        }
        let head = window.load32(self.at + mailbox::HEAD)?;
        let tail = window.load32(self.at + mailbox::TAIL)?;
        if head.wrapping_sub(tail) >= mailbox::SLOTS {
            return Ok(false);
        }
        let slot = u64::from(head % mailbox::SLOTS);
        window.store32(self.at + mailbox::TOKENS + 4 * slot, token)?;
        window.store32(self.at + mailbox::HEAD, head.wrapping_add(1))?;
        // Pairs with the device's fence between clearing FLAGS and reading HEAD.
        fence(Ordering::SeqCst);
        Ok(window.load32(self.at + mailbox::FLAGS)? & mailbox::POLLED != 0)
    }
}
