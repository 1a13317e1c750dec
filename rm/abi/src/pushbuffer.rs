//! Formats the PBDMA parses: Hopper GPFIFO entries (`NVC86F_GP_ENTRY*`) and pushbuffer method
//! headers (`NVC86F_DMA_*`). Pure decoding and encoding; no state.

/// Bytes per GPFIFO entry.
pub const GP_ENTRY_SIZE: u64 = 8;
/// Longest pushbuffer segment one entry can name (`GP_ENTRY1_LENGTH` is 21 bits of dwords).
pub const GP_ENTRY_MAX_DWORDS: u32 = (1 << 21) - 1;
/// Subchannels per channel.
pub const SUBCHANNELS: u32 = 8;

/// A decoded GPFIFO entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpEntry {
    /// GPU VA of the pushbuffer segment (dword aligned, 40 bits).
    pub address: u64,
    /// Segment length in dwords; 0 makes this a control entry.
    pub length_dwords: u32,
    /// `FETCH_CONDITIONAL`.
    pub conditional: bool,
    /// `LEVEL_SUBROUTINE`.
    pub subroutine: bool,
    /// `SYNC_WAIT`: wait for prior work before fetching.
    pub sync_wait: bool,
    /// For control entries, `GP_ENTRY1_OPCODE` (NOP, ILLEGAL, GP_CRC, PB_CRC, ...).
    pub opcode: u32,
}

/// `GP_ENTRY1_OPCODE_NOP`.
pub const GP_OPCODE_NOP: u32 = 0;
/// `GP_ENTRY1_OPCODE_ILLEGAL`.
pub const GP_OPCODE_ILLEGAL: u32 = 1;

impl GpEntry {
    /// Decodes a 64-bit entry (dword 0 low, dword 1 high).
    pub fn decode(raw: u64) -> Self {
        let e0 = raw as u32;
        let e1 = (raw >> 32) as u32;
        Self {
            address: u64::from(e0 & !3) | u64::from(e1 & 0xFF) << 32,
            length_dwords: (e1 >> 10) & GP_ENTRY_MAX_DWORDS,
            conditional: e0 & 1 != 0,
            subroutine: (e1 >> 9) & 1 != 0,
            sync_wait: e1 >> 31 != 0,
            opcode: e1 & 0xFF,
        }
    }

    /// Encodes an unconditional main-level entry for `length_dwords` at `address`.
    pub fn encode(address: u64, length_dwords: u32) -> u64 {
        let e0 = (address as u32) & !3;
        let e1 = ((address >> 32) as u32 & 0xFF) | (length_dwords & GP_ENTRY_MAX_DWORDS) << 10;
        u64::from(e0) | u64::from(e1) << 32
    }
}

/// How a method header spreads its data dwords over method addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodMode {
    /// Each dword to the next method.
    Incrementing,
    /// Every dword to the same method.
    NonIncrementing,
    /// First dword to the method, the rest to the next one.
    IncrementOnce,
}

/// A decoded pushbuffer dword in header position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodHeader {
    /// `count` data dwords follow for `method` (byte address) on `subchannel`.
    Methods {
        /// Subchannel 0..8.
        subchannel: u32,
        /// Method byte address.
        method: u32,
        /// Data dwords that follow.
        count: u32,
        /// Address progression.
        mode: MethodMode,
    },
    /// One method with its 13-bit datum inside the header.
    Immediate {
        /// Subchannel 0..8.
        subchannel: u32,
        /// Method byte address.
        method: u32,
        /// The datum.
        data: u32,
    },
    /// Subdevice-mask operations (meaningful only with SLI; no-ops on one GPU).
    SubdeviceMask,
    /// `END_PB_SEGMENT`: ignore the rest of this segment.
    EndSegment,
    /// `SEC_OP_RESERVED6` or an undefined `TERT_OP`: a PBDMA error.
    Invalid(u32),
}

/// `NVC86F_DMA_SEC_OP_*` values (31:29).
pub mod sec_op {
    /// Legacy group 0, see `TERT_OP`.
    pub const GRP0_USE_TERT: u32 = 0;
    /// Incrementing method.
    pub const INC_METHOD: u32 = 1;
    /// Legacy group 2, see `TERT_OP`.
    pub const GRP2_USE_TERT: u32 = 2;
    /// Non-incrementing method.
    pub const NON_INC_METHOD: u32 = 3;
    /// Immediate data.
    pub const IMMD_DATA_METHOD: u32 = 4;
    /// Increment once.
    pub const ONE_INC: u32 = 5;
    /// Reserved (no format).
    pub const RESERVED6: u32 = 6;
    /// End of pushbuffer segment.
    pub const END_PB_SEGMENT: u32 = 7;
}

