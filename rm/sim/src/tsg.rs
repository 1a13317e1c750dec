//! Channel groups (TSGs) as the sim's FIFO tracks them: RM-side settings (GFID, timeslice,
//! interleave level, scheduled or not, member channels) and the hardware scheduler's per-TSG
//! accounting that a scheduler reads back.

use super::runlist::{InterleaveLevel, Timeslice};

/// Names one TSG: its runlist and TSG id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TsgRef {
    /// Runlist.
    pub runlist: u32,
    /// TSG id (runlist header `TSGID`).
    pub tsgid: u32,
}

/// Per-TSG accounting, all times in GPU ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TsgStats {
    /// Time the TSG was resident on the engine (methods, work, spinning acquires, and the
    /// drain to a preemption point).
    pub engine_time_ns: u64,
    /// Compute work completed (the sim work method's ns).
    pub compute_work_ns: u64,
    /// Bytes written by copy-engine transfers.
    pub copy_bytes: u64,
    /// Methods executed by the TSG's channels.
    pub methods: u64,
    /// Times the TSG was loaded on the engine.
    pub switches_in: u64,
    /// Times it was taken off because its timeslice expired while others waited.
    pub timeslice_expirations: u64,
    /// Times it was taken off by a preempt register write (or a runlist change).
    pub preemptions: u64,
    /// Times it left because it ran out of work (or yielded).
    pub idle_switches: u64,
    /// Total time from a switch-out request (timeslice, preempt) to its context saved.
    pub preempt_latency_ns: u64,
    /// Context-save time spent switching this TSG out.
    pub ctxsw_ns: u64,
    /// Channel faults in the TSG.
    pub faults: u64,
}

/// A TSG's state in the sim FIFO.
#[derive(Debug, Clone)]
pub(crate) struct Tsg {
    pub gfid: u32,
    pub timeslice_us: u64,
    pub timeslice: Timeslice,
    pub interleave: InterleaveLevel,
    pub scheduled: bool,
    /// Held off the engine by the host scheduler, whatever its owner enables.
    pub host_gated: bool,
    pub chids: Vec<u32>,
    pub stats: TsgStats,
}

impl Tsg {
    pub fn new(gfid: u32) -> Self {
        Self {
            gfid,
            timeslice_us: 1024,
            timeslice: Timeslice::DEFAULT,
            interleave: InterleaveLevel::Medium,
            scheduled: false,
            host_gated: false,
            chids: Vec::new(),
            stats: TsgStats::default(),
        }
    }
}
