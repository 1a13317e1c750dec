//! The scheduler: carries the planner's decisions out through a [`Mechanism`], choosing how from
//! the mechanism's capabilities.
//!
//! * **Timeslice method** (backend honours per-group timeslices and reports run time): every
//!   balance period the planner's window plan becomes per-group timeslices, the backend's own
//!   round robin does the switching, and measured run time feeds the credits back (so rounding
//!   and switch costs are corrected in the next window).
//! * **Gating method** (backend only honours channel enable/disable, as a GSP-era GPU): the
//!   scheduler is the runlist. Each decision enables one tenant's channel set and disables and
//!   preempts the previous one; switch time is measured and excluded from everyone's account.
//!   Needed too wherever a policy must leave time idle (fixed share, equal share, max caps),
//!   which a round robin cannot do.
//!
//! Dropping the scheduler (or [`Scheduler::release`]) re-enables every channel it gated.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::log::{
    Record, ReloadRecord, SchedLog, SliceRecord, StartRecord, TenantShare, WindowRecord,
};
use crate::mechanism::{Capabilities, GroupRef, Mechanism, MechanismError};
use crate::policy::{Planner, Slot, Turn};
use crate::policy_file::{Policy, MIN_TIMESLICE};

/// How the scheduler enforces shares on a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Program per-group timeslices; the backend's round robin switches.
    Timeslice,
    /// Enable one tenant's channel set at a time (a software runlist).
    Gating,
}

impl Method {
    /// Name used in logs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Timeslice => "timeslice",
            Self::Gating => "gating",
        }
    }

    /// Parses `timeslice` or `gating`.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "timeslice" => Some(Self::Timeslice),
            "gating" => Some(Self::Gating),
            _ => None,
        }
    }
}

/// Why the scheduler cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// No combination of effective levers can enforce the policy.
    #[error("the backend offers no effective lever for policy {policy} (capabilities: {caps:?})")]
    NoEffectiveLever {
        /// Policy name.
        policy: &'static str,
        /// What the backend offers.
        caps: Capabilities,
    },
    /// A forced method needs a lever the backend does not have.
    #[error("method {method} needs levers this backend does not have ({caps:?})")]
    MethodUnavailable {
        /// The method asked for.
        method: &'static str,
        /// What the backend offers.
        caps: Capabilities,
    },
    /// A lever failed.
    #[error(transparent)]
    Mechanism(#[from] MechanismError),
}

/// Picks the method from the backend's effective levers and what the policy needs.
///
/// Timeslices suffice for a work-conserving policy without caps when the backend honours them
/// and reports run time; anything that must leave time idle, or a backend whose timeslice lever
/// is inert, needs channel gating.
pub fn choose_method(caps: Capabilities, policy: &Policy) -> Result<Method, SchedError> {
    let needs_idle =
        !policy.kind.work_conserving() || policy.tenants.iter().any(|t| t.max_share < 1.0);
    let can_slice = caps.timeslice && caps.run_time_stats && caps.busy_query;
    let can_gate = caps.channel_gate && caps.busy_query;
    if can_slice && !needs_idle {
        Ok(Method::Timeslice)
    } else if can_gate {
        Ok(Method::Gating)
    } else {
        Err(SchedError::NoEffectiveLever {
            policy: policy.kind.name(),
            caps,
        })
    }
}

/// Fraction of GPU time the gating method may spend switching: turns are stretched so that
/// the measured switch time stays below it.
pub const SWITCH_OVERHEAD_BUDGET: f64 = 0.025;

/// Longest the timeslice method lets the GPU run between reading statistics.
const TIMESLICE_CHUNK: Duration = Duration::from_millis(10);

/// How long a reloaded policy took to make its first decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadLatency {
    /// GPU time (the mechanism's clock): lever calls the switch-over made.
    pub gpu: Duration,
    /// Host time: the same calls plus the scheduler's own work (on a simulated GPU whose
    /// levers take no GPU time, only this shows the cost).
    pub host: Duration,
}

/// A vGPU instance a daemon serves. Its channel groups belong to the policy tenant that lists
/// its UUID in `vgpus` or its GFID in `gfids`, or else to the tenant named `tenant`; an instance
/// no tenant claims is not scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundInstance {
    /// Instance UUID (lower-case, hyphenated).
    pub uuid: String,
    /// Its GFID.
    pub gfid: u32,
    /// The policy tenant it names.
    pub tenant: String,
}

