//! The BAR0 register file as a declarative table.
//!
//! Each register is one [`RegisterSpec`] (offset, name, access, reset value, writable mask,
//! handler). Access rules are applied centrally in [`RegisterFile::write`]: read-only registers
//! refuse writes, RW registers store `value & mask`, W1C registers clear the bits written as 1,
//! write-only registers hand the value to their handler. The device acts on the returned
//! [`WriteEffect`]; the register file itself never calls out.

use crate::protocol::{self, error, intr, reg};
use crate::stats::{Counter, Stats};

/// How the guest may access a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read-only; writes are refused.
    Ro,
    /// Read-write; writes store `value & mask`.
    Rw,
    /// Write 1 to clear; reads return the pending bits.
    W1c,
    /// Write-only; reads return 0.
    Wo,
}

/// Which half of a 64-bit value a register shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Half {
    /// Bits 31:0.
    Lo,
    /// Bits 63:32.
    Hi,
}

/// Where a register's value comes from, or where its writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A constant: the reset value.
    Const,
    /// Stored in the register file.
    Storage,
    /// The vGPU's GFID.
    Gfid,
    /// The window size.
    WindowSize(Half),
    /// A [`Stats`] counter.
    Counter(Counter, Half),
    /// The usermode doorbell: writes become [`WriteEffect::Doorbell`].
    Doorbell,
}

/// One register of the table.
#[derive(Debug, Clone, Copy)]
pub struct RegisterSpec {
    /// Byte offset in BAR0 (4-byte aligned).
    pub offset: u32,
    /// Name, as in `PROTOCOL.md`.
    pub name: &'static str,
    /// Access rule.
    pub access: Access,
    /// Value after reset.
    pub reset: u32,
    /// Bits a write may change (RW) or clear (W1C).
    pub mask: u32,
    /// Value source or write target.
    pub handler: Handler,
}

const fn spec(
    offset: u32,
    name: &'static str,
    access: Access,
    reset: u32,
    mask: u32,
    handler: Handler,
) -> RegisterSpec {
    RegisterSpec {
        offset,
        name,
        access,
        reset,
        mask,
        handler,
    }
}

const fn counter(offset: u32, name: &'static str, c: Counter, half: Half) -> RegisterSpec {
    spec(offset, name, Access::Ro, 0, 0, Handler::Counter(c, half))
}

/// The register table, sorted by offset.
pub const REGISTERS: &[RegisterSpec] = &[
    spec(
        reg::MAGIC,
        "MAGIC",
        Access::Ro,
        protocol::MAGIC,
        0,
        Handler::Const,
    ),
    spec(
        reg::VERSION,
        "VERSION",
        Access::Ro,
        protocol::PROTOCOL_VERSION,
        0,
        Handler::Const,
    ),
    spec(reg::GFID, "GFID", Access::Ro, 0, 0, Handler::Gfid),
    spec(
        reg::FEATURES,
        "FEATURES",
        Access::Ro,
        protocol::features::ALL,
        0,
        Handler::Const,
    ),
    spec(
        reg::WINDOW_SIZE_LO,
        "WINDOW_SIZE_LO",
        Access::Ro,
        0,
        0,
        Handler::WindowSize(Half::Lo),
    ),
    spec(
        reg::WINDOW_SIZE_HI,
        "WINDOW_SIZE_HI",
        Access::Ro,
        0,
        0,
        Handler::WindowSize(Half::Hi),
    ),
    spec(
        reg::INTR_STATUS,
        "INTR_STATUS",
        Access::W1c,
        0,
        intr::ALL,
        Handler::Storage,
    ),
    spec(
        reg::INTR_ENABLE,
        "INTR_ENABLE",
        Access::Rw,
        0,
        intr::ALL,
        Handler::Storage,
    ),
    spec(
        reg::ERROR_STATUS,
        "ERROR_STATUS",
        Access::W1c,
        0,
        error::ALL,
        Handler::Storage,
    ),
    spec(
        reg::LAST_REJECTED_TOKEN,
        "LAST_REJECTED_TOKEN",
        Access::Ro,
        0,
        0,
        Handler::Storage,
    ),
    spec(
        reg::LAST_QUEUE_FAULT,
        "LAST_QUEUE_FAULT",
        Access::Ro,
        0,
        0,
        Handler::Storage,
    ),
    counter(
        reg::DOORBELLS_LO,
        "DOORBELLS_LO",
        Counter::Doorbells,
        Half::Lo,
    ),
    counter(
        reg::DOORBELLS_LO + 4,
        "DOORBELLS_HI",
        Counter::Doorbells,
        Half::Hi,
    ),
    counter(
        reg::DOORBELLS_REJECTED_LO,
        "DOORBELLS_REJECTED_LO",
        Counter::DoorbellsRejected,
        Half::Lo,
    ),
    counter(
        reg::DOORBELLS_REJECTED_LO + 4,
        "DOORBELLS_REJECTED_HI",
        Counter::DoorbellsRejected,
        Half::Hi,
    ),
    counter(
        reg::QUEUE_NOTIFIES_LO,
        "QUEUE_NOTIFIES_LO",
        Counter::QueueNotifies,
        Half::Lo,
    ),
    counter(
        reg::QUEUE_NOTIFIES_LO + 4,
        "QUEUE_NOTIFIES_HI",
        Counter::QueueNotifies,
        Half::Hi,
    ),
    counter(reg::REQUESTS_LO, "REQUESTS_LO", Counter::Requests, Half::Lo),
    counter(
        reg::REQUESTS_LO + 4,
        "REQUESTS_HI",
        Counter::Requests,
        Half::Hi,
    ),
    counter(
        reg::REQUEST_ERRORS_LO,
        "REQUEST_ERRORS_LO",
        Counter::RequestErrors,
        Half::Lo,
    ),
    counter(
        reg::REQUEST_ERRORS_LO + 4,
        "REQUEST_ERRORS_HI",
        Counter::RequestErrors,
        Half::Hi,
    ),
    spec(
        reg::DOORBELL,
        "DOORBELL",
        Access::Wo,
        0,
        u32::MAX,
        Handler::Doorbell,
    ),
    spec(
        reg::DOORBELL_MAILBOX,
        "DOORBELL_MAILBOX",
        Access::Rw,
        0,
        u32::MAX,
        Handler::Storage,
    ),
];

