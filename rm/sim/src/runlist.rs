//! Runlists as RM builds them and the Ampere/Hopper host reads them (`NV_RAMRL_ENTRY_*`).
//!
//! A runlist is an array of 16-byte entries: a TSG header (timeslice scale/timeout, GFID,
//! TSG length, TSGID) followed by that many channel entries (CHID, USERD and instance
//! pointers). There is no interleave field in hardware: RM implements interleave levels by
//! repeating TSGs in the runlist, following the policy documented in `ctrla06c.h`; see
//! [`build_runlist`].

use thiserror::Error;

/// Size of one runlist entry in bytes.
pub const RUNLIST_ENTRY_SIZE: usize = 16;
/// Most channels one TSG header may announce (`NV_RAMRL_ENTRY_TSG_LENGTH` 1..128).
pub const TSG_MAX_LENGTH: u32 = 128;
/// Largest GFID a runlist header carries here (`VMMU_MAX_GFID` = 64, so 0..=63).
pub const MAX_GFID: u32 = 63;
/// Largest CHID / TSGID (`NV_RAMRL_ENTRY_CHAN_CHID` / `_TSG_TSGID` are 11:0).
pub const MAX_ID: u32 = 0xFFF;

const TYPE_TSG: u32 = 1;
const TSG_GFID_SHIFT: u32 = 4;
const TSG_GFID_MASK: u32 = 0xFF;
const TSG_SCALE_SHIFT: u32 = 16;
const TSG_SCALE_MASK: u32 = 0xF;
const TSG_TIMEOUT_SHIFT: u32 = 24;
const TSG_TIMEOUT_MASK: u32 = 0xFF;
const TSG_LENGTH_MASK: u32 = 0xFF;
const CHAN_RUNQUEUE_SHIFT: u32 = 1;
const CHAN_INST_TARGET_SHIFT: u32 = 4;
const CHAN_USERD_TARGET_SHIFT: u32 = 6;
const CHAN_USERD_PTR_LO_MASK: u32 = 0xFFFF_FF00;
const CHAN_USERD_PTR_HI_MASK: u32 = 0xF_FFFF;
const CHAN_INST_PTR_LO_MASK: u32 = 0xFFFF_F000;

/// Memory target of an instance block or USERD pointer (`NV_RAMRL_ENTRY_CHAN_*_TARGET`).
pub const TARGET_VID_MEM: u32 = 0;

/// One raw 16-byte runlist entry, as four little-endian dwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunlistEntry(pub [u32; 4]);

/// A TSG timeslice in hardware form: `(timeout << scale) * 1024 ns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeslice {
    /// `NV_RAMRL_ENTRY_TSG_TIMESLICE_SCALE`, 4 bits.
    pub scale: u8,
    /// `NV_RAMRL_ENTRY_TSG_TIMESLICE_TIMEOUT`, 8 bits.
    pub timeout: u8,
}

impl Timeslice {
    /// RM's default TSG timeslice: TIMEOUT_128 << SCALE_3 (1024 "µs", `kfifoChannelGroupGetDefaultTimeslice_GV100`).
    pub const DEFAULT: Timeslice = Timeslice {
        scale: 3,
        timeout: 128,
    };
    /// Longest encodable timeslice: 255 << 15 units (about 8.56 s).
    pub const MAX: Timeslice = Timeslice {
        scale: 15,
        timeout: 255,
    };

    /// The hardware value for a timeslice of `us` microseconds, rounded down to a valid value
    /// (as `SET_TIMESLICE` documents), at least one 1024 ns unit and at most [`Self::MAX`].
    pub fn from_us(us: u64) -> Self {
        let units = us.saturating_mul(1000) / 1024;
        let mut units = units.max(1);
        let mut scale = 0u8;
        while units > u64::from(TSG_TIMEOUT_MASK) {
            if scale == 15 {
                return Self::MAX;
            }
            units >>= 1;
            scale += 1;
        }
        Timeslice {
            scale,
            timeout: units as u8,
        }
    }

    /// Length in ns; a timeout of 0 is treated as one unit, as the hardware does.
    pub fn as_ns(self) -> u64 {
        (u64::from(self.timeout.max(1)) << self.scale) * 1024
    }
}