/// Drives a mechanism with a policy.
pub struct Scheduler<M: Mechanism> {
    mech: M,
    planner: Planner,
    method: Method,
    forced: Option<Method>,
    vgpu_gfids: HashMap<String, u32>,
    /// GFID -> tenant name, from [`BoundInstance`]s.
    named: HashMap<u32, String>,
    /// The last balance window closed.
    last_window: Option<WindowRecord>,
    /// Per tenant, its channel groups.
    groups: Vec<Vec<GroupRef>>,
    runlists: Vec<u32>,
    /// Last cumulative run time read per group.
    group_seen: HashMap<GroupRef, Duration>,
    /// Per tenant and runlist: cumulative run time and preemption time since start.
    run_total: HashMap<(String, u32), Duration>,
    preempt_total: HashMap<(String, u32), Duration>,
    /// Cumulative run time per tenant (policy order), all runlists.
    tenant_total: Vec<Duration>,
    /// Gating: the tenant whose channels are enabled.
    current: Option<usize>,
    window_start: Duration,
    window_run: Vec<Duration>,
    window_switch: Duration,
    switch_total: Duration,
    /// Moving average of one gating switch's cost, ns.
    switch_avg: Option<f64>,
    busy: Vec<bool>,
    programmed: bool,
    pending: Option<Policy>,
    /// GPU and host time the queued policy was handed over.
    pending_since: Option<(Duration, Instant)>,
    /// The policy that took over last: when it was handed over, until its first decision.
    awaiting_decision: Option<(Duration, Instant)>,
    reload_latency: Option<ReloadLatency>,
    log: SchedLog,
    released: bool,
}

impl<M: Mechanism> std::fmt::Debug for Scheduler<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl<M: Mechanism> Scheduler<M> {
    /// Starts scheduling `mech` under `policy`; `forced` overrides the method choice (still
    /// checked against the capabilities). vGPU UUIDs in the policy are resolved to GFIDs with
    /// `vgpu_gfids`.
    pub fn new(
        mech: M,
        policy: Policy,
        forced: Option<Method>,
        vgpu_gfids: HashMap<String, u32>,
    ) -> Result<Self, SchedError> {
        let method = pick(mech.capabilities(), &policy, forced)?;
        let n = policy.tenants.len();
        let mut s = Self {
            mech,
            planner: Planner::new(policy),
            method,
            forced,
            vgpu_gfids,
            named: HashMap::new(),
            last_window: None,
            groups: vec![Vec::new(); n],
            runlists: Vec::new(),
            group_seen: HashMap::new(),
            run_total: HashMap::new(),
            preempt_total: HashMap::new(),
            tenant_total: vec![Duration::ZERO; n],
            current: None,
            window_start: Duration::ZERO,
            window_run: vec![Duration::ZERO; n],
            window_switch: Duration::ZERO,
            switch_total: Duration::ZERO,
            switch_avg: None,
            busy: vec![false; n],
            programmed: false,
            pending: None,
            pending_since: None,
            awaiting_decision: None,
            reload_latency: None,
            log: SchedLog::default(),
            released: false,
        };
        s.start()?;
        Ok(s)
    }

