//! Channel RAM (`NV_CHRAM_CHANNEL(i)`), one 32-bit register per channel of a runlist.
//!
//! Software writes use `WRITE_CONTROL` (bit 0): with 0 the ones in the value set the
//! corresponding writable bits, with 1 they clear them. Status bits (BUSY, ON_PBDMA, ON_ENG,
//! PBDMA_BUSY, ENG_BUSY) are read-only to software and maintained by the sim's hardware.

/// Channels per runlist channel RAM.
pub const CHRAM_CHANNELS: u32 = 2048;

/// `WRITE_CONTROL`: 0 = ones set bits, 1 = ones clear bits.
pub const WRITE_CONTROL: u32 = 1 << 0;
/// The channel may be scheduled.
pub const ENABLE: u32 = 1 << 1;
/// The channel is next to run after a switch.
pub const NEXT: u32 = 1 << 2;
/// The channel's context is loaded somewhere (read-only).
pub const BUSY: u32 = 1 << 3;
/// The PBDMA faulted on this channel.
pub const PBDMA_FAULTED: u32 = 1 << 4;
/// The engine faulted on this channel.
pub const ENG_FAULTED: u32 = 1 << 5;
/// The channel is loaded on its PBDMA (read-only).
pub const ON_PBDMA: u32 = 1 << 6;
/// The channel's TSG is loaded on the engine (read-only).
pub const ON_ENG: u32 = 1 << 7;
/// The channel has work (set by a doorbell, cleared when the PBDMA runs dry).
pub const PENDING: u32 = 1 << 8;
/// Force a context reload on next load.
pub const CTX_RELOAD: u32 = 1 << 9;
/// The PBDMA is processing this channel's methods (read-only).
pub const PBDMA_BUSY: u32 = 1 << 10;
/// The engine is executing work of this channel (read-only).
pub const ENG_BUSY: u32 = 1 << 11;
/// A semaphore acquire of this channel failed and is being retried.
pub const ACQUIRE_FAIL: u32 = 1 << 12;

/// Write value: enable the channel.
pub const ENABLE_CHANNEL: u32 = 0x2;
/// Write value: disable the channel.
pub const DISABLE_CHANNEL: u32 = 0x3;
/// Write value: force a context reload.
pub const FORCE_CTX_RELOAD: u32 = 0x200;
/// Write value: clear PBDMA_FAULTED.
pub const RESET_PBDMA_FAULTED: u32 = 0x11;
/// Write value: clear ENG_FAULTED.
pub const RESET_ENG_FAULTED: u32 = 0x21;
/// Write value: clear every writable bit.
pub const CLEAR_CHANNEL: u32 = 0xFFFF_FFFF;

/// Bits software may set or clear.
pub const SW_WRITABLE: u32 =
    ENABLE | NEXT | PBDMA_FAULTED | ENG_FAULTED | PENDING | CTX_RELOAD | ACQUIRE_FAIL;
/// Bits only the hardware changes.
pub const HW_STATUS: u32 = BUSY | ON_PBDMA | ON_ENG | PBDMA_BUSY | ENG_BUSY;

/// The channel RAM of one runlist.
#[derive(Debug, Clone)]
pub struct ChannelRam {
    regs: Vec<u32>,
}

impl Default for ChannelRam {
    fn default() -> Self {
        Self::new()
    }
}

impl ChannelRam {
    /// A channel RAM with every channel cleared.
    pub fn new() -> Self {
        Self {
            regs: vec![0; CHRAM_CHANNELS as usize],
        }
    }

    /// Reads channel `chid`'s register; `None` past the last channel.
    pub fn read(&self, chid: u32) -> Option<u32> {
        self.regs.get(chid as usize).copied()
    }

    /// A software write with `NV_CHRAM_CHANNEL` semantics; returns false (and changes
    /// nothing) past the last channel.
    pub fn write(&mut self, chid: u32, value: u32) -> bool {
        let Some(r) = self.regs.get_mut(chid as usize) else {
            return false;
        };
        let bits = value & SW_WRITABLE;
        if value & WRITE_CONTROL == 0 {
            *r |= bits;
        } else {
            *r &= !bits;
        }
        true
    }

    /// Hardware-side update: sets or clears `mask` (any bits) of channel `chid`.
    pub(crate) fn hw_set(&mut self, chid: u32, mask: u32, on: bool) {
        if let Some(r) = self.regs.get_mut(chid as usize) {
            if on {
                *r |= mask;
            } else {
                *r &= !mask;
            }
        }
    }

    /// True when `mask` is fully set for `chid`.
    pub fn has(&self, chid: u32, mask: u32) -> bool {
        self.read(chid).is_some_and(|r| r & mask == mask)
    }

    /// Resets a channel's register to 0 (channel freed).
    pub(crate) fn reset(&mut self, chid: u32) {
        if let Some(r) = self.regs.get_mut(chid as usize) {
            *r = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_write_values_have_their_documented_effect() {
        let mut c = ChannelRam::new();
        assert!(c.write(5, ENABLE_CHANNEL));
        assert_eq!(c.read(5), Some(ENABLE));
        c.hw_set(5, PBDMA_FAULTED | ENG_FAULTED | BUSY, true);
        assert!(c.write(5, RESET_PBDMA_FAULTED));
        assert_eq!(c.read(5), Some(ENABLE | ENG_FAULTED | BUSY));
        assert!(c.write(5, RESET_ENG_FAULTED));
        assert_eq!(c.read(5), Some(ENABLE | BUSY));
        assert!(c.write(5, DISABLE_CHANNEL));
        assert_eq!(c.read(5), Some(BUSY));
        assert!(c.write(5, FORCE_CTX_RELOAD));
        assert!(c.has(5, CTX_RELOAD));
    }

    #[test]
    fn status_bits_are_read_only_and_clear_channel_keeps_them() {
        let mut c = ChannelRam::new();
        c.write(1, HW_STATUS);
        assert_eq!(c.read(1), Some(0));
        c.hw_set(1, ON_PBDMA | ON_ENG, true);
        c.write(1, ENABLE | PENDING | NEXT | ACQUIRE_FAIL);
        c.write(1, CLEAR_CHANNEL);
        assert_eq!(c.read(1), Some(ON_PBDMA | ON_ENG));
        c.write(1, WRITE_CONTROL | ON_PBDMA);
        assert_eq!(c.read(1), Some(ON_PBDMA | ON_ENG));
    }

    #[test]
    fn out_of_range_channels_are_refused() {
        let mut c = ChannelRam::new();
        assert!(!c.write(CHRAM_CHANNELS, ENABLE_CHANNEL));
        assert_eq!(c.read(CHRAM_CHANNELS), None);
        assert_eq!(c.read(CHRAM_CHANNELS - 1), Some(0));
        c.hw_set(u32::MAX, ENABLE, true);
    }
}