/// TSG interleave level (`NVA06C_CTRL_INTERLEAVE_LEVEL_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum InterleaveLevel {
    /// Appears once per runlist pass.
    Low = 0,
    /// RM's default for new TSGs.
    Medium = 1,
    /// Appears most often.
    High = 2,
}

impl InterleaveLevel {
    /// The level for a control's raw value; other values are `NV_ERR_INVALID_ARGUMENT`.
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Low),
            1 => Some(Self::Medium),
            2 => Some(Self::High),
            _ => None,
        }
    }
}

/// A channel entry's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelEntry {
    /// Channel id within the runlist's channel RAM.
    pub chid: u32,
    /// Runqueue (PBDMA) selector, 0 or 1.
    pub runqueue: u32,
    /// USERD address (256-byte aligned).
    pub userd_ptr: u64,
    /// Instance block address (4 KiB aligned).
    pub inst_ptr: u64,
}

/// A TSG as RM describes it when building a runlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsgDescriptor {
    /// TSG id.
    pub tsgid: u32,
    /// GFID of the owning function (0 = PF).
    pub gfid: u32,
    /// Timeslice written into the header.
    pub timeslice: Timeslice,
    /// Interleave level (decides repetition).
    pub interleave: InterleaveLevel,
    /// Channel entries following the header.
    pub channels: Vec<ChannelEntry>,
}

/// A decoded TSG header plus its channels: one scheduling slot of the hardware walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunlistSlot {
    /// TSG id.
    pub tsgid: u32,
    /// GFID from the header.
    pub gfid: u32,
    /// Timeslice from the header.
    pub timeslice: Timeslice,
    /// Channel ids in entry order.
    pub chids: Vec<u32>,
}

/// Why a runlist (or a descriptor for one) is malformed (`NV_RUNLIST_INTR_0_BAD_TSG` and the
/// builder's own checks).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RunlistError {
    /// A TSG header with length 0 or above 128.
    #[error("bad TSG {tsgid}: length {length}")]
    BadTsgLength {
        /// TSG id.
        tsgid: u32,
        /// Announced length.
        length: u32,
    },
    /// The runlist ends before the TSG's channel entries do.
    #[error("bad TSG {tsgid}: short by {missing} channel entries")]
    ShortTsg {
        /// TSG id.
        tsgid: u32,
        /// Entries missing.
        missing: u32,
    },
    /// A channel entry outside any TSG, or a TSG header where a channel entry was due.
    #[error("entry {index}: channel entry outside a TSG")]
    ChannelOutsideTsg {
        /// Entry index.
        index: usize,
    },
    /// A field too wide for its bits.
    #[error("field {field} value {value:#x} does not fit")]
    FieldTooWide {
        /// Field name.
        field: &'static str,
        /// Value given.
        value: u64,
    },
}

impl RunlistEntry {
    /// Encodes a TSG header.
    pub fn tsg_header(
        tsgid: u32,
        gfid: u32,
        timeslice: Timeslice,
        length: u32,
    ) -> Result<Self, RunlistError> {
        if gfid > MAX_GFID {
            return Err(RunlistError::FieldTooWide {
                field: "gfid",
                value: gfid.into(),
            });
        }
        if tsgid > MAX_ID {
            return Err(RunlistError::FieldTooWide {
                field: "tsgid",
                value: tsgid.into(),
            });
        }
        if length == 0 || length > TSG_MAX_LENGTH {
            return Err(RunlistError::BadTsgLength { tsgid, length });
        }
        let scale = u32::from(timeslice.scale);
        if scale > TSG_SCALE_MASK {
            return Err(RunlistError::FieldTooWide {
                field: "timeslice scale",
                value: scale.into(),
            });
        }
        let dw0 = TYPE_TSG
            | (gfid & TSG_GFID_MASK) << TSG_GFID_SHIFT
            | scale << TSG_SCALE_SHIFT
            | u32::from(timeslice.timeout) << TSG_TIMEOUT_SHIFT;
        Ok(Self([dw0, length & TSG_LENGTH_MASK, tsgid, 0]))
    }

