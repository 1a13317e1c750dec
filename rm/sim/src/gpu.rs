//! [`SimGpu`]: the whole simulated GPU — memory, VA spaces, one runlist (with PBDMA, channel
//! RAM, preempt register and hardware scheduler) per engine — plus the small FIFO layer RM
//! keeps on top (TSG/channel id allocation, runlist rebuilds when TSG settings change).
//!
//! Topology (fixed): runlist 0 feeds GR0 (compute class `HOPPER_COMPUTE_A`, and the copy class
//! `HOPPER_DMA_COPY_A` through GR's own copy engine); runlist 1 + n feeds COPYn
//! (`HOPPER_DMA_COPY_A`), for `SimConfig::copy_engines` copy engines. Channel and
//! TSG ids are per runlist, as with Ampere+ per-runlist channel RAM.

use std::collections::BTreeMap;

use thiserror::Error;

use rm_core::backend::Gfid;

use super::channel::{ChannelConfig, ChannelRef, ChannelStats};
use super::chram::{self, CHRAM_CHANNELS};
use super::clock::{ClockMode, SimClock};
use super::doorbell::WorkSubmitToken;
use super::engine::{EngineInfo, MAX_COPY_ENGINES};
use super::fault::{ChannelFault, NOTIFICATION_SIZE};
use super::memory::{Aperture, MemoryError, MemoryId, MemoryPool};
use super::preempt::PreemptRequest;
use super::runlist::{
    build_runlist, ChannelEntry, InterleaveLevel, RunlistEntry, RunlistError, RunlistSlot,
    Timeslice, TsgDescriptor, MAX_GFID, TSG_MAX_LENGTH,
};
use super::runlist_scheduler::{RunlistOpError, RunlistScheduler, RunlistStats, World};
use super::timing::Timing;
use super::tsg::{Tsg, TsgRef, TsgStats};
use super::vaspace::{VaError, VaSpace, VaSpaceId};
use rm_abi::pushbuffer::GP_ENTRY_SIZE;

/// H200 framebuffer as `nvidia-smi` reports it (143771 MiB).
pub const H200_FB_BYTES: u64 = 143_771 * 1024 * 1024;
/// The H200's GR engine as its driver (580.159.04) described it to CUDA in the vecadd trace:
/// 8 GPCs with these TPC masks (66 TPCs, so 132 SMs at 2 per TPC, the H200's published count).
pub const H200_TPC_MASKS: [u32; 8] = [0x1FF, 0x1F8, 0x1BF, 0x1FF, 0x1FF, 0x1FF, 0x1FD, 0x0FF];
/// The H200's `GR_GET_CAPS_V2` table, from the same trace.
pub const H200_GR_CAPS: [u8; 23] = [
    0xB0, 0x2E, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x10, 0x01, 0x08, 0x00, 0x10,
    0x10, 0x00, 0x80, 0x00, 0x04, 0x40, 0x00,
];
/// `GR_GET_INFO` of an H200 by index (`NV2080_CTRL_GR_INFO_INDEX_*`, 0..=0x39), as its driver
/// (580.159.04) answered `rm-trace probe-gr` on 2026-12-03 (`tests/fixtures/h200/gr-probe.json`):
/// e.g. `SM_VERSION` (0x0C) 0x900, `LITTER_NUM_GPCS` (0x14) 8, `LITTER_NUM_TPC_PER_GPC` (0x17)
/// 9, `GPU_CORE_COUNT` (0x1D) 16896 (132 SMs x 128), `LITTER_NUM_SM_PER_TPC` (0x20) 2. That
/// board's TPC masks differ from the traced board's (each H200 is floorswept its own way);
/// both have 66 TPCs.
pub const H200_GR_INFO: [u32; 58] = [
    8, 0, 0, 512, 0, 16, 0, 8, 132, 66, 0, 0, 2304, 64, 32, 160, 160, 32, 32, 0, 8, 12, 4, 9, 1, 8,
    1, 24, 3, 16896, 3, 6, 2, 0, 0, 528, 8, 24, 8, 4, 2, 1, 9, 2, 64, 2, 64, 16, 1, 3, 4, 0, 15, 8,
    8, 8, 0, 0,
];
/// Most TSGs per runlist.
pub const MAX_TSGS_PER_RUNLIST: u32 = 2048;
/// Largest GPFIFO ring accepted (entries).
pub const MAX_GPFIFO_ENTRIES: u32 = 1 << 20;

/// How to build a [`SimGpu`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Virtual or real-time clock.
    pub clock: ClockMode,
    /// Copy engines (each with its own runlist), 1..=10.
    pub copy_engines: u32,
    /// Framebuffer bytes (video memory capacity).
    pub fb_bytes: u64,
    /// System memory the GPU's clients may allocate, in bytes.
    pub sysmem_bytes: u64,
    /// Host memory the sim may hold for the pages its clients wrote, over all of them: a
    /// simulated framebuffer is far larger than the host's RAM, and each written 4 KiB of it
    /// costs a host page. Past it a write that needs a new page fails (`NV_ERR_NO_MEMORY`).
    pub host_memory_bytes: u64,
    /// Cost model.
    pub timing: Timing,
}

