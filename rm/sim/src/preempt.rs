//! The runlist preempt register (`NV_RUNLIST_PREEMPT`, runlist-relative 0x098) and the
//! preempt-complete interrupt bits of `NV_RUNLIST_INTR_0`.
//!
//! Software writes `TYPE` (TSG or RUNLIST) and, for a TSG, its `ID`; the matching PENDING bit
//! reads as 1 until the running work reaches a preemption point and its context is saved,
//! then clears and the COMPLETE interrupt bit is raised.

/// `NV_RUNLIST_PREEMPT` offset within a runlist's register block.
pub const RUNLIST_PREEMPT_OFFSET: u32 = 0x098;
/// `ID` field (11:0).
pub const ID_MASK: u32 = 0xFFF;
/// `TSG_PREEMPT_PENDING` (20:20, read-only).
pub const TSG_PREEMPT_PENDING: u32 = 1 << 20;
/// `RUNLIST_PREEMPT_PENDING` (21:21, read-only).
pub const RUNLIST_PREEMPT_PENDING: u32 = 1 << 21;
/// `TYPE` field shift (25:24).
pub const TYPE_SHIFT: u32 = 24;
/// `TYPE` value: preempt the whole runlist.
pub const TYPE_RUNLIST: u32 = 0;
/// `TYPE` value: preempt one TSG.
pub const TYPE_TSG: u32 = 1;
/// `NV_RUNLIST_INTR_0_TSG_PREEMPT_COMPLETE` (bit 8).
pub const INTR_TSG_PREEMPT_COMPLETE: u32 = 1 << 8;
/// `NV_RUNLIST_INTR_0_RUNLIST_PREEMPT_COMPLETE` (bit 9).
pub const INTR_RUNLIST_PREEMPT_COMPLETE: u32 = 1 << 9;
/// `NV_RUNLIST_INTR_0_BAD_TSG` (bit 12): a submitted runlist was malformed.
pub const INTR_BAD_TSG: u32 = 1 << 12;

/// What a preempt register write asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreemptRequest {
    /// Preempt whatever runs on the runlist.
    Runlist,
    /// Preempt TSG `id` if it is loaded.
    Tsg(u32),
}

impl PreemptRequest {
    /// Decodes a register write; `None` for a reserved TYPE.
    pub fn decode(value: u32) -> Option<Self> {
        match (value >> TYPE_SHIFT) & 3 {
            TYPE_RUNLIST => Some(Self::Runlist),
            TYPE_TSG => Some(Self::Tsg(value & ID_MASK)),
            _ => None,
        }
    }

    /// The register value that requests this preemption.
    pub fn encode(self) -> u32 {
        match self {
            Self::Runlist => TYPE_RUNLIST << TYPE_SHIFT,
            Self::Tsg(id) => TYPE_TSG << TYPE_SHIFT | (id & ID_MASK),
        }
    }

    /// The PENDING bit this request sets.
    pub fn pending_bit(self) -> u32 {
        match self {
            Self::Runlist => RUNLIST_PREEMPT_PENDING,
            Self::Tsg(_) => TSG_PREEMPT_PENDING,
        }
    }

    /// The interrupt bit raised when it completes.
    pub fn complete_bit(self) -> u32 {
        match self {
            Self::Runlist => INTR_RUNLIST_PREEMPT_COMPLETE,
            Self::Tsg(_) => INTR_TSG_PREEMPT_COMPLETE,
        }
    }
}

/// State of one runlist's preempt register.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PreemptRegister {
    last_written: u32,
    pending: Option<PreemptRequest>,
}

impl PreemptRegister {
    /// The register as software reads it: the last written TYPE/ID plus the PENDING bits.
    pub fn read(&self) -> u32 {
        let base = self.last_written & (ID_MASK | 3 << TYPE_SHIFT);
        base | self.pending.map_or(0, PreemptRequest::pending_bit)
    }

    /// The preemption in flight, if any.
    pub fn pending(&self) -> Option<PreemptRequest> {
        self.pending
    }

    /// Latches a software write. Returns the request, or `None` when TYPE is reserved or a
    /// preemption is already pending (the write is dropped, as RM never issues a second
    /// preempt before the first completes).
    pub(crate) fn write(&mut self, value: u32) -> Option<PreemptRequest> {
        if self.pending.is_some() {
            return None;
        }
        let req = PreemptRequest::decode(value)?;
        self.last_written = value;
        self.pending = Some(req);
        Some(req)
    }

    /// Marks the pending preemption complete; returns it.
    pub(crate) fn complete(&mut self) -> Option<PreemptRequest> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_decode_and_pending_bits() {
        assert_eq!(PreemptRequest::Tsg(0x7FF).encode(), 0x0100_07FF);
        assert_eq!(
            PreemptRequest::decode(0x0100_0ABC),
            Some(PreemptRequest::Tsg(0xABC))
        );
        assert_eq!(
            PreemptRequest::decode(0x0000_0123),
            Some(PreemptRequest::Runlist)
        );
        assert_eq!(PreemptRequest::decode(0x0200_0000), None);
        let mut r = PreemptRegister::default();
        assert_eq!(
            r.write(PreemptRequest::Tsg(3).encode()),
            Some(PreemptRequest::Tsg(3))
        );
        assert_eq!(r.read(), 0x0100_0003 | TSG_PREEMPT_PENDING);
        assert_eq!(
            r.write(PreemptRequest::Runlist.encode()),
            None,
            "second write dropped"
        );
        assert_eq!(r.complete(), Some(PreemptRequest::Tsg(3)));
        assert_eq!(
            r.read() & (TSG_PREEMPT_PENDING | RUNLIST_PREEMPT_PENDING),
            0
        );
        r.write(PreemptRequest::Runlist.encode());
        assert_eq!(r.read() & RUNLIST_PREEMPT_PENDING, RUNLIST_PREEMPT_PENDING);
        assert_eq!(r.write(u32::MAX), None);
    }
}
