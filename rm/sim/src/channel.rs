//! A channel's hardware context (what the instance block and RAMFC hold on real hardware):
//! GPFIFO ring, USERD, VA space, PBDMA fetch state, subchannel bindings, engine method
//! registers, in-flight work and fault state.

use super::engine::WorkItem;
use super::fault::{ChannelFault, ErrorNotifier};
use super::userd::Userd;
use super::vaspace::VaSpaceId;
use rm_abi::pushbuffer::{MethodMode, SUBCHANNELS};

/// Names one channel: its runlist and its id in that runlist's channel RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelRef {
    /// Runlist.
    pub runlist: u32,
    /// Channel id.
    pub chid: u32,
}

/// What a channel is created with (the validated subset of `NV_CHANNEL_ALLOC_PARAMS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelConfig {
    /// VA space used for every fetch and access of the channel.
    pub vaspace: VaSpaceId,
    /// GPU VA of the GPFIFO ring (`gpFifoOffset`).
    pub gpfifo_va: u64,
    /// Entries in the ring (`gpFifoEntries`, a power of two).
    pub gpfifo_entries: u32,
    /// USERD block.
    pub userd: Userd,
    /// Error notifier (`hObjectError` memory), if any.
    pub error_notifier: Option<ErrorNotifier>,
}

/// Per-channel counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// GPFIFO entries fetched.
    pub gp_entries: u64,
    /// Methods executed.
    pub methods: u64,
    /// Semaphore releases (host and copy engine).
    pub semaphore_releases: u64,
    /// Non-stalling interrupts raised.
    pub nonstall_interrupts: u64,
}

/// The pushbuffer segment being fetched, with a small prefetch buffer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segment {
    pub va: u64,
    pub remaining: u32,
    pub buf: Vec<u32>,
    pub pos: usize,
}

impl Segment {
    pub fn is_empty(&self) -> bool {
        self.remaining == 0 && self.pos >= self.buf.len()
    }

    pub fn clear(&mut self) {
        self.remaining = 0;
        self.buf.clear();
        self.pos = 0;
    }
}

/// A method header whose data dwords are still arriving (method state survives segment ends).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MethodRun {
    pub subchannel: u32,
    pub method: u32,
    pub left: u32,
    pub mode: MethodMode,
}

/// A semaphore acquire that has not been satisfied yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingAcquire {
    pub va: u64,
    pub payload: u64,
    pub op: u32,
    pub is64: bool,
    /// `ACQUIRE_SWITCH_TSG`: the TSG yields instead of spinning while this fails.
    pub switch_tsg: bool,
}

/// Host-class semaphore registers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HostRegs {
    pub sem_va: u64,
    pub payload: u64,
}

/// Copy-class method registers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CopyRegs {
    pub sem_va: u64,
    pub sem_payload: u32,
    pub offset_in: u64,
    pub offset_out: u64,
    pub pitch_in: u32,
    pub pitch_out: u32,
    pub line_length: u32,
    pub line_count: u32,
    pub remap_const_a: u32,
    pub remap_const_b: u32,
    pub remap_components: u32,
}

/// One channel's full hardware state.
#[derive(Debug)]
pub(crate) struct Channel {
    pub cfg: ChannelConfig,
    pub tsgid: u32,
    /// Enabled as its owner last asked (`GPFIFO_SCHEDULE`, `DISABLE_CHANNELS`); channel RAM
    /// holds this unless the host gates the TSG.
    pub enabled: bool,
    pub gp_get: u32,
    pub gp_put: u32,
    pub seg: Segment,
    pub method: Option<MethodRun>,
    pub subchannels: [Option<u32>; SUBCHANNELS as usize],
    pub host: HostRegs,
    pub copy: CopyRegs,
    pub compute_work_ns: u64,
    pub work: Option<WorkItem>,
    pub acquire: Option<PendingAcquire>,
    pub fault: Option<ChannelFault>,
    pub stats: ChannelStats,
}

impl Channel {
    pub fn new(cfg: ChannelConfig, tsgid: u32) -> Self {
        Self {
            cfg,
            tsgid,
            enabled: false,
            gp_get: 0,
            gp_put: 0,
            seg: Segment::default(),
            method: None,
            subchannels: [None; SUBCHANNELS as usize],
            host: HostRegs::default(),
            copy: CopyRegs::default(),
            compute_work_ns: 0,
            work: None,
            acquire: None,
            fault: None,
            stats: ChannelStats::default(),
        }
    }

    /// Fetch state still holds work the PBDMA has not finished (without looking at USERD).
    pub fn has_fetched_work(&self) -> bool {
        self.work.is_some()
            || self.acquire.is_some()
            || !self.seg.is_empty()
            || self.gp_get != self.gp_put
    }
}