/// Decodes a method header dword.
pub fn decode_header(h: u32) -> MethodHeader {
    let subchannel = (h >> 13) & 7;
    let method = (h & 0xFFF) << 2;
    let count = (h >> 16) & 0x1FFF;
    let methods = |mode| MethodHeader::Methods {
        subchannel,
        method,
        count,
        mode,
    };
    match h >> 29 {
        sec_op::INC_METHOD => methods(MethodMode::Incrementing),
        sec_op::NON_INC_METHOD => methods(MethodMode::NonIncrementing),
        sec_op::ONE_INC => methods(MethodMode::IncrementOnce),
        sec_op::IMMD_DATA_METHOD => MethodHeader::Immediate {
            subchannel,
            method,
            data: count,
        },
        sec_op::END_PB_SEGMENT => MethodHeader::EndSegment,
        sec_op::GRP0_USE_TERT | sec_op::GRP2_USE_TERT => {
            // Legacy format: METHOD_ADDRESS_OLD 12:2 (bytes), METHOD_COUNT_OLD 28:18, TERT_OP 17:16.
            let tert = (h >> 16) & 3;
            let legacy = |mode| MethodHeader::Methods {
                subchannel,
                method: h & 0x1FFC,
                count: (h >> 18) & 0x7FF,
                mode,
            };
            match (h >> 29, tert) {
                (sec_op::GRP0_USE_TERT, 0) => legacy(MethodMode::Incrementing),
                (sec_op::GRP0_USE_TERT, _) => MethodHeader::SubdeviceMask,
                (_, 0) => legacy(MethodMode::NonIncrementing),
                _ => MethodHeader::Invalid(h),
            }
        }
        _ => MethodHeader::Invalid(h),
    }
}

/// Header for `count` incrementing methods from byte address `method` on `subchannel`.
pub fn inc_header(subchannel: u32, method: u32, count: u32) -> u32 {
    sec_op::INC_METHOD << 29
        | (count & 0x1FFF) << 16
        | (subchannel & 7) << 13
        | (method >> 2) & 0xFFF
}

/// Header for `count` non-incrementing writes of `method`.
pub fn non_inc_header(subchannel: u32, method: u32, count: u32) -> u32 {
    sec_op::NON_INC_METHOD << 29
        | (count & 0x1FFF) << 16
        | (subchannel & 7) << 13
        | (method >> 2) & 0xFFF
}

/// Header carrying a 13-bit immediate datum for `method`.
pub fn immediate_header(subchannel: u32, method: u32, data: u32) -> u32 {
    sec_op::IMMD_DATA_METHOD << 29
        | (data & 0x1FFF) << 16
        | (subchannel & 7) << 13
        | (method >> 2) & 0xFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gp_entry_round_trip_and_fields() {
        let raw = GpEntry::encode(0xAB_1234_5678, 0x1F_FFFF);
        let e = GpEntry::decode(raw);
        assert_eq!(e.address, 0xAB_1234_5678);
        assert_eq!(e.length_dwords, 0x1F_FFFF);
        assert!(!e.conditional && !e.subroutine && !e.sync_wait);
        let e = GpEntry::decode(1 | 1 << 41 | 1 << 63);
        assert!(e.conditional && e.subroutine && e.sync_wait);
        assert_eq!(e.length_dwords, 0);
        // Unaligned low bits are not part of the address.
        assert_eq!(GpEntry::decode(GpEntry::encode(0x1003, 1)).address, 0x1000);
    }

    #[test]
    fn method_headers() {
        assert_eq!(
            decode_header(inc_header(4, 0x300, 3)),
            MethodHeader::Methods {
                subchannel: 4,
                method: 0x300,
                count: 3,
                mode: MethodMode::Incrementing
            }
        );
        assert_eq!(
            decode_header(non_inc_header(1, 0x6c, 8191)),
            MethodHeader::Methods {
                subchannel: 1,
                method: 0x6c,
                count: 8191,
                mode: MethodMode::NonIncrementing
            }
        );
        assert_eq!(
            decode_header(immediate_header(7, 0x3FFC, 0x1ABC)),
            MethodHeader::Immediate {
                subchannel: 7,
                method: 0x3FFC,
                data: 0x1ABC
            }
        );
        assert_eq!(
            decode_header(5 << 29 | 2 << 16 | 0x40 >> 2),
            MethodHeader::Methods {
                subchannel: 0,
                method: 0x40,
                count: 2,
                mode: MethodMode::IncrementOnce
            }
        );
        assert_eq!(decode_header(7 << 29), MethodHeader::EndSegment);
        assert_eq!(
            decode_header(6 << 29 | 5),
            MethodHeader::Invalid(6 << 29 | 5)
        );
        // Legacy incrementing: count 28:18, address 12:2.
        assert_eq!(
            decode_header(2 << 18 | 0x5C),
            MethodHeader::Methods {
                subchannel: 0,
                method: 0x5C,
                count: 2,
                mode: MethodMode::Incrementing
            }
        );
        assert_eq!(decode_header(1 << 16), MethodHeader::SubdeviceMask);
        assert_eq!(
            decode_header(2 << 29 | 1 << 18 | 0x10),
            MethodHeader::Methods {
                subchannel: 0,
                method: 0x10,
                count: 1,
                mode: MethodMode::NonIncrementing
            }
        );
        assert_eq!(
            decode_header(2 << 29 | 1 << 16),
            MethodHeader::Invalid(2 << 29 | 1 << 16)
        );
        // The NOP dword (0) is a zero-count legacy incrementing header.
        assert_eq!(
            decode_header(0),
            MethodHeader::Methods {
                subchannel: 0,
                method: 0,
                count: 0,
                mode: MethodMode::Incrementing
            }
        );
    }
}