/// [`SimConfig::host_memory_bytes`] by default: 4 GiB.
pub const DEFAULT_HOST_MEMORY: u64 = 4 << 30;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            clock: ClockMode::Virtual,
            copy_engines: 4,
            fb_bytes: H200_FB_BYTES,
            sysmem_bytes: 256 << 30,
            host_memory_bytes: DEFAULT_HOST_MEMORY,
            timing: Timing::default(),
        }
    }
}

/// Errors of [`SimGpu`] operations.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SimError {
    /// No runlist with this id.
    #[error("no runlist {0}")]
    NoSuchRunlist(u32),
    /// No such TSG.
    #[error("no TSG {0:?}")]
    NoSuchTsg(TsgRef),
    /// No such channel.
    #[error("no channel {0:?}")]
    NoSuchChannel(ChannelRef),
    /// No such VA space.
    #[error("no VA space {0:?}")]
    NoSuchVaSpace(VaSpaceId),
    /// Every TSG id of the runlist is in use.
    #[error("runlist {0} has no free TSG id")]
    OutOfTsgIds(u32),
    /// Every channel id of the runlist is in use.
    #[error("runlist {0} has no free channel id")]
    OutOfChannelIds(u32),
    /// The TSG already holds 128 channels.
    #[error("TSG {0:?} is full")]
    TsgFull(TsgRef),
    /// The TSG still has channels.
    #[error("TSG {0:?} still has channels")]
    TsgNotEmpty(TsgRef),
    /// GFID above 63.
    #[error("GFID {0} out of range")]
    BadGfid(u32),
    /// A channel parameter is invalid.
    #[error("invalid channel configuration: {0}")]
    BadChannelConfig(&'static str),
    /// A token that names no channel.
    #[error("work-submit token {0:#x} names no channel")]
    BadToken(u32),
    /// Preemption did not complete within the timeout.
    #[error("preemption of {0:?} timed out")]
    PreemptTimeout(TsgRef),
    /// Memory error.
    #[error(transparent)]
    Memory(#[from] MemoryError),
    /// VA space error.
    #[error(transparent)]
    Va(#[from] VaError),
    /// Runlist register-level error.
    #[error(transparent)]
    Runlist(#[from] RunlistOpError),
}

impl From<RunlistError> for SimError {
    fn from(e: RunlistError) -> Self {
        Self::Runlist(e.into())
    }
}

/// A TSG as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsgInfo {
    /// The TSG.
    pub tsg: TsgRef,
    /// Owning GFID.
    pub gfid: u32,
    /// Timeslice as last set, in µs (what GET_TIMESLICE returns).
    pub timeslice_us: u64,
    /// Timeslice in the runlist header.
    pub timeslice: Timeslice,
    /// Interleave level.
    pub interleave: InterleaveLevel,
    /// In the runlist (GPFIFO_SCHEDULE enabled).
    pub scheduled: bool,
    /// Member channels.
    pub channels: Vec<ChannelRef>,
    /// Loaded on the engine now.
    pub resident: bool,
    /// Accounting.
    pub stats: TsgStats,
}

/// The simulated GPU.
#[derive(Debug)]
pub struct SimGpu {
    clock: SimClock,
    timing: Timing,
    pool: MemoryPool,
    vaspaces: BTreeMap<VaSpaceId, VaSpace>,
    next_vaspace: u32,
    runlists: Vec<RunlistScheduler>,
    /// Lock-step windows run so far (each costs one pass over every runlist).
    windows: u64,
    /// A host scheduler owns every TSG's timeslice and interleave level (see
    /// [`SimGpu::set_governed`]).
    governed: bool,
    /// What the host last set per (GFID, runlist), which a governed GPU gives every TSG that
    /// GFID creates there: freeing and re-creating a TSG must not shed a gate or a short slice.
    host_levers: BTreeMap<(u32, u32), HostLevers>,
}

/// The host scheduler's last setting of each lever for one GFID on one runlist.
#[derive(Debug, Clone, Copy, Default)]
struct HostLevers {
    gated: bool,
    timeslice: Option<Timeslice>,
    interleave: Option<InterleaveLevel>,
}

impl SimGpu {
    /// Builds a GPU from `config` (copy engines clamped to 1..=10).
    pub fn new(config: SimConfig) -> Self {
        let copies = config.copy_engines.clamp(1, MAX_COPY_ENGINES);
        Self {
            clock: SimClock::new(config.clock),
            timing: config.timing.sanitized(),
            pool: {
                let mut pool = MemoryPool::new(config.fb_bytes, config.sysmem_bytes);
                pool.set_resident_limit(config.host_memory_bytes);
                pool
            },
            vaspaces: BTreeMap::new(),
            next_vaspace: 1,
            runlists: (0..=copies)
                .map(|r| RunlistScheduler::new(EngineInfo::for_runlist(r)))
                .collect(),
            windows: 0,
            governed: false,
            host_levers: BTreeMap::new(),
        }
    }

    /// Hands every TSG's timeslice and interleave level to a host scheduler, as a vGPU host's
    /// scheduler owns its guests' on real hardware: from then on the owner's `SET_TIMESLICE`
    /// ([`SimGpu::set_tsg_timeslice_us`]) is recorded (GET_TIMESLICE answers it, as the driver
    /// would) and its `SET_INTERLEAVE_LEVEL` ([`SimGpu::set_tsg_interleave`]) accepted, but only
    /// the host's [`SimGpu::program_tsg_timeslice_us`] and [`SimGpu::program_tsg_interleave`]
    /// reach the runlist, and a TSG the owner creates starts with the gate, timeslice and level
    /// the host last set for its GFID there.
    pub fn set_governed(&mut self, governed: bool) {
        self.governed = governed;
    }

    /// Whether a host scheduler owns the timeslices (see [`SimGpu::set_governed`]).
    pub fn governed(&self) -> bool {
        self.governed
    }

    // ---- topology, time -------------------------------------------------------------------

    /// Engines, indexed by runlist id.
    pub fn engines(&self) -> Vec<EngineInfo> {
        self.runlists.iter().map(|r| r.engine.clone()).collect()
    }

    /// Runlist serving an `NV2080_ENGINE_TYPE_*` engine.
    pub fn runlist_for_engine_type(&self, nv2080_engine_type: u32) -> Option<u32> {
        self.runlists
            .iter()
            .find(|r| r.engine.nv2080_engine_type == nv2080_engine_type)
            .map(|r| r.engine.runlist)
    }

    /// Number of runlists.
    pub fn runlist_count(&self) -> u32 {
        self.runlists.len() as u32
    }

    /// The cost model in use.
    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// GPU time reached, in ns (what semaphore timestamps carry).
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Clock mode.
    pub fn clock_mode(&self) -> ClockMode {
        self.clock.mode()
    }

    /// Runs the GPU for `dt_ns` more GPU time.
    pub fn advance(&mut self, dt_ns: u64) {
        self.run_until(self.now_ns().saturating_add(dt_ns));
    }

    /// Runs the GPU until GPU time `t_ns`. Runlists advance in lock-step windows of
    /// `Timing::sync_quantum_ns` while more than one can make progress (so a semaphore released
    /// on one is seen by an acquire on another within a window), and straight to `t_ns` when
    /// they cannot affect each other. Host work is capped per call by
    /// `Timing::work_budget_per_call` per runlist.
    pub fn run_until(&mut self, t_ns: u64) {
        self.run_until_within(t_ns, u64::MAX);
    }

    /// [`SimGpu::run_until`] that also stops at the end of the first lock-step window after
    /// [`SimGpu::host_work_units`] reaches `work_limit`. Returns the GPU time reached.
    pub fn run_until_within(&mut self, t_ns: u64, work_limit: u64) -> u64 {
        let mut now = self.now_ns();
        if t_ns <= now {
            return now;
        }
        for rl in &mut self.runlists {
            rl.refill_budget(self.timing.work_budget_per_call);
        }
        while now < t_ns {
            // Lock-step windows are needed only when runlists can affect each other within this
            // call: two active runlists, or one active runlist and a waiter elsewhere (CPU
            // writes and doorbells happen between calls).
            let active: Vec<usize> = (0..self.runlists.len())
                .filter(|&i| self.runlists[i].active(&self.pool, &self.vaspaces))
                .collect();
            let independent = match active.as_slice() {
                [] => true,
                [only] => self
                    .runlists
                    .iter()
                    .enumerate()
                    .all(|(i, r)| i == *only || !r.has_waiters()),
                _ => false,
            };
            let end = if independent {
                t_ns
            } else {
                now.saturating_add(self.timing.sync_quantum_ns).min(t_ns)
            };
            for rl in &mut self.runlists {
                let mut w = World {
                    pool: &mut self.pool,
                    vaspaces: &self.vaspaces,
                    timing: &self.timing,
                };
                rl.run(end, &mut w);
            }
            now = end;
            self.windows += 1;
            if now < t_ns && self.host_work_units() >= work_limit {
                break;
            }
        }
        self.clock.set_now(now);
        now
    }

    /// Runs the GPU until `done` holds, for at most `timeout_ns` of GPU time and until
    /// [`SimGpu::host_work_units`] reaches `work_limit`, whichever comes first; true if `done`
    /// held. `done` is checked after steps that start at `first_step_ns` and grow with the time
    /// waited (by 1/16 of it), so a long wait costs few checks and overshoots by at most
    /// about 6 %; the work limit keeps a guest's wait from holding the host however long
    /// the timeout it asked for.
    pub fn wait_until(
        &mut self,
        timeout_ns: u64,
        first_step_ns: u64,
        work_limit: u64,
        mut done: impl FnMut(&Self) -> Result<bool, SimError>,
    ) -> Result<bool, SimError> {
        let start = self.now_ns();
        let deadline = start.saturating_add(timeout_ns);
        loop {
            if done(self)? {
                return Ok(true);
            }
            let now = self.now_ns();
            if now >= deadline || self.host_work_units() >= work_limit {
                return Ok(false);
            }
            let step = first_step_ns.max((now - start) / 16).max(1);
            self.run_until_within(now.saturating_add(step).min(deadline), work_limit);
        }
    }

    /// The work limit of one RM call that starts now: [`Timing::work_budget_per_call`] more
    /// units of host work.
    pub fn call_work_limit(&self) -> u64 {
        self.host_work_units()
            .saturating_add(self.timing.work_budget_per_call)
    }

    /// Host work the GPU has done since it was created, in units of one method, one acquire
    /// poll, 1 KiB of copied data or one lock-step window: what callers bound to keep a guest
    /// from holding the host (see `Timing::work_budget_per_call`).
    pub fn host_work_units(&self) -> u64 {
        self.runlists
            .iter()
            .map(RunlistScheduler::work_done)
            .fold(self.windows, u64::saturating_add)
    }

    /// Real-time mode: runs the GPU up to the host time elapsed since creation, at most
    /// `max_catch_up_ns` at once (so a slow host never holds the GPU for long). Returns the GPU
    /// time reached. In virtual mode it does nothing.
    pub fn sync_to_real_time(&mut self, max_catch_up_ns: u64) -> u64 {
        if self.clock.mode() == ClockMode::RealTime {
            let target = self.clock.target_ns();
            let now = self.now_ns();
            if target > now {
                self.run_until(target.min(now.saturating_add(max_catch_up_ns)));
            }
        }
        self.now_ns()
    }

    /// The GPU time the clock should be at: host time since creation (real-time mode), or
    /// GPU time itself (virtual mode). GPU time never runs ahead of it by more than one tick's
    /// catch-up.
    pub fn clock_target_ns(&self) -> u64 {
        self.clock.target_ns()
    }

    /// How far GPU time lags host time (real-time mode), in ns.
    pub fn real_time_lag_ns(&self) -> u64 {
        self.clock.target_ns().saturating_sub(self.now_ns())
    }

    // ---- memory and VA spaces -------------------------------------------------------------

    /// The memory pool (CPU access to memory objects).
    pub fn memory(&self) -> &MemoryPool {
        &self.pool
    }

    /// Mutable memory pool (CPU writes, e.g. GP_PUT in USERD or pushbuffer contents).
    pub fn memory_mut(&mut self) -> &mut MemoryPool {
        &mut self.pool
    }

    /// Allocates memory for the vGPU `owner` (0: the GPU's own), whose written pages then
    /// count against its host-memory limit ([`SimGpu::set_host_memory_quota`]).
    pub fn alloc_memory(
        &mut self,
        owner: Gfid,
        aperture: Aperture,
        size: u64,
    ) -> Result<MemoryId, SimError> {
        Ok(self.pool.alloc_owned(owner, aperture, size)?)
    }

    /// Bounds the host memory the written pages of `owner`'s memory objects may hold (None:
    /// only the GPU's [`SimConfig::host_memory_bytes`]).
    pub fn set_host_memory_quota(&mut self, owner: Gfid, bytes: Option<u64>) {
        self.pool.set_owner_limit(owner, bytes);
    }

    /// Frees memory, removing its GPU mappings first (later GPU access faults).
    pub fn free_memory(&mut self, id: MemoryId) -> Result<(), SimError> {
        self.pool.size(id)?;
        for v in self.vaspaces.values_mut() {
            v.unmap_memory(id);
        }
        Ok(self.pool.free(id)?)
    }

    /// Creates an empty VA space.
    pub fn create_vaspace(&mut self) -> VaSpaceId {
        let id = VaSpaceId(self.next_vaspace);
        self.next_vaspace += 1;
        self.vaspaces.insert(id, VaSpace::new());
        id
    }

    /// Destroys a VA space (channels still using it fault on their next access).
    pub fn destroy_vaspace(&mut self, id: VaSpaceId) -> Result<(), SimError> {
        self.vaspaces
            .remove(&id)
            .map(|_| ())
            .ok_or(SimError::NoSuchVaSpace(id))
    }

    /// A VA space, for inspection and GPU-VA reads.
    pub fn vaspace(&self, id: VaSpaceId) -> Option<&VaSpace> {
        self.vaspaces.get(&id)
    }

    /// Number of VA spaces.
    pub fn vaspace_count(&self) -> usize {
        self.vaspaces.len()
    }

    /// Maps `len` bytes of `memory` at `offset` to GPU VA `va`.
    pub fn map(
        &mut self,
        vas: VaSpaceId,
        va: u64,
        memory: MemoryId,
        offset: u64,
        len: u64,
    ) -> Result<(), SimError> {
        let v = self
            .vaspaces
            .get_mut(&vas)
            .ok_or(SimError::NoSuchVaSpace(vas))?;
        Ok(v.map(&self.pool, va, memory, offset, len)?)
    }

    /// Removes the mapping starting at `va`.
    pub fn unmap(&mut self, vas: VaSpaceId, va: u64) -> Result<(), SimError> {
        let v = self
            .vaspaces
            .get_mut(&vas)
            .ok_or(SimError::NoSuchVaSpace(vas))?;
        v.unmap(va)?;
        Ok(())
    }

    // ---- FIFO layer: TSGs and channels ----------------------------------------------------

    fn rl(&self, runlist: u32) -> Result<&RunlistScheduler, SimError> {
        self.runlists
            .get(runlist as usize)
            .ok_or(SimError::NoSuchRunlist(runlist))
    }

    fn rl_mut(&mut self, runlist: u32) -> Result<&mut RunlistScheduler, SimError> {
        self.runlists
            .get_mut(runlist as usize)
            .ok_or(SimError::NoSuchRunlist(runlist))
    }

    fn tsg(&self, t: TsgRef) -> Result<&Tsg, SimError> {
        self.rl(t.runlist)?
            .tsgs
            .get(&t.tsgid)
            .ok_or(SimError::NoSuchTsg(t))
    }

    fn tsg_mut(&mut self, t: TsgRef) -> Result<&mut Tsg, SimError> {
        self.rl_mut(t.runlist)?
            .tsgs
            .get_mut(&t.tsgid)
            .ok_or(SimError::NoSuchTsg(t))
    }

    fn channel_mut(&mut self, c: ChannelRef) -> Result<&mut super::channel::Channel, SimError> {
        self.rl_mut(c.runlist)?
            .channels
            .get_mut(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))
    }

    /// Creates a TSG on `runlist` for `gfid`, with RM's defaults (1024 µs, MEDIUM, not yet
    /// scheduled); on a governed GPU, with the gate, timeslice and level the host last set for
    /// that GFID's TSGs on the runlist instead.
    pub fn create_tsg(&mut self, runlist: u32, gfid: u32) -> Result<TsgRef, SimError> {
        if gfid > MAX_GFID {
            return Err(SimError::BadGfid(gfid));
        }
        let host = self
            .governed
            .then(|| self.host_levers.get(&(gfid, runlist)).copied())
            .flatten()
            .unwrap_or_default();
        let rl = self.rl_mut(runlist)?;
        let tsgid = (0..MAX_TSGS_PER_RUNLIST)
            .find(|i| !rl.tsgs.contains_key(i))
            .ok_or(SimError::OutOfTsgIds(runlist))?;
        let mut tsg = Tsg::new(gfid);
        tsg.host_gated = host.gated;
        if let Some(ts) = host.timeslice {
            tsg.timeslice = ts;
        }
        if let Some(level) = host.interleave {
            tsg.interleave = level;
        }
        rl.tsgs.insert(tsgid, tsg);
        Ok(TsgRef { runlist, tsgid })
    }

    /// The host's record of `t`'s GFID on `t`'s runlist.
    fn host_levers_of(&mut self, t: TsgRef) -> Result<&mut HostLevers, SimError> {
        let gfid = self.tsg(t)?.gfid;
        Ok(self.host_levers.entry((gfid, t.runlist)).or_default())
    }

    /// Destroys an empty TSG.
    pub fn destroy_tsg(&mut self, t: TsgRef) -> Result<(), SimError> {
        if !self.tsg(t)?.chids.is_empty() {
            return Err(SimError::TsgNotEmpty(t));
        }
        self.rl_mut(t.runlist)?.tsgs.remove(&t.tsgid);
        self.rebuild_runlist(t.runlist)
    }

    /// Creates a channel in TSG `t`. It starts disabled in channel RAM unless the TSG is
    /// already scheduled.
    pub fn create_channel(
        &mut self,
        t: TsgRef,
        cfg: ChannelConfig,
    ) -> Result<ChannelRef, SimError> {
        let tsg = self.tsg(t)?;
        if tsg.chids.len() as u32 >= TSG_MAX_LENGTH {
            return Err(SimError::TsgFull(t));
        }
        let (scheduled, gated) = (tsg.scheduled, tsg.host_gated);
        if !self.vaspaces.contains_key(&cfg.vaspace) {
            return Err(SimError::NoSuchVaSpace(cfg.vaspace));
        }
        if !cfg.gpfifo_entries.is_power_of_two()
            || !(2..=MAX_GPFIFO_ENTRIES).contains(&cfg.gpfifo_entries)
        {
            return Err(SimError::BadChannelConfig(
                "gpFifoEntries must be a power of two in 2..=2^20",
            ));
        }
        let ring_ok = cfg.gpfifo_va.is_multiple_of(GP_ENTRY_SIZE)
            && cfg
                .gpfifo_va
                .checked_add(u64::from(cfg.gpfifo_entries) * GP_ENTRY_SIZE)
                .is_some_and(|e| e <= 1 << super::vaspace::VA_BITS);
        if !ring_ok {
            return Err(SimError::BadChannelConfig(
                "GPFIFO ring outside the VA space or misaligned",
            ));
        }
        cfg.userd.validate(&self.pool)?;
        if let Some(n) = cfg.error_notifier {
            let size = self.pool.size(n.memory)?;
            if n.offset
                .checked_add(NOTIFICATION_SIZE)
                .is_none_or(|e| e > size)
            {
                return Err(SimError::BadChannelConfig(
                    "error notifier outside its memory",
                ));
            }
        }
        let rl = self.rl_mut(t.runlist)?;
        let chid = (0..CHRAM_CHANNELS)
            .find(|c| !rl.channels.contains_key(c))
            .ok_or(SimError::OutOfChannelIds(t.runlist))?;
        let mut channel = super::channel::Channel::new(cfg, t.tsgid);
        channel.enabled = scheduled;
        rl.channels.insert(chid, channel);
        rl.chram.reset(chid);
        if scheduled && !gated {
            rl.chram.write(chid, chram::ENABLE_CHANNEL);
        }
        if let Some(tsg) = rl.tsgs.get_mut(&t.tsgid) {
            tsg.chids.push(chid);
        }
        self.rebuild_runlist(t.runlist)?;
        Ok(ChannelRef {
            runlist: t.runlist,
            chid,
        })
    }

    /// Destroys a channel (taking it off the runlist).
    pub fn destroy_channel(&mut self, c: ChannelRef) -> Result<(), SimError> {
        let rl = self.rl_mut(c.runlist)?;
        let tsgid = rl
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?
            .tsgid;
        rl.remove_channel(c.chid);
        if let Some(t) = rl.tsgs.get_mut(&tsgid) {
            t.chids.retain(|&x| x != c.chid);
        }
        self.rebuild_runlist(c.runlist)
    }

    /// Rebuilds runlist `runlist` from its TSGs as RM does (scheduled TSGs with channels,
    /// repeated by interleave level) and submits it.
    fn rebuild_runlist(&mut self, runlist: u32) -> Result<(), SimError> {
        let rl = self.rl_mut(runlist)?;
        let descs: Vec<TsgDescriptor> = rl
            .tsgs
            .iter()
            .filter(|(_, t)| t.scheduled)
            .map(|(&tsgid, t)| TsgDescriptor {
                tsgid,
                gfid: t.gfid,
                timeslice: t.timeslice,
                interleave: t.interleave,
                channels: t
                    .chids
                    .iter()
                    .map(|&chid| {
                        let inst = u64::from(runlist) << 24 | u64::from(chid) << 12;
                        ChannelEntry {
                            chid,
                            runqueue: 0,
                            userd_ptr: inst | 0x200,
                            inst_ptr: inst,
                        }
                    })
                    .collect(),
            })
            .collect();
        let entries = build_runlist(&descs)?;
        rl.submit(entries)?;
        Ok(())
    }

    /// The owner's `SET_TIMESLICE`: recorded as the TSG's timeslice (what GET_TIMESLICE
    /// returns) and, unless a host scheduler governs the GPU, rounded down to a hardware value
    /// and written into the runlist header, effective at once. Returns the hardware timeslice.
    pub fn set_tsg_timeslice_us(&mut self, t: TsgRef, us: u64) -> Result<Timeslice, SimError> {
        let governed = self.governed;
        let tsg = self.tsg_mut(t)?;
        tsg.timeslice_us = us;
        if governed {
            return Ok(tsg.timeslice);
        }
        self.program_tsg_timeslice_us(t, us)
    }

    /// The host scheduler's timeslice lever: rounds `us` down to a hardware value and writes it
    /// into the runlist header, effective at once, leaving the owner's recorded value alone.
    /// Returns the hardware timeslice.
    pub fn program_tsg_timeslice_us(&mut self, t: TsgRef, us: u64) -> Result<Timeslice, SimError> {
        let tsg = self.tsg_mut(t)?;
        tsg.timeslice = Timeslice::from_us(us);
        let ts = tsg.timeslice;
        self.host_levers_of(t)?.timeslice = Some(ts);
        self.rebuild_runlist(t.runlist)?;
        Ok(ts)
    }

    /// The owner's `SET_INTERLEAVE_LEVEL`: rebuilds the runlist with the new repetition, unless
    /// a host scheduler governs the GPU (then the host's level stays).
    pub fn set_tsg_interleave(
        &mut self,
        t: TsgRef,
        level: InterleaveLevel,
    ) -> Result<(), SimError> {
        self.tsg(t)?;
        if self.governed {
            return Ok(());
        }
        self.program_tsg_interleave(t, level)
    }

    /// The host scheduler's interleave lever: sets the level and rebuilds the runlist.
    pub fn program_tsg_interleave(
        &mut self,
        t: TsgRef,
        level: InterleaveLevel,
    ) -> Result<(), SimError> {
        self.tsg_mut(t)?.interleave = level;
        self.host_levers_of(t)?.interleave = Some(level);
        self.rebuild_runlist(t.runlist)
    }

    /// The host scheduler's gate: while `gated`, every channel of the TSG is disabled in channel
    /// RAM whatever its owner enables (`GPFIFO_SCHEDULE`, `DISABLE_CHANNELS`, new channels);
    /// lifting it gives each channel back the state its owner last asked for. Takes effect at
    /// the next TSG switch, as any channel RAM write.
    pub fn gate_tsg(&mut self, t: TsgRef, gated: bool) -> Result<(), SimError> {
        self.host_levers_of(t)?.gated = gated;
        let tsg = self.tsg_mut(t)?;
        tsg.host_gated = gated;
        let chids = tsg.chids.clone();
        for chid in chids {
            self.write_enable(ChannelRef {
                runlist: t.runlist,
                chid,
            })?;
        }
        Ok(())
    }

    /// Writes a channel's channel-RAM enable bit from its owner's wish and its TSG's gate.
    fn write_enable(&mut self, c: ChannelRef) -> Result<(), SimError> {
        let rl = self.rl(c.runlist)?;
        let ch = rl.channels.get(&c.chid).ok_or(SimError::NoSuchChannel(c))?;
        let gated = rl.tsgs.get(&ch.tsgid).is_some_and(|t| t.host_gated);
        let on = ch.enabled && !gated;
        self.chram_write(
            c,
            if on {
                chram::ENABLE_CHANNEL
            } else {
                chram::DISABLE_CHANNEL
            },
        )
    }

    /// `GPFIFO_SCHEDULE`: enable puts the TSG on the runlist and enables its channels;
    /// disable disables them and takes it off (preempting it if loaded).
    pub fn schedule_tsg(&mut self, t: TsgRef, enable: bool) -> Result<(), SimError> {
        let tsg = self.tsg_mut(t)?;
        tsg.scheduled = enable;
        let chids = tsg.chids.clone();
        for chid in chids {
            let c = ChannelRef {
                runlist: t.runlist,
                chid,
            };
            self.channel_mut(c)?.enabled = enable;
            self.write_enable(c)?;
        }
        self.rebuild_runlist(t.runlist)
    }

    /// All TSGs, by runlist then id.
    pub fn tsgs(&self) -> Vec<TsgInfo> {
        self.runlists
            .iter()
            .flat_map(|rl| {
                let runlist = rl.engine.runlist;
                let resident = rl.resident_tsg();
                rl.tsgs.iter().map(move |(&tsgid, t)| TsgInfo {
                    tsg: TsgRef { runlist, tsgid },
                    gfid: t.gfid,
                    timeslice_us: t.timeslice_us,
                    timeslice: t.timeslice,
                    interleave: t.interleave,
                    scheduled: t.scheduled,
                    channels: t
                        .chids
                        .iter()
                        .map(|&chid| ChannelRef { runlist, chid })
                        .collect(),
                    resident: resident == Some(tsgid),
                    stats: t.stats,
                })
            })
            .collect()
    }

    /// One TSG's info.
    pub fn tsg_info(&self, t: TsgRef) -> Result<TsgInfo, SimError> {
        self.tsgs()
            .into_iter()
            .find(|i| i.tsg == t)
            .ok_or(SimError::NoSuchTsg(t))
    }

    /// One TSG's accounting.
    pub fn tsg_stats(&self, t: TsgRef) -> Result<TsgStats, SimError> {
        Ok(self.tsg(t)?.stats)
    }

    /// Number of channels over all runlists.
    pub fn channel_count(&self) -> usize {
        self.runlists.iter().map(|r| r.channels.len()).sum()
    }

    /// Number of TSGs over all runlists.
    pub fn tsg_count(&self) -> usize {
        self.runlists.iter().map(|r| r.tsgs.len()).sum()
    }

    /// The work-submit token of a channel (`runlist << 16 | chid`).
    pub fn work_submit_token(&self, c: ChannelRef) -> Result<WorkSubmitToken, SimError> {
        self.rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?;
        Ok(WorkSubmitToken::new(c.runlist, c.chid))
    }

    /// Rings a doorbell: the named channel latches GP_PUT from its USERD and becomes PENDING.
    /// A GP_PUT outside the ring faults that channel.
    pub fn doorbell(&mut self, token: WorkSubmitToken) -> Result<(), SimError> {
        let runlist = token.runlist();
        let rl = self
            .runlists
            .get_mut(runlist as usize)
            .ok_or(SimError::BadToken(token.0))?;
        let mut w = World {
            pool: &mut self.pool,
            vaspaces: &self.vaspaces,
            timing: &self.timing,
        };
        rl.doorbell(token.chid(), &mut w)
            .map_err(|_| SimError::BadToken(token.0))
    }

    /// A channel's fault, if it faulted.
    pub fn channel_fault(&self, c: ChannelRef) -> Result<Option<ChannelFault>, SimError> {
        Ok(self
            .rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?
            .fault
            .clone())
    }

    /// True when a channel has nothing left to do: GP_GET has caught up with GP_PUT in USERD
    /// and no fetched work, acquire or engine work remains. A faulted channel counts as idle
    /// (its work is abandoned).
    pub fn channel_idle(&self, c: ChannelRef) -> Result<bool, SimError> {
        let ch = self
            .rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?;
        if ch.fault.is_some() {
            return Ok(true);
        }
        let put = ch.cfg.userd.read(&self.pool, super::userd::GP_PUT).ok();
        Ok(!ch.has_fetched_work() && put.is_none_or(|p| p == ch.gp_get))
    }

    /// A channel's counters.
    pub fn channel_stats(&self, c: ChannelRef) -> Result<ChannelStats, SimError> {
        Ok(self
            .rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?
            .stats)
    }

    /// The TSG a channel belongs to.
    pub fn channel_tsg(&self, c: ChannelRef) -> Result<TsgRef, SimError> {
        let tsgid = self
            .rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?
            .tsgid;
        Ok(TsgRef {
            runlist: c.runlist,
            tsgid,
        })
    }

    /// A channel's creation parameters.
    pub fn channel_config(&self, c: ChannelRef) -> Result<ChannelConfig, SimError> {
        Ok(self
            .rl(c.runlist)?
            .channels
            .get(&c.chid)
            .ok_or(SimError::NoSuchChannel(c))?
            .cfg)
    }

    // ---- hardware registers ---------------------------------------------------------------

    /// Reads `NV_CHRAM_CHANNEL(chid)` of a runlist.
    pub fn chram_read(&self, c: ChannelRef) -> Result<u32, SimError> {
        self.rl(c.runlist)?
            .chram
            .read(c.chid)
            .ok_or(SimError::NoSuchChannel(c))
    }

    /// Writes `NV_CHRAM_CHANNEL(chid)` with hardware semantics (enable/disable, reset faulted
    /// bits; clearing PBDMA_FAULTED/ENG_FAULTED also lets a faulted channel run again).
    pub fn chram_write(&mut self, c: ChannelRef, value: u32) -> Result<(), SimError> {
        let rl = self.rl_mut(c.runlist)?;
        if !rl.chram.write(c.chid, value) {
            return Err(SimError::NoSuchChannel(c));
        }
        let cleared = !rl.chram.has(c.chid, chram::PBDMA_FAULTED)
            && !rl.chram.has(c.chid, chram::ENG_FAULTED);
        if let Some(ch) = rl.channels.get_mut(&c.chid) {
            if cleared && ch.fault.is_some() {
                ch.fault = None;
            }
        }
        Ok(())
    }

    /// The owner's enable of one channel (`GPFIFO_SCHEDULE` on a channel, `DISABLE_CHANNELS`):
    /// written to channel RAM unless the host gates its TSG ([`SimGpu::gate_tsg`]); takes
    /// effect at the next TSG switch.
    pub fn set_channel_enabled(&mut self, c: ChannelRef, enable: bool) -> Result<(), SimError> {
        self.channel_mut(c)?.enabled = enable;
        self.write_enable(c)
    }

    /// Reads `NV_RUNLIST_PREEMPT` of a runlist.
    pub fn preempt_read(&self, runlist: u32) -> Result<u32, SimError> {
        Ok(self.rl(runlist)?.preempt.read())
    }

    /// Writes `NV_RUNLIST_PREEMPT` of a runlist.
    pub fn preempt_write(&mut self, runlist: u32, value: u32) -> Result<(), SimError> {
        Ok(self.rl_mut(runlist)?.write_preempt(value)?)
    }

    /// Requests preemption of a TSG (a TSG-type preempt register write).
    pub fn preempt_tsg(&mut self, t: TsgRef) -> Result<(), SimError> {
        self.tsg(t)?;
        self.preempt_write(t.runlist, PreemptRequest::Tsg(t.tsgid).encode())
    }

    /// True while a preemption is pending on the runlist.
    pub fn preempt_pending(&self, runlist: u32) -> Result<bool, SimError> {
        Ok(self.rl(runlist)?.preempt.pending().is_some())
    }

    /// Preempts a TSG and runs the GPU until the preemption completes (what `PREEMPT` with
    /// bWait does), for at most `timeout_ns` of GPU time and one call's host work budget.
    /// Returns the GPU time it took.
    pub fn preempt_tsg_and_wait(&mut self, t: TsgRef, timeout_ns: u64) -> Result<u64, SimError> {
        let limit = self.call_work_limit();
        self.preempt_tsg_and_wait_within(t, timeout_ns, limit)
    }

    /// [`SimGpu::preempt_tsg_and_wait`] bounded by an absolute host work limit (see
    /// [`SimGpu::wait_until`]), for callers that preempt several TSGs in one call.
    pub fn preempt_tsg_and_wait_within(
        &mut self,
        t: TsgRef,
        timeout_ns: u64,
        work_limit: u64,
    ) -> Result<u64, SimError> {
        let start = self.now_ns();
        self.preempt_tsg(t)?;
        let step = self.timing.sync_quantum_ns.min(1_000);
        let runlist = t.runlist;
        if self.wait_until(timeout_ns, step, work_limit, |g| {
            Ok(!g.preempt_pending(runlist)?)
        })? {
            Ok(self.now_ns() - start)
        } else {
            Err(SimError::PreemptTimeout(t))
        }
    }

    /// Reads `NV_RUNLIST_INTR_0` of a runlist.
    pub fn runlist_intr(&self, runlist: u32) -> Result<u32, SimError> {
        Ok(self.rl(runlist)?.intr)
    }

    /// Clears bits of `NV_RUNLIST_INTR_0` (write-one-to-clear).
    pub fn runlist_intr_clear(&mut self, runlist: u32, bits: u32) -> Result<(), SimError> {
        self.rl_mut(runlist)?.intr &= !bits;
        Ok(())
    }

    /// The runlist as last submitted (raw entries).
    pub fn runlist_entries(&self, runlist: u32) -> Result<Vec<RunlistEntry>, SimError> {
        Ok(self.rl(runlist)?.entries.clone())
    }

    /// Submits raw runlist entries (`NV_RUNLIST_SUBMIT`), bypassing the FIFO layer. The FIFO
    /// layer rebuilds and resubmits on its next TSG/channel change.
    pub fn submit_runlist(
        &mut self,
        runlist: u32,
        entries: Vec<RunlistEntry>,
    ) -> Result<(), SimError> {
        Ok(self.rl_mut(runlist)?.submit(entries)?)
    }

    /// The runlist as the hardware decoded it: one slot per TSG header, in walk order.
    pub fn runlist_slots(&self, runlist: u32) -> Result<Vec<RunlistSlot>, SimError> {
        Ok(self.rl(runlist)?.slots().to_vec())
    }

    /// TSG currently loaded on a runlist's engine.
    pub fn resident_tsg(&self, runlist: u32) -> Result<Option<TsgRef>, SimError> {
        Ok(self
            .rl(runlist)?
            .resident_tsg()
            .map(|tsgid| TsgRef { runlist, tsgid }))
    }

    /// A runlist's accounting.
    pub fn runlist_stats(&self, runlist: u32) -> Result<RunlistStats, SimError> {
        Ok(self.rl(runlist)?.stats)
    }
}