    /// Encodes a channel entry (USERD and instance block in video memory).
    pub fn channel(ch: &ChannelEntry) -> Result<Self, RunlistError> {
        if ch.chid > MAX_ID {
            return Err(RunlistError::FieldTooWide {
                field: "chid",
                value: ch.chid.into(),
            });
        }
        if ch.userd_ptr & 0xFF != 0 || ch.userd_ptr >> 52 != 0 {
            return Err(RunlistError::FieldTooWide {
                field: "userd_ptr",
                value: ch.userd_ptr,
            });
        }
        if ch.inst_ptr & 0xFFF != 0 || ch.inst_ptr >> 52 != 0 || ch.runqueue > 1 {
            return Err(RunlistError::FieldTooWide {
                field: "inst_ptr/runqueue",
                value: ch.inst_ptr,
            });
        }
        let dw0 = (ch.runqueue << CHAN_RUNQUEUE_SHIFT)
            | TARGET_VID_MEM << CHAN_INST_TARGET_SHIFT
            | TARGET_VID_MEM << CHAN_USERD_TARGET_SHIFT
            | (ch.userd_ptr as u32 & CHAN_USERD_PTR_LO_MASK);
        let dw1 = (ch.userd_ptr >> 32) as u32 & CHAN_USERD_PTR_HI_MASK;
        let dw2 = ch.chid | (ch.inst_ptr as u32 & CHAN_INST_PTR_LO_MASK);
        let dw3 = (ch.inst_ptr >> 32) as u32;
        Ok(Self([dw0, dw1, dw2, dw3]))
    }

    /// True for a TSG header (`NV_RAMRL_ENTRY_TYPE` bit 0).
    pub fn is_tsg(&self) -> bool {
        self.0[0] & 1 == TYPE_TSG
    }

    /// The entry as 16 little-endian bytes.
    pub fn to_bytes(&self) -> [u8; RUNLIST_ENTRY_SIZE] {
        let mut b = [0u8; RUNLIST_ENTRY_SIZE];
        for (i, dw) in self.0.iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&dw.to_le_bytes());
        }
        b
    }
}

/// Orders TSGs as RM's interleaved runlist policy does, returning indices into `tsgs`:
/// with L LOW and M MEDIUM TSGs, each LOW appears once, each MEDIUM L times (once if L = 0)
/// and each HIGH (M + 1)·L times (M times if L = 0 and M > 0, else once).
///
/// Shape: for every LOW TSG, `[all HIGH, then for every MEDIUM: that MEDIUM, all HIGH], LOW`;
/// with no LOW, `[all HIGH, MEDIUM]` for every MEDIUM; with neither, all HIGH once.
pub fn interleave_order(levels: &[InterleaveLevel]) -> Vec<usize> {
    let of = |lvl| -> Vec<usize> { (0..levels.len()).filter(|&i| levels[i] == lvl).collect() };
    let (low, med, high) = (
        of(InterleaveLevel::Low),
        of(InterleaveLevel::Medium),
        of(InterleaveLevel::High),
    );
    let mut out = Vec::new();
    if !low.is_empty() {
        for &l in &low {
            out.extend(&high);
            for &m in &med {
                out.push(m);
                out.extend(&high);
            }
            out.push(l);
        }
    } else if !med.is_empty() {
        for &m in &med {
            out.extend(&high);
            out.push(m);
        }
    } else {
        out.extend(&high);
    }
    out
}

/// Builds the runlist RM would submit for `tsgs`: TSGs repeated by interleave level
/// ([`interleave_order`]), each as a header plus its channel entries. TSGs without channels
/// are left out (a zero-length TSG is a hardware error).
pub fn build_runlist(tsgs: &[TsgDescriptor]) -> Result<Vec<RunlistEntry>, RunlistError> {
    let present: Vec<&TsgDescriptor> = tsgs.iter().filter(|t| !t.channels.is_empty()).collect();
    let levels: Vec<InterleaveLevel> = present.iter().map(|t| t.interleave).collect();
    let mut out = Vec::new();
    for i in interleave_order(&levels) {
        let t = present[i];
        let len = u32::try_from(t.channels.len()).unwrap_or(u32::MAX);
        out.push(RunlistEntry::tsg_header(t.tsgid, t.gfid, t.timeslice, len)?);
        for ch in &t.channels {
            out.push(RunlistEntry::channel(ch)?);
        }
    }
    Ok(out)
}

