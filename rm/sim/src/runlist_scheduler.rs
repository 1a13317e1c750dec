//! The hardware scheduler of one runlist: walks the submitted runlist, loads each eligible
//! TSG for its timeslice, lets the PBDMA and engine run its channels, and switches on
//! timeslice expiry (when another TSG waits), on a preempt register write, or when the TSG
//! runs out of work. Switches happen only at preemption points and cost a context save.
//!
//! Also the home of the runlist's hardware state: channel RAM, preempt register, interrupt
//! bits, channel contexts and per-TSG accounting.

use std::collections::BTreeMap;

use thiserror::Error;

use super::channel::Channel;
use super::chram::{self, ChannelRam};
use super::engine::{EngineInfo, ExecCtx};
use super::fault::{self, ChannelFault, FaultKind};
use super::memory::MemoryPool;
use super::pbdma::{self, StepOutcome};
use super::preempt::{PreemptRegister, PreemptRequest, INTR_BAD_TSG};
use super::runlist::{decode_runlist, RunlistEntry, RunlistError, RunlistSlot};
use super::timing::Timing;
use super::tsg::Tsg;
use super::vaspace::{VaSpace, VaSpaceId};

/// Per-runlist accounting, in GPU ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunlistStats {
    /// Time some TSG was resident.
    pub busy_ns: u64,
    /// Time nothing was resident.
    pub idle_ns: u64,
    /// Time spent saving contexts.
    pub ctxsw_ns: u64,
    /// TSG loads.
    pub switches: u64,
    /// Runlist submissions refused as malformed.
    pub bad_submits: u64,
    /// Resident time during which the host work budget was exhausted.
    pub budget_stall_ns: u64,
}

