//! Channel faults: a bad GPU address, a bad GPFIFO pointer or a bad method stops the channel
//! that caused it (CHRAM PBDMA_FAULTED or ENG_FAULTED), writes its error notifier if it has one,
//! and leaves every other channel running.

use thiserror::Error;

use super::memory::{MemoryId, MemoryPool};
use super::vaspace::VaFault;

/// `ROBUST_CHANNEL_GR_EXCEPTION` (Xid 13): the graphics/compute engine rejected work.
pub const ROBUST_CHANNEL_GR_EXCEPTION: u32 = 13;
/// `ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT` (Xid 31): a GPU MMU fault.
pub const ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT: u32 = 31;
/// `ROBUST_CHANNEL_PBDMA_ERROR` (Xid 32): the PBDMA rejected the pushbuffer.
pub const ROBUST_CHANNEL_PBDMA_ERROR: u32 = 32;
/// `ROBUST_CHANNEL_CE0_ERROR` (Xid 39); copy engine n reports 39 + n.
pub const ROBUST_CHANNEL_CE0_ERROR: u32 = 39;
/// Notifier status RM writes for channel errors (`krcErrorSetNotifier`).
pub const NOTIFIER_STATUS_ERROR: u16 = 0xFFFF;
/// Size of an `NvNotification`.
pub const NOTIFICATION_SIZE: u64 = 16;

/// What went wrong.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// A PBDMA fetch (GPFIFO or pushbuffer) or semaphore access hit an unmapped VA.
    #[error("PBDMA {0}")]
    PbdmaMmu(VaFault),
    /// An engine access (copy source/destination) hit an unmapped VA.
    #[error("engine {0}")]
    EngineMmu(VaFault),
    /// GP_PUT names an entry outside the GPFIFO ring.
    #[error("GP_PUT {gp_put} outside a ring of {entries} entries")]
    GpPutOutOfRange {
        /// Value read from USERD.
        gp_put: u32,
        /// Ring size.
        entries: u32,
    },
    /// The channel's USERD could not be read or written.
    #[error("USERD inaccessible")]
    UserdInaccessible,
    /// A GPFIFO control entry with the ILLEGAL opcode.
    #[error("illegal GPFIFO entry")]
    IllegalGpEntry,
    /// An undefined method header.
    #[error("invalid method header {0:#010x}")]
    InvalidHeader(u32),
    /// A host method that does not exist.
    #[error("illegal host method {method:#x} on subchannel {subchannel}")]
    IllegalMethod {
        /// Subchannel.
        subchannel: u32,
        /// Method byte address.
        method: u32,
    },
    /// An engine method on a subchannel with no object bound.
    #[error("method {method:#x} on subchannel {subchannel} with no object")]
    NoObject {
        /// Subchannel.
        subchannel: u32,
        /// Method byte address.
        method: u32,
    },
    /// SET_OBJECT with a class this runlist's engine does not run.
    #[error("class {0:#x} not supported by this engine")]
    ClassNotOnEngine(u32),
    /// SEM_EXECUTE with an undefined operation or reduction.
    #[error("invalid semaphore operation {0:#x}")]
    InvalidSemaphore(u32),
    /// A copy the engine refuses (physical addressing, block-linear layout, bad remap).
    #[error("copy engine: {0}")]
    InvalidCopy(&'static str),
    /// A compute launch (a QMD kicked by `SEND_SIGNALING_PCAS*_B`): the sim models engine
    /// occupancy, not shaders, so it stops the channel rather than report work it never did.
    #[error("compute launch {0:#x}: the sim does not run shaders")]
    UnmodeledLaunch(u32),
}

impl FaultKind {
    /// True when the PBDMA (not the engine) took the fault: sets PBDMA_FAULTED rather than
    /// ENG_FAULTED.
    pub fn is_pbdma(&self) -> bool {
        !matches!(
            self,
            Self::EngineMmu(_)
                | Self::ClassNotOnEngine(_)
                | Self::InvalidCopy(_)
                | Self::UnmodeledLaunch(_)
        )
    }
}

/// A fault as recorded on the channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelFault {
    /// What happened.
    pub kind: FaultKind,
    /// GPU time of the fault.
    pub at_ns: u64,
    /// The `ROBUST_CHANNEL_*` code written to the notifier (the Xid).
    pub rc_error: u32,
}

/// Where a channel's error notifier (`hObjectError` memory, index 0) lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorNotifier {
    /// Memory object.
    pub memory: MemoryId,
    /// Offset of the `NvNotification`.
    pub offset: u64,
}

impl ErrorNotifier {
    /// Writes an `NvNotification` {timeStamp, info32 = rc_error, info16 = engine type, status =
    /// 0xFFFF}, as `krcErrorWriteNotifier` does. Returns false if the memory is gone or too small.
    pub fn write(
        &self,
        pool: &mut MemoryPool,
        fault: &ChannelFault,
        nv2080_engine_type: u32,
    ) -> bool {
        let mut n = [0u8; NOTIFICATION_SIZE as usize];
        n[0..8].copy_from_slice(&fault.at_ns.to_le_bytes());
        n[8..12].copy_from_slice(&fault.rc_error.to_le_bytes());
        n[12..14].copy_from_slice(&(nv2080_engine_type as u16).to_le_bytes());
        n[14..16].copy_from_slice(&NOTIFIER_STATUS_ERROR.to_le_bytes());
        pool.write(self.memory, self.offset, &n).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::Aperture;
    use super::*;

    #[test]
    fn notifier_layout() {
        let mut p = MemoryPool::new(1 << 20, 1 << 20);
        let m = p.alloc(Aperture::Sysmem, 4096).unwrap();
        let f = ChannelFault {
            kind: FaultKind::InvalidHeader(0xC000_0000),
            at_ns: 0x1234_5678_9ABC,
            rc_error: ROBUST_CHANNEL_PBDMA_ERROR,
        };
        assert!(ErrorNotifier {
            memory: m,
            offset: 32
        }
        .write(&mut p, &f, 1));
        assert_eq!(p.read_u64(m, 32).unwrap(), 0x1234_5678_9ABC);
        assert_eq!(p.read_u32(m, 40).unwrap(), 32);
        assert_eq!(p.read_u32(m, 44).unwrap(), 0xFFFF_0001);
        assert!(!ErrorNotifier {
            memory: m,
            offset: 4090
        }
        .write(&mut p, &f, 1));
        assert!(FaultKind::InvalidHeader(0).is_pbdma());
        assert!(!FaultKind::InvalidCopy("x").is_pbdma());
    }
}