/// Decodes a submitted runlist into scheduling slots, checking it as the hardware does
/// (every channel entry inside a TSG, TSG lengths 1..=128 and complete).
pub fn decode_runlist(entries: &[RunlistEntry]) -> Result<Vec<RunlistSlot>, RunlistError> {
    let mut slots = Vec::new();
    let mut i = 0usize;
    while i < entries.len() {
        let e = entries[i];
        if !e.is_tsg() {
            return Err(RunlistError::ChannelOutsideTsg { index: i });
        }
        let tsgid = e.0[2] & MAX_ID;
        let length = e.0[1] & TSG_LENGTH_MASK;
        if length == 0 || length > TSG_MAX_LENGTH {
            return Err(RunlistError::BadTsgLength { tsgid, length });
        }
        let available = entries.len() - i - 1;
        if (length as usize) > available {
            return Err(RunlistError::ShortTsg {
                tsgid,
                missing: length - available as u32,
            });
        }
        let mut chids = Vec::with_capacity(length as usize);
        for k in 0..length as usize {
            let c = entries[i + 1 + k];
            if c.is_tsg() {
                return Err(RunlistError::ChannelOutsideTsg { index: i + 1 + k });
            }
            chids.push(c.0[2] & MAX_ID);
        }
        slots.push(RunlistSlot {
            tsgid,
            gfid: (e.0[0] >> TSG_GFID_SHIFT) & TSG_GFID_MASK,
            timeslice: Timeslice {
                scale: ((e.0[0] >> TSG_SCALE_SHIFT) & TSG_SCALE_MASK) as u8,
                timeout: ((e.0[0] >> TSG_TIMEOUT_SHIFT) & TSG_TIMEOUT_MASK) as u8,
            },
            chids,
        });
        i += 1 + length as usize;
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use InterleaveLevel::*;

    #[test]
    fn timeslice_encoding() {
        assert_eq!(Timeslice::DEFAULT.as_ns(), 1024 * 1024);
        // 1000 µs = 976 units of 1024 ns -> 244 << 2.
        let t = Timeslice::from_us(1000);
        assert_eq!((t.timeout, t.scale), (244, 2));
        assert_eq!(t.as_ns(), 976 * 1024);
        assert_eq!(Timeslice::from_us(0).as_ns(), 1024);
        assert_eq!(Timeslice::from_us(u64::MAX), Timeslice::MAX);
        assert_eq!(Timeslice::MAX.as_ns(), (255u64 << 15) * 1024);
        assert_eq!(
            Timeslice {
                scale: 0,
                timeout: 0
            }
            .as_ns(),
            1024
        );
        for us in [1u64, 100, 255, 256, 3000, 50_000, 8_000_000] {
            let t = Timeslice::from_us(us);
            assert!(t.as_ns() <= us.max(2) * 1000, "{us}: rounds down");
            assert!(t.as_ns() * 101 / 100 + 2048 >= us * 1000, "{us}: within 1%");
        }
    }

    #[test]
    fn header_and_channel_fields_round_trip() {
        let ts = Timeslice {
            scale: 3,
            timeout: 128,
        };
        let h = RunlistEntry::tsg_header(0x123, 5, ts, 2).unwrap();
        assert!(h.is_tsg());
        assert_eq!(h.0[0], 1 | 5 << 4 | 3 << 16 | 128 << 24);
        assert_eq!(h.0[1], 2);
        assert_eq!(h.0[2], 0x123);
        let ch = ChannelEntry {
            chid: 7,
            runqueue: 1,
            userd_ptr: 0x12_3456_7800,
            inst_ptr: 0x5_0000_3000,
        };
        let c = RunlistEntry::channel(&ch).unwrap();
        assert!(!c.is_tsg());
        assert_eq!(c.0, [0x3456_7800 | 2, 0x12, 0x3007, 0x5]);
        assert!(RunlistEntry::tsg_header(1, 64, ts, 1).is_err());
        assert!(RunlistEntry::tsg_header(1, 0, ts, 0).is_err());
        assert!(RunlistEntry::tsg_header(1, 0, ts, 129).is_err());
        assert!(RunlistEntry::channel(&ChannelEntry { chid: 0x1000, ..ch }).is_err());
        assert!(RunlistEntry::channel(&ChannelEntry {
            userd_ptr: 0x80,
            ..ch
        })
        .is_err());
        let slots = decode_runlist(&[h, c, c]).unwrap();
        assert_eq!(
            slots,
            vec![RunlistSlot {
                tsgid: 0x123,
                gfid: 5,
                timeslice: ts,
                chids: vec![7, 7]
            }]
        );
    }

    #[test]
    fn decode_rejects_malformed_runlists() {
        let ts = Timeslice::DEFAULT;
        let h3 = RunlistEntry::tsg_header(1, 0, ts, 3).unwrap();
        let c = RunlistEntry::channel(&ChannelEntry {
            chid: 1,
            runqueue: 0,
            userd_ptr: 0,
            inst_ptr: 0,
        })
        .unwrap();
        assert_eq!(
            decode_runlist(&[h3, c]),
            Err(RunlistError::ShortTsg {
                tsgid: 1,
                missing: 2
            })
        );
        assert_eq!(
            decode_runlist(&[c]),
            Err(RunlistError::ChannelOutsideTsg { index: 0 })
        );
        let zero = RunlistEntry([1, 0, 4, 0]);
        assert_eq!(
            decode_runlist(&[zero]),
            Err(RunlistError::BadTsgLength {
                tsgid: 4,
                length: 0
            })
        );
        let h1 = RunlistEntry::tsg_header(2, 0, ts, 1).unwrap();
        assert_eq!(
            decode_runlist(&[h3, h1, c, c]),
            Err(RunlistError::ChannelOutsideTsg { index: 1 })
        );
        assert_eq!(decode_runlist(&[]), Ok(vec![]));
    }

    fn counts(levels: &[InterleaveLevel]) -> Vec<usize> {
        let order = interleave_order(levels);
        (0..levels.len())
            .map(|i| order.iter().filter(|&&j| j == i).count())
            .collect()
    }

    /// The documented formula, written independently of the builder.
    fn expected(levels: &[InterleaveLevel]) -> Vec<usize> {
        let l = levels.iter().filter(|&&x| x == Low).count();
        let m = levels.iter().filter(|&&x| x == Medium).count();
        levels
            .iter()
            .map(|lvl| match lvl {
                Low => 1,
                Medium => {
                    if l > 0 {
                        l
                    } else {
                        1
                    }
                }
                High => {
                    if l > 0 {
                        (m + 1) * l
                    } else if m > 0 {
                        m
                    } else {
                        1
                    }
                }
            })
            .collect()
    }

    #[test]
    fn interleave_repetition_matches_rm_policy() {
        let cases: Vec<Vec<InterleaveLevel>> = vec![
            vec![],
            vec![Low],
            vec![Medium],
            vec![High],
            vec![Low, Low, Medium],
            vec![High, Medium, Medium],
            vec![High, High, Low],
            vec![Low, Medium, High],
            vec![Low, Low, Low, Medium, Medium, High, High],
            vec![Medium, Medium, Medium, High],
        ];
        for lv in cases {
            assert_eq!(counts(&lv), expected(&lv), "{lv:?}");
        }
        // Concrete shape: L=2, M=1, H=1 -> H appears (1+1)*2 = 4 times, M twice, each L once.
        let order = interleave_order(&[Low, Low, Medium, High]);
        assert_eq!(order, vec![3, 2, 3, 0, 3, 2, 3, 1]);
    }

    #[test]
    fn build_runlist_repeats_headers_and_skips_empty_tsgs() {
        let ch = |chid| ChannelEntry {
            chid,
            runqueue: 0,
            userd_ptr: 0x100 * u64::from(chid),
            inst_ptr: 0,
        };
        let tsgs = vec![
            TsgDescriptor {
                tsgid: 0,
                gfid: 1,
                timeslice: Timeslice::DEFAULT,
                interleave: Low,
                channels: vec![ch(0)],
            },
            TsgDescriptor {
                tsgid: 1,
                gfid: 2,
                timeslice: Timeslice::from_us(3000),
                interleave: High,
                channels: vec![ch(1), ch(2)],
            },
            TsgDescriptor {
                tsgid: 2,
                gfid: 2,
                timeslice: Timeslice::DEFAULT,
                interleave: High,
                channels: vec![],
            },
        ];
        let rl = build_runlist(&tsgs).unwrap();
        let slots = decode_runlist(&rl).unwrap();
        let ids: Vec<u32> = slots.iter().map(|s| s.tsgid).collect();
        assert_eq!(ids, vec![1, 0]);
        assert_eq!(slots[0].chids, vec![1, 2]);
        assert_eq!(slots[0].gfid, 2);
        assert_eq!(slots[0].timeslice, Timeslice::from_us(3000));
        assert_eq!(rl.len(), 5);
    }
}