/// Why the resident TSG is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SwitchReason {
    Timeslice,
    Preempt,
    Idle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Resident {
    tsgid: u32,
    slice_len: u64,
    slice_start: u64,
    slice_end: u64,
    chid: Option<u32>,
    switch: Option<(SwitchReason, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EngineState {
    Idle,
    Resident(Resident),
    Saving {
        tsgid: u32,
        done_at: u64,
        reason: SwitchReason,
        requested_at: u64,
    },
}

/// Errors of hardware-level runlist operations.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RunlistOpError {
    /// The submitted runlist is malformed (`INTR_0_BAD_TSG` raised; old runlist kept).
    #[error(transparent)]
    BadRunlist(#[from] RunlistError),
    /// No channel with this id exists on the runlist.
    #[error("no channel {0}")]
    NoChannel(u32),
    /// The preempt register write was dropped (reserved TYPE, or a preemption already pending).
    #[error("preempt write {0:#x} dropped")]
    PreemptDropped(u32),
}

/// One runlist's hardware: scheduler, channel RAM, preempt register, channels and TSGs.
#[derive(Debug)]
pub(crate) struct RunlistScheduler {
    pub engine: EngineInfo,
    pub chram: ChannelRam,
    pub preempt: PreemptRegister,
    pub intr: u32,
    pub entries: Vec<RunlistEntry>,
    slots: Vec<RunlistSlot>,
    pub channels: BTreeMap<u32, Channel>,
    pub tsgs: BTreeMap<u32, Tsg>,
    state: EngineState,
    walk_pos: usize,
    pub now: u64,
    budget: u64,
    /// Host work units spent so far (methods, acquire polls, 1 KiB copy chunks).
    work_done: u64,
    pub stats: RunlistStats,
}

/// Borrowed world the scheduler runs against.
pub(crate) struct World<'a> {
    pub pool: &'a mut MemoryPool,
    pub vaspaces: &'a BTreeMap<VaSpaceId, VaSpace>,
    pub timing: &'a Timing,
}

impl RunlistScheduler {
    pub fn new(engine: EngineInfo) -> Self {
        Self {
            engine,
            chram: ChannelRam::new(),
            preempt: PreemptRegister::default(),
            intr: 0,
            entries: Vec::new(),
            slots: Vec::new(),
            channels: BTreeMap::new(),
            tsgs: BTreeMap::new(),
            state: EngineState::Idle,
            walk_pos: 0,
            now: 0,
            budget: 0,
            work_done: 0,
            stats: RunlistStats::default(),
        }
    }

    /// TSG currently loaded on the engine (resident or saving).
    pub fn resident_tsg(&self) -> Option<u32> {
        match self.state {
            EngineState::Idle => None,
            EngineState::Resident(r) => Some(r.tsgid),
            EngineState::Saving { tsgid, .. } => Some(tsgid),
        }
    }

    /// Refills the host work budget (start of a `run_until` call).
    pub fn refill_budget(&mut self, budget: u64) {
        self.budget = budget;
    }

    /// Host work units this runlist has spent since it was created.
    pub fn work_done(&self) -> u64 {
        self.work_done
    }

    fn spend(&mut self, units: u64) {
        self.budget = self.budget.saturating_sub(units);
        self.work_done = self.work_done.saturating_add(units);
    }

    /// Submits a new runlist (`NV_RUNLIST_SUBMIT`). A malformed one raises BAD_TSG and is ignored.
    pub fn submit(&mut self, entries: Vec<RunlistEntry>) -> Result<(), RunlistOpError> {
        let slots = match decode_runlist(&entries) {
            Ok(s) => s,
            Err(e) => {
                self.intr |= INTR_BAD_TSG;
                self.stats.bad_submits += 1;
                return Err(e.into());
            }
        };
        self.entries = entries;
        self.slots = slots;
        self.walk_pos = 0;
        if let EngineState::Resident(mut r) = self.state {
            match self.slots.iter().position(|s| s.tsgid == r.tsgid) {
                Some(i) => {
                    self.walk_pos = (i + 1) % self.slots.len();
                    // A new timeslice takes effect at once, measured from the slice's start.
                    r.slice_len = self.slots[i].timeslice.as_ns();
                    r.slice_end = r.slice_start.saturating_add(r.slice_len);
                }
                None if r.switch.is_none() => r.switch = Some((SwitchReason::Preempt, self.now)),
                None => {}
            }
            self.state = EngineState::Resident(r);
        }
        Ok(())
    }

    /// Decoded slots of the current runlist, in walk order.
    pub fn slots(&self) -> &[RunlistSlot] {
        &self.slots
    }

    /// A software write of `NV_RUNLIST_PREEMPT`.
    pub fn write_preempt(&mut self, value: u32) -> Result<(), RunlistOpError> {
        let req = self
            .preempt
            .write(value)
            .ok_or(RunlistOpError::PreemptDropped(value))?;
        let target = |tsgid: u32| {
            matches!(req, PreemptRequest::Runlist) || req == PreemptRequest::Tsg(tsgid)
        };
        match &mut self.state {
            EngineState::Resident(r) if target(r.tsgid) => {
                if r.switch.is_none_or(|(why, _)| why != SwitchReason::Preempt) {
                    r.switch = Some((SwitchReason::Preempt, self.now));
                }
            }
            // Completes when the save in progress finishes.
            EngineState::Saving { tsgid, .. } if target(*tsgid) => {}
            // Not loaded: nothing to preempt.
            _ => self.complete_preempt(),
        }
        Ok(())
    }

    fn complete_preempt(&mut self) {
        if let Some(req) = self.preempt.complete() {
            self.intr |= req.complete_bit();
        }
    }

    /// Rings a channel's doorbell: latch GP_PUT from USERD and mark the channel PENDING.
    pub fn doorbell(&mut self, chid: u32, w: &mut World<'_>) -> Result<(), RunlistOpError> {
        let ch = self
            .channels
            .get_mut(&chid)
            .ok_or(RunlistOpError::NoChannel(chid))?;
        if ch.fault.is_some() {
            return Ok(());
        }
        let ctx = ExecCtx {
            pool: w.pool,
            vaspaces: w.vaspaces,
            timing: w.timing,
            now: self.now,
        };
        match pbdma::latch_gp_put(ch, &ctx) {
            Ok(()) => {
                if ch.has_fetched_work() {
                    self.chram.hw_set(chid, chram::PENDING, true);
                }
            }
            Err(f) => self.fault(chid, f, w.pool),
        }
        Ok(())
    }

    /// The channel has something to do now.
    fn channel_has_work(
        &self,
        chid: u32,
        pool: &MemoryPool,
        vas: &BTreeMap<VaSpaceId, VaSpace>,
    ) -> bool {
        let Some(ch) = self.channels.get(&chid) else {
            return false;
        };
        if ch.fault.is_some() {
            return false;
        }
        if let Some(a) = ch.acquire {
            // A failing acquire that switches the TSG out leaves the channel waiting; an error
            // reading it surfaces (as a fault) once the channel runs.
            return !a.switch_tsg || pbdma::acquire_satisfied(&a, ch, pool, vas).unwrap_or(true);
        }
        ch.has_fetched_work() || self.chram.has(chid, chram::PENDING)
    }

    /// The channel may be picked: enabled in CHRAM, not faulted, has work.
    fn channel_runnable(
        &self,
        chid: u32,
        pool: &MemoryPool,
        vas: &BTreeMap<VaSpaceId, VaSpace>,
    ) -> bool {
        self.chram.has(chid, chram::ENABLE) && self.channel_has_work(chid, pool, vas)
    }

    fn slot_eligible(
        &self,
        slot: &RunlistSlot,
        pool: &MemoryPool,
        vas: &BTreeMap<VaSpaceId, VaSpace>,
    ) -> bool {
        slot.chids
            .iter()
            .any(|&c| self.channel_runnable(c, pool, vas))
    }

    fn tsg_eligible(
        &self,
        tsgid: u32,
        pool: &MemoryPool,
        vas: &BTreeMap<VaSpaceId, VaSpace>,
    ) -> bool {
        self.slots
            .iter()
            .find(|s| s.tsgid == tsgid)
            .is_some_and(|s| self.slot_eligible(s, pool, vas))
    }

    fn other_eligible(
        &self,
        tsgid: u32,
        pool: &MemoryPool,
        vas: &BTreeMap<VaSpaceId, VaSpace>,
    ) -> bool {
        self.slots
            .iter()
            .any(|s| s.tsgid != tsgid && self.slot_eligible(s, pool, vas))
    }

    /// True when the runlist has or could have work right now.
    pub fn active(&self, pool: &MemoryPool, vas: &BTreeMap<VaSpaceId, VaSpace>) -> bool {
        self.state != EngineState::Idle
            || self.slots.iter().any(|s| self.slot_eligible(s, pool, vas))
    }

    /// True when a channel of this runlist waits on a semaphore acquire (another runlist's
    /// release may wake it).
    pub fn has_waiters(&self) -> bool {
        self.channels.values().any(|c| c.acquire.is_some())
    }

    fn pick_next(&self, pool: &MemoryPool, vas: &BTreeMap<VaSpaceId, VaSpace>) -> Option<usize> {
        let n = self.slots.len();
        (0..n)
            .map(|k| (self.walk_pos + k) % n)
            .find(|&i| self.slot_eligible(&self.slots[i], pool, vas))
    }

    fn set_tsg_status(&mut self, tsgid: u32, mask: u32, on: bool) {
        if let Some(t) = self.tsgs.get(&tsgid) {
            for &c in &t.chids {
                self.chram.hw_set(c, mask, on);
            }
        }
    }

    fn load(&mut self, idx: usize) {
        let slot = &self.slots[idx];
        let len = slot.timeslice.as_ns();
        let tsgid = slot.tsgid;
        self.state = EngineState::Resident(Resident {
            tsgid,
            slice_len: len,
            slice_start: self.now,
            slice_end: self.now.saturating_add(len),
            chid: None,
            switch: None,
        });
        self.walk_pos = (idx + 1) % self.slots.len();
        self.stats.switches += 1;
        if let Some(t) = self.tsgs.get_mut(&tsgid) {
            t.stats.switches_in += 1;
        }
        self.set_tsg_status(tsgid, chram::BUSY | chram::ON_ENG, true);
    }

    fn begin_save(&mut self, r: &Resident, reason: SwitchReason, requested_at: u64, ctxsw_ns: u64) {
        if let Some(c) = r.chid {
            self.chram.hw_set(
                c,
                chram::ON_PBDMA | chram::PBDMA_BUSY | chram::ENG_BUSY,
                false,
            );
        }
        if let Some(t) = self.tsgs.get_mut(&r.tsgid) {
            match reason {
                SwitchReason::Timeslice => t.stats.timeslice_expirations += 1,
                SwitchReason::Preempt => t.stats.preemptions += 1,
                SwitchReason::Idle => t.stats.idle_switches += 1,
            }
        }
        self.state = EngineState::Saving {
            tsgid: r.tsgid,
            done_at: self.now.saturating_add(ctxsw_ns),
            reason,
            requested_at,
        };
    }

    fn finish_save(&mut self, tsgid: u32, reason: SwitchReason, requested_at: u64) {
        self.set_tsg_status(tsgid, chram::BUSY | chram::ON_ENG, false);
        if reason != SwitchReason::Idle {
            if let Some(t) = self.tsgs.get_mut(&tsgid) {
                t.stats.preempt_latency_ns += self.now - requested_at;
            }
        }
        self.state = EngineState::Idle;
        let done = match self.preempt.pending() {
            Some(PreemptRequest::Runlist) => true,
            Some(PreemptRequest::Tsg(id)) => id == tsgid,
            None => false,
        };
        if done {
            self.complete_preempt();
        }
    }

    /// Stops a channel on a fault: records it, sets PBDMA_FAULTED or ENG_FAULTED, writes the
    /// error notifier. Other channels are untouched.
    pub fn fault(&mut self, chid: u32, kind: FaultKind, pool: &mut MemoryPool) {
        let rc_error = match kind {
            FaultKind::PbdmaMmu(_) | FaultKind::EngineMmu(_) => {
                fault::ROBUST_CHANNEL_FIFO_ERROR_MMU_ERR_FLT
            }
            ref k if k.is_pbdma() => fault::ROBUST_CHANNEL_PBDMA_ERROR,
            _ => self.engine.engine_rc_error(),
        };
        let bit = if kind.is_pbdma() {
            chram::PBDMA_FAULTED
        } else {
            chram::ENG_FAULTED
        };
        let Some(ch) = self.channels.get_mut(&chid) else {
            return;
        };
        tracing::warn!(runlist = self.engine.runlist, chid, %kind, "sim channel fault");
        let f = ChannelFault {
            kind,
            at_ns: self.now,
            rc_error,
        };
        if let Some(n) = ch.cfg.error_notifier {
            n.write(pool, &f, self.engine.nv2080_engine_type);
        }
        ch.fault = Some(f);
        ch.work = None;
        ch.acquire = None;
        ch.method = None;
        ch.seg.clear();
        let tsgid = ch.tsgid;
        self.chram.hw_set(chid, bit, true);
        self.chram
            .hw_set(chid, chram::PENDING | chram::ACQUIRE_FAIL, false);
        if let Some(t) = self.tsgs.get_mut(&tsgid) {
            t.stats.faults += 1;
        }
    }

    /// Forgets a channel (freed); the caller resubmits the runlist.
    pub fn remove_channel(&mut self, chid: u32) {
        if let EngineState::Resident(r) = &mut self.state {
            if r.chid == Some(chid) {
                r.chid = None;
            }
        }
        self.channels.remove(&chid);
        self.chram.reset(chid);
    }

    fn charge(&mut self, tsgid: u32, ns: u64) {
        self.stats.busy_ns += ns;
        if let Some(t) = self.tsgs.get_mut(&tsgid) {
            t.stats.engine_time_ns += ns;
        }
    }

    /// Runs the runlist until GPU time `until`.
    pub fn run(&mut self, until: u64, w: &mut World<'_>) {
        while self.now < until {
            match self.state {
                EngineState::Saving {
                    tsgid,
                    done_at,
                    reason,
                    requested_at,
                } => {
                    let t = done_at.min(until);
                    let dt = t - self.now;
                    self.stats.ctxsw_ns += dt;
                    if let Some(tsg) = self.tsgs.get_mut(&tsgid) {
                        tsg.stats.ctxsw_ns += dt;
                    }
                    self.now = t;
                    if t == done_at {
                        self.finish_save(tsgid, reason, requested_at);
                    }
                }
                EngineState::Idle => match self.pick_next(w.pool, w.vaspaces) {
                    Some(i) => self.load(i),
                    None => {
                        self.stats.idle_ns += until - self.now;
                        self.now = until;
                    }
                },
                EngineState::Resident(r) => self.run_resident(r, until, w),
            }
        }
    }

    /// Runs the resident TSG until `until` or until the engine state changes.
    fn run_resident(&mut self, mut r: Resident, until: u64, w: &mut World<'_>) {
        let timing = *w.timing;
        loop {
            if self.now >= until {
                self.state = EngineState::Resident(r);
                return;
            }
            if let Some((reason, at)) = r.switch {
                let to_pp = r
                    .chid
                    .and_then(|c| self.channels.get(&c))
                    .and_then(|ch| ch.work.as_ref())
                    .map_or(0, |work| work.ns_to_preemption_point(&timing));
                if to_pp == 0 {
                    self.begin_save(&r, reason, at, timing.ctxsw_ns);
                    return;
                }
            } else if self.now >= r.slice_end {
                let others = self.other_eligible(r.tsgid, w.pool, w.vaspaces);
                let still = self.tsg_eligible(r.tsgid, w.pool, w.vaspaces);
                if others || !still {
                    let why = if still {
                        SwitchReason::Timeslice
                    } else {
                        SwitchReason::Idle
                    };
                    r.switch = Some((why, self.now));
                    continue;
                }
                r.slice_start = self.now;
                r.slice_end = self.now.saturating_add(r.slice_len);
            }
            // Keep the loaded channel while it has work (even if disabled meanwhile: disabling
            // takes effect at the next switch, which is why RM preempts after disabling).
            let current = r
                .chid
                .filter(|&c| self.channel_has_work(c, w.pool, w.vaspaces));
            let chid = match current {
                Some(c) => c,
                None => {
                    if let Some(old) = r.chid.take() {
                        self.chram
                            .hw_set(old, chram::ON_PBDMA | chram::PBDMA_BUSY, false);
                    }
                    match self.next_channel(&r, w) {
                        Some(c) => {
                            self.chram.hw_set(c, chram::ON_PBDMA, true);
                            r.chid = Some(c);
                            c
                        }
                        None => {
                            if r.switch.is_none() {
                                r.switch = Some((SwitchReason::Idle, self.now));
                            }
                            continue;
                        }
                    }
                }
            };
            let limit = if r.switch.is_some() {
                until
            } else {
                until.min(r.slice_end)
            };
            self.run_channel(&mut r, chid, limit, w);
        }
    }

    fn next_channel(&self, r: &Resident, w: &World<'_>) -> Option<u32> {
        let chids = &self.slots.iter().find(|s| s.tsgid == r.tsgid)?.chids;
        chids
            .iter()
            .copied()
            .find(|&c| self.channel_runnable(c, w.pool, w.vaspaces))
    }

    /// Executes on one channel until `limit`, or until it blocks, empties, faults or yields.
    fn run_channel(&mut self, r: &mut Resident, chid: u32, limit: u64, w: &mut World<'_>) {
        let timing = *w.timing;
        let tsgid = r.tsgid;
        while self.now < limit {
            if self.budget == 0 {
                let dt = limit - self.now;
                self.now = limit;
                self.charge(tsgid, dt);
                self.stats.budget_stall_ns += dt;
                return;
            }
            let Some(ch) = self.channels.get_mut(&chid) else {
                return;
            };
            let mut ctx = ExecCtx {
                pool: w.pool,
                vaspaces: w.vaspaces,
                timing: &timing,
                now: self.now,
            };
            if let Some(work) = ch.work.as_mut() {
                let mut max = limit - self.now;
                if r.switch.is_some() {
                    max = max.min(work.ns_to_preemption_point(&timing));
                    if max == 0 {
                        return;
                    }
                }
                match work.run(&mut ctx, max) {
                    Ok(p) => {
                        if p.finished {
                            ch.work = None;
                            if p.released {
                                ch.stats.semaphore_releases += 1;
                            }
                        }
                        self.spend(p.units);
                        self.now += p.used_ns;
                        self.charge(tsgid, p.used_ns);
                        if let Some(t) = self.tsgs.get_mut(&tsgid) {
                            t.stats.compute_work_ns += p.compute_ns;
                            t.stats.copy_bytes += p.copy_bytes;
                        }
                    }
                    Err(f) => {
                        self.fault(chid, f, w.pool);
                        return;
                    }
                }
                continue;
            }
            if let Some(acq) = ch.acquire {
                match pbdma::acquire_satisfied(&acq, ch, ctx.pool, ctx.vaspaces) {
                    Ok(true) => {
                        ch.acquire = None;
                        self.chram.hw_set(chid, chram::ACQUIRE_FAIL, false);
                        continue;
                    }
                    Ok(false) => {
                        self.chram.hw_set(chid, chram::ACQUIRE_FAIL, true);
                        if acq.switch_tsg {
                            return;
                        }
                        let dt = timing.acquire_poll_ns.min(limit - self.now);
                        self.spend(1);
                        self.now += dt;
                        self.charge(tsgid, dt);
                        continue;
                    }
                    Err(f) => {
                        self.fault(chid, f, w.pool);
                        return;
                    }
                }
            }
            if r.switch.is_some() {
                return;
            }
            let methods_before = ch.stats.methods;
            let outcome = pbdma::step(ch, &self.engine, &mut ctx);
            let methods = ch.stats.methods - methods_before;
            self.spend(1);
            self.now += timing.method_ns;
            self.charge(tsgid, timing.method_ns);
            if let Some(t) = self.tsgs.get_mut(&tsgid) {
                t.stats.methods += methods;
            }
            match outcome {
                StepOutcome::Progress => {}
                StepOutcome::Empty => {
                    self.chram.hw_set(chid, chram::PENDING, false);
                    return;
                }
                StepOutcome::Yield => {
                    r.switch = Some((SwitchReason::Idle, self.now));
                    return;
                }
                StepOutcome::Fault(f) => {
                    self.fault(chid, f, w.pool);
                    return;
                }
            }
        }
    }
}