    /// The method in use.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        self.planner.policy()
    }

    /// The planner (targets, credits).
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The mechanism.
    pub fn mechanism(&self) -> &M {
        &self.mech
    }

    /// The mechanism, mutably (e.g. to add work in a simulation).
    pub fn mechanism_mut(&mut self) -> &mut M {
        &mut self.mech
    }

    /// The log so far.
    pub fn log(&self) -> &SchedLog {
        &self.log
    }

    /// Takes the records logged so far (see [`SchedLog::drain`]).
    pub fn take_log(&mut self) -> SchedLog {
        SchedLog {
            records: self.log.drain(),
        }
    }

    /// Replaces the instances the scheduler places (see [`BoundInstance`]); their channel
    /// groups join or leave their tenants at the next balance window, or at once with
    /// [`Scheduler::regroup`].
    pub fn set_instances(&mut self, instances: &[BoundInstance]) {
        self.vgpu_gfids = instances.iter().map(|i| (i.uuid.clone(), i.gfid)).collect();
        self.named = instances
            .iter()
            .map(|i| (i.gfid, i.tenant.clone()))
            .collect();
    }

    /// Closes the balance window early and finds every tenant's channel groups again: after
    /// instances were bound or groups vanished (a guest freed them, a VM went away), so that no
    /// lever is pulled on a group that is gone.
    pub fn regroup(&mut self) -> Result<(), SchedError> {
        self.close_window()
    }

    /// The shares of the last balance window closed.
    pub fn last_window(&self) -> Option<&WindowRecord> {
        self.last_window.as_ref()
    }

    /// Engine time each tenant has had since the policy in force took effect.
    pub fn tenant_run_times(&self) -> &[Duration] {
        &self.tenant_total
    }

    /// Total time lost to switching (gating method).
    pub fn switch_time(&self) -> Duration {
        self.switch_total
    }

    /// Queues a new policy; it takes effect at the next decision (gating) or the next
    /// reprogramming (timeslice), both within one balance period. Running work is not touched:
    /// no channel is torn down and no group is preempted because of the reload.
    pub fn apply_policy(&mut self, policy: Policy) {
        self.pending = Some(policy);
        self.pending_since = Some((self.mech.now(), Instant::now()));
    }

    /// For the last policy that took over: from [`apply_policy`](Self::apply_policy) to the
    /// first decision carried out under it (gating: the chosen tenant's channels enabled;
    /// timeslice: the new timeslices programmed). None before that decision.
    pub fn reload_latency(&self) -> Option<ReloadLatency> {
        self.reload_latency
    }

    /// Marks a decision carried out: the first under a new policy gives the reload latency.
    fn decided(&mut self) {
        if let Some((gpu, host)) = self.awaiting_decision.take() {
            self.reload_latency = Some(ReloadLatency {
                gpu: self.mech.now().saturating_sub(gpu),
                host: host.elapsed(),
            });
        }
    }

    /// Records a reload attempt that failed; the policy in force stays.
    pub fn note_rejected_reload(&mut self, why: &str) {
        tracing::warn!("policy reload refused, keeping the old policy: {why}");
        self.log.push(Record::Reload(ReloadRecord {
            timestamp_ns: nanos(self.mech.now()),
            applied: false,
            message: why.to_string(),
        }));
    }

    /// Runs the schedule until GPU time `until`.
    pub fn run_until(&mut self, until: Duration) -> Result<(), SchedError> {
        while self.mech.now() < until {
            self.step(until)?;
        }
        Ok(())
    }

    /// Runs the schedule for `d` of GPU time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SchedError> {
        let until = self.mech.now() + d;
        self.run_until(until)
    }

    /// Re-enables every channel group the scheduler knows (the way back from gating).
    pub fn release(&mut self) -> Result<(), SchedError> {
        let all: Vec<GroupRef> = self.groups.iter().flatten().copied().collect();
        if !all.is_empty() && self.mech.capabilities().channel_gate {
            self.mech.set_enabled(&all, true)?;
        }
        self.released = true;
        Ok(())
    }

    fn start(&mut self) -> Result<(), SchedError> {
        self.discover()?;
        let now = self.mech.now();
        let p = self.planner.policy();
        self.log.push(Record::Start(StartRecord {
            timestamp_ns: nanos(now),
            policy: p.kind.name().to_string(),
            method: self.method.name().to_string(),
            tenants: p.tenants.iter().map(|t| t.name.clone()).collect(),
            runlists: self.runlists.clone(),
        }));
        tracing::info!("scheduling with {} by {}", p, self.method.name());
        let all: Vec<GroupRef> = self.groups.iter().flatten().copied().collect();
        match self.method {
            Method::Gating => {
                if !all.is_empty() {
                    self.mech.set_enabled(&all, false)?;
                    if self.mech.capabilities().preempt {
                        self.mech.preempt(&all)?;
                    }
                }
                self.current = None;
            }
            Method::Timeslice => {
                if !all.is_empty() && self.mech.capabilities().channel_gate {
                    self.mech.set_enabled(&all, true)?;
                }
            }
        }
        self.window_start = self.mech.now();
        self.programmed = false;
        Ok(())
    }

    /// Finds the channel groups of every tenant.
    fn discover(&mut self) -> Result<(), SchedError> {
        let infos = self.mech.groups()?;
        let policy = self.planner.policy();
        let mut groups = vec![Vec::new(); policy.tenants.len()];
        let mut runlists = BTreeSet::new();
        for info in infos {
            let owner = policy
                .tenants
                .iter()
                .position(|t| {
                    t.gfids.contains(&info.gfid)
                        || t.vgpus
                            .iter()
                            .any(|u| self.vgpu_gfids.get(u) == Some(&info.gfid))
                })
                .or_else(|| {
                    let name = self.named.get(&info.gfid)?;
                    policy.tenants.iter().position(|t| &t.name == name)
                });
            if let Some(i) = owner {
                groups[i].push(info.group);
                runlists.insert(info.group.runlist);
                self.group_seen
                    .entry(info.group)
                    .or_insert(self.mech.run_time(info.group)?);
            }
        }
        let attached: Vec<bool> = groups.iter().map(|g| !g.is_empty()).collect();
        self.groups = groups;
        self.runlists = runlists.into_iter().collect();
        self.planner.set_attached(&attached);
        Ok(())
    }

    fn step(&mut self, until: Duration) -> Result<(), SchedError> {
        if let Some(p) = self.pending.take() {
            self.take_policy(p)?;
        }
        let period = self.planner.policy().balance_period;
        if self.mech.now() >= self.window_start + period {
            self.close_window()?;
        }
        self.refresh_busy()?;
        match self.method {
            Method::Gating => self.gating_step(until),
            Method::Timeslice => self.timeslice_step(until),
        }
    }

    fn take_policy(&mut self, policy: Policy) -> Result<(), SchedError> {
        let since = self.pending_since.take();
        self.reload_latency = None;
        let method = match pick(self.mech.capabilities(), &policy, self.forced) {
            Ok(m) => m,
            Err(e) => {
                self.note_rejected_reload(&e.to_string());
                return Ok(());
            }
        };
        self.close_window()?;
        let summary = policy.to_string();
        let n = policy.tenants.len();
        // Leave the previous method's state behind cleanly: all channels enabled; the new
        // method's start gates them again if it needs to.
        self.current = None;
        self.release()?;
        self.released = false;
        self.planner = Planner::new(policy);
        if let Some(avg) = self.switch_avg {
            self.planner
                .set_min_slice(Duration::from_nanos((avg / SWITCH_OVERHEAD_BUDGET) as u64));
        }
        self.method = method;
        self.tenant_total = vec![Duration::ZERO; n];
        self.window_run = vec![Duration::ZERO; n];
        self.busy = vec![false; n];
        self.awaiting_decision = since;
        self.log.push(Record::Reload(ReloadRecord {
            timestamp_ns: nanos(self.mech.now()),
            applied: true,
            message: summary,
        }));
        self.start()
    }

    fn refresh_busy(&mut self) -> Result<(), SchedError> {
        for i in 0..self.groups.len() {
            let mut b = false;
            for &g in &self.groups[i] {
                if self.mech.busy(g)? {
                    b = true;
                    break;
                }
            }
            self.busy[i] = b;
        }
        self.planner.set_busy(&self.busy.clone());
        Ok(())
    }

    /// Reads run-time deltas since the last call: per tenant and runlist.
    fn collect_runs(&mut self) -> Result<Vec<Vec<(u32, Duration)>>, SchedError> {
        let mut out = vec![Vec::new(); self.groups.len()];
        for (i, gs) in self.groups.iter().enumerate() {
            for &g in gs {
                let total = self.mech.run_time(g)?;
                let seen = self.group_seen.insert(g, total).unwrap_or(total);
                let delta = total.saturating_sub(seen);
                if delta > Duration::ZERO {
                    match out[i].iter_mut().find(|(r, _)| *r == g.runlist) {
                        Some((_, d)) => *d += delta,
                        None => out[i].push((g.runlist, delta)),
                    }
                }
            }
        }
        Ok(out)
    }

    /// Charges measured runs, updates totals and writes slice records starting at `start`.
    fn account(
        &mut self,
        runs: &[Vec<(u32, Duration)>],
        start: Duration,
        targets: &[Duration],
        extra: Option<(Slot, Duration)>,
    ) {
        let mut charges: Vec<(Slot, Duration)> = Vec::new();
        let mut cursor: HashMap<u32, Duration> = HashMap::new();
        for (i, per_rl) in runs.iter().enumerate() {
            let name = self.planner.policy().tenants[i].name.clone();
            let mut sum = Duration::ZERO;
            for &(rl, d) in per_rl {
                sum += d;
                let key = (name.clone(), rl);
                let total = self.run_total.entry(key.clone()).or_default();
                *total += d;
                let at = cursor.entry(rl).or_insert(start);
                self.log.push(Record::Slice(SliceRecord {
                    timestamp_ns: nanos(*at),
                    tenant: name.clone(),
                    runlist: rl,
                    time_run_ns: nanos(d),
                    time_run_total_ns: nanos(*total),
                    target_slice_ns: nanos(targets[i]),
                    cumulative_preemption_ns: nanos(
                        self.preempt_total.get(&key).copied().unwrap_or_default(),
                    ),
                }));
                *at += d;
            }
            if sum > Duration::ZERO {
                charges.push((Slot::Tenant(i), sum));
                self.tenant_total[i] += sum;
                self.window_run[i] += sum;
            }
        }
        if let Some(e) = extra {
            charges.push(e);
        }
        self.planner.settle(&charges);
    }

    fn gating_step(&mut self, until: Duration) -> Result<(), SchedError> {
        let caps = self.mech.capabilities();
        let decision = self.planner.decide();
        let next = match decision.turn {
            Turn::Run(i) => Some(i),
            Turn::Idle => None,
        };
        let t0 = self.mech.now();
        if next != self.current && !(next.is_none() && decision.charge.is_none()) {
            if let Some(c) = self.current {
                let gs = self.groups[c].clone();
                self.mech.set_enabled(&gs, false)?;
                if caps.preempt {
                    let p0 = self.mech.now();
                    self.mech.preempt(&gs)?;
                    let took = self.mech.now() - p0;
                    let name = self.planner.policy().tenants[c].name.clone();
                    for rl in gs.iter().map(|g| g.runlist).collect::<BTreeSet<_>>() {
                        *self.preempt_total.entry((name.clone(), rl)).or_default() += took;
                    }
                }
            }
            if let Some(n) = next {
                let gs = self.groups[n].clone();
                self.mech.set_enabled(&gs, true)?;
            }
            self.current = next;
        }
        let t1 = self.mech.now();
        self.decided();
        let switch = t1 - t0;
        self.switch_total += switch;
        self.window_switch += switch;
        if next.is_some() && switch > Duration::ZERO {
            let sample = switch.as_nanos() as f64;
            let avg = self.switch_avg.map_or(sample, |a| 0.8 * a + 0.2 * sample);
            self.switch_avg = Some(avg);
            self.planner
                .set_min_slice(Duration::from_nanos((avg / SWITCH_OVERHEAD_BUDGET) as u64));
        }
        // Nobody has work: poll briefly instead of sleeping a whole slice.
        let slice = if decision.charge.is_none() {
            (decision.slice / 4).max(MIN_TIMESLICE)
        } else {
            decision.slice
        };
        let deadline = (t1 + slice).min(until.max(t1 + MIN_TIMESLICE));
        let watch = match next {
            Some(n) => self.groups[n].clone(),
            None => Vec::new(),
        };
        let t2 = self.mech.run_until(deadline, &watch)?;
        let runs = self.collect_runs()?;
        let mut targets = vec![Duration::ZERO; self.groups.len()];
        if let Some(n) = next {
            targets[n] = decision.slice;
        }
        let extra = match (decision.turn, decision.charge) {
            (Turn::Idle, Some(slot)) => Some((slot, t2 - t1)),
            _ => None,
        };
        self.account(&runs, t0, &targets, extra);
        Ok(())
    }

    fn timeslice_step(&mut self, until: Duration) -> Result<(), SchedError> {
        let policy = self.planner.policy().clone();
        if !self.programmed {
            self.program_timeslices(&policy)?;
            self.programmed = true;
            self.decided();
        }
        let t0 = self.mech.now();
        let window_end = self.window_start + policy.balance_period;
        let deadline = (t0 + TIMESLICE_CHUNK)
            .min(window_end)
            .min(until.max(t0 + MIN_TIMESLICE));
        let deadline = deadline.max(t0 + MIN_TIMESLICE);
        let before = self.busy.clone();
        self.mech.run_until(deadline, &[])?;
        let runs = self.collect_runs()?;
        let targets: Vec<Duration> = (0..policy.tenants.len())
            .map(|i| {
                Duration::from_nanos(
                    (self.planner.targets().tenants[i] * (deadline - t0).as_nanos() as f64) as u64,
                )
            })
            .collect();
        self.account(&runs, t0, &targets, None);
        self.refresh_busy()?;
        if self.busy != before {
            // Who competes changed: reprogram now rather than at the window's end.
            self.programmed = false;
        }
        Ok(())
    }

    /// Turns the window plan into per-group timeslices: over one round robin pass each busy
    /// tenant gets time in proportion to its plan, and the tenant with the most time per plan
    /// unit gets exactly its own timeslice, so no tenant holds the engine longer than its
    /// timeslice at once (shorter passes keep shares even over short windows).
    fn program_timeslices(&mut self, policy: &Policy) -> Result<(), SchedError> {
        let plan = self.planner.window_plan(policy.balance_period);
        let busy: Vec<usize> = (0..plan.len())
            .filter(|&i| self.busy[i] && !self.groups[i].is_empty())
            .collect();
        // Largest scale at which every busy tenant's slice stays within its own timeslice.
        let scale = busy
            .iter()
            .filter(|&&i| !plan[i].is_zero())
            .map(|&i| policy.timeslice_of(i).as_nanos() as f64 / plan[i].as_nanos() as f64)
            .fold(f64::INFINITY, f64::min);
        let scale = if scale.is_finite() { scale } else { 0.0 };
        let caps = self.mech.capabilities();
        for (i, planned_i) in plan.iter().enumerate() {
            // A busy tenant whose debt exceeds its plan gets the shortest slice (the clamp below).
            let per_tenant = if busy.contains(&i) {
                scale * planned_i.as_nanos() as f64
            } else {
                policy.timeslice_of(i).as_nanos() as f64
            };
            let gs = self.groups[i].clone();
            for rl in gs.iter().map(|g| g.runlist).collect::<BTreeSet<_>>() {
                let on_rl: Vec<GroupRef> = gs.iter().copied().filter(|g| g.runlist == rl).collect();
                let each = Duration::from_nanos((per_tenant / on_rl.len() as f64) as u64)
                    .clamp(MIN_TIMESLICE, Duration::from_secs(1));
                for g in on_rl {
                    self.mech.set_timeslice(g, each)?;
                    if caps.interleave {
                        self.mech.set_interleave(g, policy.tenants[i].priority)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn close_window(&mut self) -> Result<(), SchedError> {
        let now = self.mech.now();
        let total: Duration = self.window_run.iter().sum();
        let policy = self.planner.policy();
        let tenants = policy
            .tenants
            .iter()
            .enumerate()
            .map(|(i, t)| TenantShare {
                tenant: t.name.clone(),
                time_run_ns: nanos(self.window_run[i]),
                share: if total.is_zero() {
                    0.0
                } else {
                    self.window_run[i].as_secs_f64() / total.as_secs_f64()
                },
                target: self.planner.targets().tenants[i],
            })
            .collect();
        if now > self.window_start {
            let window = WindowRecord {
                start_ns: nanos(self.window_start),
                end_ns: nanos(now),
                tenants,
                switch_ns: nanos(self.window_switch),
            };
            self.last_window = Some(window.clone());
            self.log.push(Record::Window(window));
        }
        self.window_start = now;
        self.window_run.iter_mut().for_each(|d| *d = Duration::ZERO);
        self.window_switch = Duration::ZERO;
        self.programmed = false;
        // New channel groups may have appeared (guests allocate at any time).
        let before: Vec<Vec<GroupRef>> = self.groups.clone();
        self.discover()?;
        if self.method == Method::Gating {
            let current = self.current;
            let fresh: Vec<GroupRef> = self
                .groups
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != current)
                .flat_map(|(i, gs)| {
                    gs.iter()
                        .filter(|g| !before[i].contains(g))
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            if !fresh.is_empty() {
                self.mech.set_enabled(&fresh, false)?;
            }
        }
        Ok(())
    }
}

impl<M: Mechanism> Drop for Scheduler<M> {
    fn drop(&mut self) {
        if !self.released {
            if let Err(e) = self.release() {
                tracing::error!("could not re-enable channel groups on exit: {e}");
            }
        }
    }
}

fn pick(caps: Capabilities, policy: &Policy, forced: Option<Method>) -> Result<Method, SchedError> {
    match forced {
        None => choose_method(caps, policy),
        Some(Method::Timeslice) if caps.timeslice && caps.run_time_stats && caps.busy_query => {
            Ok(Method::Timeslice)
        }
        Some(Method::Gating) if caps.channel_gate && caps.busy_query => Ok(Method::Gating),
        Some(m) => Err(SchedError::MethodUnavailable {
            method: m.name(),
            caps,
        }),
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::fake::{FakeCosts, FakeGpu};
    use crate::mechanism::load::LoadPattern;
    use crate::policy_file::PolicyKind;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    fn policy(kind: PolicyKind, weights: &[u32]) -> Policy {
        let mut text = format!("policy = \"{}\"\n", kind.name());
        for (i, w) in weights.iter().enumerate() {
            text += &format!(
                "[[tenant]]\nname = \"t{i}\"\ngfids = [{}]\nweight = {w}\n",
                i + 1
            );
        }
        Policy::parse(&text, "test.toml").unwrap()
    }

    fn gpu(caps: Capabilities, loads: &[LoadPattern]) -> FakeGpu {
        let mut g = FakeGpu::new(caps, FakeCosts::default());
        for (i, &l) in loads.iter().enumerate() {
            g.add_group(0, i as u32 + 1, l);
        }
        g
    }

    /// A scheduler choosing its method for a `kind` policy with `weights` over a fake GPU with
    /// `caps` and one group per load.
    fn scheduler(
        caps: Capabilities,
        loads: &[LoadPattern],
        kind: PolicyKind,
        weights: &[u32],
    ) -> Scheduler<FakeGpu> {
        Scheduler::new(
            gpu(caps, loads),
            policy(kind, weights),
            None,
            HashMap::new(),
        )
        .unwrap()
    }

    /// A weighted policy over always-busy tenants on a GPU where only gating works.
    fn gsp_busy(weights: &[u32]) -> Scheduler<FakeGpu> {
        let loads = vec![LoadPattern::Busy; weights.len()];
        scheduler(FakeGpu::gsp_levers(), &loads, PolicyKind::Weighted, weights)
    }

    /// Runs `secs` one-second windows and returns each window's shares of used engine time.
    fn window_shares<M: Mechanism>(s: &mut Scheduler<M>, secs: usize) -> Vec<Vec<f64>> {
        let mut out = Vec::new();
        for _ in 0..secs {
            let before = s.tenant_run_times().to_vec();
            s.run_for(SEC).unwrap();
            let d: Vec<f64> = s
                .tenant_run_times()
                .iter()
                .zip(&before)
                .map(|(a, b)| (*a - *b).as_secs_f64())
                .collect();
            let total: f64 = d.iter().sum();
            out.push(d.iter().map(|x| x / total).collect());
        }
        out
    }

    fn max_error(windows: &[Vec<f64>], target: &[f64]) -> f64 {
        windows
            .iter()
            .flat_map(|w| w.iter().zip(target).map(|(a, b)| (a - b).abs()))
            .fold(0.0, f64::max)
    }

    #[test]
    fn method_follows_capabilities_not_names() {
        let weighted = policy(PolicyKind::Weighted, &[3, 1]);
        let fixed = policy(PolicyKind::FixedShare, &[3, 1]);
        assert_eq!(
            choose_method(FakeGpu::all_levers(), &weighted),
            Ok(Method::Timeslice)
        );
        assert_eq!(
            choose_method(FakeGpu::gsp_levers(), &weighted),
            Ok(Method::Gating)
        );
        assert_eq!(
            choose_method(FakeGpu::all_levers(), &fixed),
            Ok(Method::Gating)
        );
        assert!(matches!(
            choose_method(Capabilities::default(), &weighted),
            Err(SchedError::NoEffectiveLever { .. })
        ));
        let g = gpu(FakeGpu::gsp_levers(), &[LoadPattern::Busy]);
        assert!(matches!(
            Scheduler::new(g, weighted, Some(Method::Timeslice), HashMap::new()),
            Err(SchedError::MethodUnavailable { .. })
        ));
    }

    #[test]
    fn instances_join_the_tenant_they_name_at_the_next_window() {
        let text = "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\nweight = 3\n\
                    [[tenant]]\nname = \"b\"\nweight = 1\n";
        let p = Policy::parse(text, "t.toml").unwrap();
        let g = gpu(
            FakeGpu::all_levers(),
            &[LoadPattern::Busy, LoadPattern::Busy],
        );
        let mut s = Scheduler::new(g, p, None, HashMap::new()).unwrap();
        s.run_for(SEC).unwrap();
        // Nobody claims GFIDs 1 and 2 yet: no tenant ran.
        assert!(s.tenant_run_times().iter().all(|d| d.is_zero()));
        let bind = |uuid: &str, gfid, tenant: &str| BoundInstance {
            uuid: uuid.into(),
            gfid,
            tenant: tenant.into(),
        };
        s.set_instances(&[
            bind("00000000-0000-0000-0000-000000000001", 1, "a"),
            bind("00000000-0000-0000-0000-000000000002", 2, "b"),
        ]);
        s.run_for(SEC).unwrap();
        let w = window_shares(&mut s, 3);
        assert!(max_error(&w, &[0.75, 0.25]) < 0.005, "{w:?}");
        let last = s.last_window().expect("windows closed");
        assert_eq!(last.tenants[0].tenant, "a");
        assert!((last.tenants[0].target - 0.75).abs() < 1e-9);
    }

    #[test]
    fn gating_holds_three_to_one_on_a_gsp_like_gpu() {
        let mut s = gsp_busy(&[3, 1]);
        assert_eq!(s.method(), Method::Gating);
        let w = window_shares(&mut s, 4);
        assert!(max_error(&w[1..], &[0.75, 0.25]) < 0.005, "{w:?}");
        let used: Duration = s.tenant_run_times().iter().sum();
        assert!(used.as_secs_f64() / s.mechanism().now().as_secs_f64() > 0.95);
    }

    #[test]
    fn timeslice_method_holds_weights_with_the_backends_round_robin() {
        let loads = [LoadPattern::Busy; 4];
        let mut s = scheduler(
            FakeGpu::all_levers(),
            &loads,
            PolicyKind::Weighted,
            &[1, 2, 3, 4],
        );
        assert_eq!(s.method(), Method::Timeslice);
        let w = window_shares(&mut s, 4);
        assert!(max_error(&w[1..], &[0.1, 0.2, 0.3, 0.4]) < 0.005, "{w:?}");
    }

    #[test]
    fn fixed_share_leaves_an_idle_tenants_slot_idle() {
        let mut s = scheduler(
            FakeGpu::all_levers(),
            &[LoadPattern::Busy, LoadPattern::Idle],
            PolicyKind::FixedShare,
            &[1, 1],
        );
        s.run_for(2 * SEC).unwrap();
        let ran = s.tenant_run_times()[0].as_secs_f64() / s.mechanism().now().as_secs_f64();
        assert!((ran - 0.5).abs() < 0.01, "ran {ran}");
    }

    #[test]
    fn weighted_gives_a_bursty_tenants_spare_time_away() {
        let bursty = LoadPattern::Bursty {
            period: 100 * MS,
            work: 10 * MS,
        };
        let mut s = scheduler(
            FakeGpu::gsp_levers(),
            &[LoadPattern::Busy, bursty],
            PolicyKind::Weighted,
            &[1, 1],
        );
        s.run_for(2 * SEC).unwrap();
        let t = s.tenant_run_times();
        // The bursty tenant gets all its work done (10 %), the busy one the rest.
        assert!((t[1].as_secs_f64() - 0.2).abs() < 0.005, "{t:?}");
        assert!(t[0].as_secs_f64() > 1.7, "{t:?}");
    }

    #[test]
    fn reload_takes_effect_within_a_balance_period_and_keeps_work() {
        let mut s = gsp_busy(&[3, 1]);
        s.run_for(SEC).unwrap();
        let before = s.mechanism().clone();
        s.apply_policy(policy(PolicyKind::Weighted, &[1, 1]));
        assert_eq!(s.reload_latency(), None);
        s.run_for(100 * MS).unwrap();
        // Release, restart (disable and preempt all), then the first enable: a few lever calls.
        let latency = s
            .reload_latency()
            .expect("a decision under the new policy")
            .gpu;
        assert!(latency > Duration::ZERO && latency < MS, "{latency:?}");
        let t = s.tenant_run_times().to_vec();
        let share = t[0].as_secs_f64() / (t[0] + t[1]).as_secs_f64();
        assert!((share - 0.5).abs() < 0.03, "share {share}");
        // Work done before the reload is still accounted by the GPU.
        let mut after = s.mechanism().clone();
        let g0 = GroupRef { runlist: 0, tsg: 0 };
        assert!(after.run_time(g0).unwrap() > before.clone().run_time(g0).unwrap());
        assert!(s
            .log()
            .records
            .iter()
            .any(|r| matches!(r, Record::Reload(ReloadRecord { applied: true, .. }))));
    }

    #[test]
    fn dropping_the_scheduler_re_enables_every_channel() {
        let mut s = gsp_busy(&[1, 1]);
        s.run_for(10 * MS).unwrap();
        let disabled = (0..2)
            .filter(|&t| !s.mechanism().is_enabled(GroupRef { runlist: 0, tsg: t }))
            .count();
        assert_eq!(disabled, 1);
        s.release().unwrap();
        assert!((0..2).all(|t| s.mechanism().is_enabled(GroupRef { runlist: 0, tsg: t })));
    }

    #[test]
    fn log_records_slices_and_windows() {
        let mut s = gsp_busy(&[3, 1]);
        s.run_for(SEC).unwrap();
        let log = s.log();
        let windows: Vec<_> = log.windows().collect();
        assert!(windows.len() >= 9);
        let w = windows.last().unwrap();
        assert!((w.tenants[0].share - 0.75).abs() < 0.03, "{w:?}");
        let last = log.slices().filter(|x| x.tenant == "t1").last().unwrap();
        assert!(last.cumulative_preemption_ns > 0);
        assert_eq!(
            last.time_run_total_ns,
            log.slices()
                .filter(|x| x.tenant == "t1")
                .map(|x| x.time_run_ns)
                .sum::<u64>()
        );
    }
}