/// What the device must do after a register write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// The value was stored (or bits cleared); re-evaluate the interrupt line.
    Stored,
    /// A doorbell write of this token.
    Doorbell(u32),
    /// The write was refused (read-only or unmapped register).
    Refused,
}

/// What handler-backed registers read from.
#[derive(Debug, Clone, Copy)]
pub struct RegisterContext<'a> {
    /// The vGPU's GFID.
    pub gfid: u32,
    /// The window size.
    pub window_size: u64,
    /// The device's counters.
    pub stats: &'a Stats,
}

/// The stored state of the register file.
#[derive(Debug, Clone)]
pub struct RegisterFile {
    values: Vec<u32>,
}

impl Default for RegisterFile {
    fn default() -> Self {
        Self::new()
    }
}

fn half(v: u64, h: Half) -> u32 {
    match h {
        Half::Lo => v as u32,
        Half::Hi => (v >> 32) as u32,
    }
}

impl RegisterFile {
    /// A register file with every register at its reset value.
    pub fn new() -> Self {
        Self {
            values: REGISTERS.iter().map(|r| r.reset).collect(),
        }
    }

    /// Puts every register back to its reset value.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn index(offset: u32) -> Option<usize> {
        REGISTERS.binary_search_by_key(&offset, |r| r.offset).ok()
    }

    /// A guest read of the 32-bit register at `offset` (unmapped offsets read 0).
    pub fn read(&self, offset: u32, ctx: &RegisterContext<'_>) -> u32 {
        let Some(i) = Self::index(offset) else {
            return 0;
        };
        let r = &REGISTERS[i];
        match (r.access, r.handler) {
            (Access::Wo, _) => 0,
            (_, Handler::Const) => r.reset,
            (_, Handler::Storage) => self.values[i],
            (_, Handler::Gfid) => ctx.gfid,
            (_, Handler::WindowSize(h)) => half(ctx.window_size, h),
            (_, Handler::Counter(c, h)) => half(ctx.stats.get(c), h),
            (_, Handler::Doorbell) => 0,
        }
    }

    /// A guest write of the 32-bit register at `offset`.
    pub fn write(&mut self, offset: u32, value: u32) -> WriteEffect {
        let Some(i) = Self::index(offset) else {
            return WriteEffect::Refused;
        };
        let r = &REGISTERS[i];
        match (r.access, r.handler) {
            (Access::Ro, _) => WriteEffect::Refused,
            (Access::Wo, Handler::Doorbell) => WriteEffect::Doorbell(value),
            (Access::Rw, Handler::Storage) => {
                self.values[i] = value & r.mask;
                WriteEffect::Stored
            }
            (Access::W1c, Handler::Storage) => {
                self.values[i] &= !(value & r.mask);
                WriteEffect::Stored
            }
            _ => WriteEffect::Refused,
        }
    }

    /// The stored value of a storage register (device side).
    pub fn value(&self, offset: u32) -> u32 {
        Self::index(offset).map_or(0, |i| self.values[i])
    }

    /// Sets bits of a storage register (device side: raising status bits).
    pub fn set_bits(&mut self, offset: u32, bits: u32) {
        if let Some(i) = Self::index(offset) {
            self.values[i] |= bits;
        }
    }

    /// Clears bits of a storage register (device side).
    pub fn clear_bits(&mut self, offset: u32, bits: u32) {
        if let Some(i) = Self::index(offset) {
            self.values[i] &= !bits;
        }
    }

    /// Stores a value in a storage register (device side).
    pub fn store(&mut self, offset: u32, value: u32) {
        if let Some(i) = Self::index(offset) {
            self.values[i] = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(stats: &Stats) -> RegisterContext<'_> {
        RegisterContext {
            gfid: 7,
            window_size: 0x1_0000_0000,
            stats,
        }
    }

    #[test]
    fn table_is_sorted_unique_aligned_and_inside_the_register_area() {
        for w in REGISTERS.windows(2) {
            assert!(w[0].offset < w[1].offset, "{} / {}", w[0].name, w[1].name);
        }
        for r in REGISTERS {
            assert_eq!(r.offset % 4, 0, "{}", r.name);
            assert!(r.offset < reg::END, "{}", r.name);
        }
    }

    #[test]
    fn identity_registers_read_their_values() {
        let stats = Stats::default();
        let f = RegisterFile::new();
        assert_eq!(f.read(reg::MAGIC, &ctx(&stats)).to_le_bytes(), *b"VGPU");
        assert_eq!(f.read(reg::VERSION, &ctx(&stats)), 0x0001_0002);
        assert_eq!(f.read(reg::GFID, &ctx(&stats)), 7);
        assert_eq!(f.read(reg::WINDOW_SIZE_LO, &ctx(&stats)), 0);
        assert_eq!(f.read(reg::WINDOW_SIZE_HI, &ctx(&stats)), 1);
        assert_eq!(f.read(0x0ffc, &ctx(&stats)), 0);
    }

    #[test]
    fn access_rules_are_enforced() {
        let stats = Stats::default();
        let mut f = RegisterFile::new();
        assert_eq!(f.write(reg::MAGIC, 0), WriteEffect::Refused);
        assert_eq!(f.read(reg::MAGIC, &ctx(&stats)), protocol::MAGIC);
        assert_eq!(f.write(reg::INTR_ENABLE, u32::MAX), WriteEffect::Stored);
        assert_eq!(f.read(reg::INTR_ENABLE, &ctx(&stats)), intr::ALL);
        f.set_bits(reg::INTR_STATUS, intr::QUEUE | intr::ERROR);
        assert_eq!(f.write(reg::INTR_STATUS, intr::QUEUE), WriteEffect::Stored);
        assert_eq!(f.read(reg::INTR_STATUS, &ctx(&stats)), intr::ERROR);
        assert_eq!(
            f.write(reg::DOORBELL, 0x1234),
            WriteEffect::Doorbell(0x1234)
        );
        assert_eq!(f.read(reg::DOORBELL, &ctx(&stats)), 0);
        assert_eq!(f.write(0x0ffc, 1), WriteEffect::Refused);
        assert_eq!(f.write(reg::DOORBELLS_LO, 1), WriteEffect::Refused);
    }

    #[test]
    fn counters_show_both_halves() {
        let stats = Stats::default();
        for _ in 0..3 {
            stats.bump(Counter::QueueNotifies);
        }
        let f = RegisterFile::new();
        assert_eq!(f.read(reg::QUEUE_NOTIFIES_LO, &ctx(&stats)), 3);
        assert_eq!(f.read(reg::QUEUE_NOTIFIES_LO + 4, &ctx(&stats)), 0);
    }
}
