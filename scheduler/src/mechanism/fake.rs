//! A small, exact model of a GPU for the scheduler's tests: runlists with one engine each,
//! round robin between enabled groups that have work, context-switch and preemption costs, and
//! per-lever switches that make a lever effective or inert (to stand in for a GSP-era GPU whose
//! timeslice control is accepted and ignored). It is not the sim backend: no methods, no memory,
//! just time.

use std::time::Duration;

use super::load::LoadPattern;
use super::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
use crate::policy_file::Priority;

/// Costs the fake charges, in GPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeCosts {
    /// Engine time lost when the engine changes from one group to another.
    pub context_switch: Duration,
    /// Engine time lost when a running group is preempted.
    pub preempt: Duration,
    /// Time an enable/disable call takes (the engine keeps running meanwhile).
    pub gate: Duration,
    /// Timeslice the hardware uses when the timeslice lever is inert or never set.
    pub default_timeslice: Duration,
}

impl Default for FakeCosts {
    fn default() -> Self {
        Self {
            context_switch: Duration::from_micros(20),
            preempt: Duration::from_micros(50),
            gate: Duration::from_micros(10),
            default_timeslice: Duration::from_millis(2),
        }
    }
}

#[derive(Debug, Clone)]
struct Group {
    info: GroupInfo,
    enabled: bool,
    timeslice: Duration,
    load: LoadPattern,
    ran: Duration,
}

#[derive(Debug, Clone, Default)]
struct Engine {
    current: Option<usize>,
    last: Option<usize>,
    slice_end: Duration,
    stalled_until: Duration,
    rr_next: usize,
}

/// The fake GPU; implements [`Mechanism`].
#[derive(Debug, Clone)]
pub struct FakeGpu {
    caps: Capabilities,
    costs: FakeCosts,
    now: Duration,
    groups: Vec<Group>,
    engines: Vec<(u32, Engine)>,
}

/// Resolution at which [`FakeGpu::run_until`] checks watched groups for running dry.
const WATCH_STEP: Duration = Duration::from_micros(50);

impl FakeGpu {
    /// An empty GPU with the given effective levers and costs.
    pub fn new(caps: Capabilities, costs: FakeCosts) -> Self {
        Self {
            caps,
            costs,
            now: Duration::ZERO,
            groups: Vec::new(),
            engines: Vec::new(),
        }
    }

    /// Levers of a GPU where everything works (as the sim backend).
    pub fn all_levers() -> Capabilities {
        Capabilities {
            timeslice: true,
            interleave: false,
            channel_gate: true,
            preempt: true,
            busy_query: true,
            run_time_stats: true,
        }
    }

    /// Levers of a GSP-era GPU as measured on the H200: only gating and preempt work.
    pub fn gsp_levers() -> Capabilities {
        Capabilities {
            timeslice: false,
            interleave: false,
            channel_gate: true,
            preempt: true,
            busy_query: true,
            run_time_stats: true,
        }
    }

    /// Adds an enabled channel group owned by `gfid` on `runlist` with a synthetic load.
    pub fn add_group(&mut self, runlist: u32, gfid: u32, load: LoadPattern) -> GroupRef {
        let tsg = self
            .groups
            .iter()
            .filter(|g| g.info.group.runlist == runlist)
            .count() as u32;
        let group = GroupRef { runlist, tsg };
        self.groups.push(Group {
            info: GroupInfo { group, gfid },
            enabled: true,
            timeslice: self.costs.default_timeslice,
            load,
            ran: Duration::ZERO,
        });
        if !self.engines.iter().any(|(r, _)| *r == runlist) {
            self.engines.push((runlist, Engine::default()));
        }
        group
    }

    /// Whether a group's channels are enabled.
    pub fn is_enabled(&self, group: GroupRef) -> bool {
        self.index(group)
            .map(|i| self.groups[i].enabled)
            .unwrap_or(false)
    }

    fn index(&self, group: GroupRef) -> Result<usize, MechanismError> {
        self.groups
            .iter()
            .position(|g| g.info.group == group)
            .ok_or(MechanismError::NoSuchGroup(group))
    }

    fn has_work(&self, i: usize, t: Duration) -> bool {
        let g = &self.groups[i];
        g.load.arrived_by(t).is_none_or(|a| a > g.ran)
    }

    fn slice_of(&self, i: usize) -> Duration {
        if self.caps.timeslice {
            self.groups[i].timeslice
        } else {
            self.costs.default_timeslice
        }
    }

    fn next_arrival(&self, runlist: u32, t: Duration) -> Option<Duration> {
        self.groups
            .iter()
            .filter(|g| g.info.group.runlist == runlist)
            .filter_map(|g| g.load.next_arrival_after(t))
            .min()
    }

    /// Simulates every engine from `now` to `t`.
    fn advance_to(&mut self, t: Duration) {
        for e in 0..self.engines.len() {
            self.advance_engine(e, t);
        }
        self.now = self.now.max(t);
    }

    fn advance_engine(&mut self, e: usize, t: Duration) {
        let runlist = self.engines[e].0;
        let mut cur = self.now;
        while cur < t {
            let eng = self.engines[e].1.clone();
            if eng.stalled_until > cur {
                cur = eng.stalled_until.min(t);
                continue;
            }
            let running = eng
                .current
                .filter(|&i| self.has_work(i, cur) && cur < eng.slice_end);
            let Some(i) = running else {
                // Pick the next enabled group with work, round robin from rr_next.
                let members: Vec<usize> = (0..self.groups.len())
                    .filter(|&i| self.groups[i].info.group.runlist == runlist)
                    .collect();
                let n = members.len();
                let start = eng.rr_next;
                let pick = (0..n)
                    .map(|k| members[(start + k) % n])
                    .find(|&i| self.groups[i].enabled && self.has_work(i, cur));
                let slice = pick.map(|i| self.slice_of(i)).unwrap_or_default();
                let arrival = self.next_arrival(runlist, cur);
                let switch_cost = self.costs.context_switch;
                let eng = &mut self.engines[e].1;
                match pick {
                    Some(i) => {
                        let pos = members.iter().position(|&m| m == i).unwrap_or(0);
                        eng.rr_next = (pos + 1) % n.max(1);
                        let mut start_at = cur;
                        if eng.last != Some(i) {
                            start_at += switch_cost;
                            eng.stalled_until = start_at;
                        }
                        eng.current = Some(i);
                        eng.last = Some(i);
                        eng.slice_end = start_at + slice;
                    }
                    None => {
                        eng.current = None;
                        cur = arrival.map_or(t, |a| a.min(t));
                    }
                }
                continue;
            };
            let g = &self.groups[i];
            let end = match g.load.arrived_by(cur) {
                Some(a) => t.min(eng.slice_end).min(cur + (a - g.ran)),
                None => t.min(eng.slice_end),
            };
            self.groups[i].ran += end - cur;
            cur = end;
        }
    }
}

impl Mechanism for FakeGpu {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError> {
        Ok(self.groups.iter().map(|g| g.info).collect())
    }

    fn set_timeslice(
        &mut self,
        group: GroupRef,
        slice: Duration,
    ) -> Result<Duration, MechanismError> {
        let i = self.index(group)?;
        // Hardware granularity: whole microseconds.
        let slice = Duration::from_micros(slice.as_micros().max(1) as u64);
        self.groups[i].timeslice = slice;
        Ok(slice)
    }

    fn set_interleave(
        &mut self,
        group: GroupRef,
        _priority: Priority,
    ) -> Result<(), MechanismError> {
        self.index(group).map(|_| ())
    }

    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError> {
        let idx = groups
            .iter()
            .map(|&g| self.index(g))
            .collect::<Result<Vec<_>, _>>()?;
        let t = self.now + self.costs.gate;
        self.advance_to(t);
        if self.caps.channel_gate {
            for i in idx {
                self.groups[i].enabled = enabled;
            }
        }
        Ok(())
    }

    fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError> {
        let idx = groups
            .iter()
            .map(|&g| self.index(g))
            .collect::<Result<Vec<_>, _>>()?;
        if !self.caps.preempt {
            return Ok(());
        }
        let mut done = self.now;
        for (_, eng) in &mut self.engines {
            if eng.current.is_some_and(|c| idx.contains(&c)) {
                eng.current = None;
                eng.last = None;
                eng.stalled_until = self.now + self.costs.preempt;
                done = done.max(eng.stalled_until);
            }
        }
        self.advance_to(done);
        Ok(())
    }

    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
        let i = self.index(group)?;
        Ok(self.has_work(i, self.now))
    }

    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
        Ok(self.groups[self.index(group)?].ran)
    }

    fn now(&self) -> Duration {
        self.now
    }

    fn run_until(
        &mut self,
        deadline: Duration,
        watch: &[GroupRef],
    ) -> Result<Duration, MechanismError> {
        let idx = watch
            .iter()
            .map(|&g| self.index(g))
            .collect::<Result<Vec<_>, _>>()?;
        while self.now < deadline {
            let step = if idx.is_empty() {
                deadline
            } else {
                deadline.min(self.now + WATCH_STEP)
            };
            self.advance_to(step);
            if !idx.is_empty() && !idx.iter().any(|&i| self.has_work(i, self.now)) {
                break;
            }
        }
        Ok(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn free() -> FakeCosts {
        FakeCosts {
            context_switch: Duration::ZERO,
            preempt: Duration::ZERO,
            gate: Duration::ZERO,
            default_timeslice: 2 * MS,
        }
    }

    #[test]
    fn round_robin_honours_effective_timeslices() {
        let mut gpu = FakeGpu::new(FakeGpu::all_levers(), free());
        let a = gpu.add_group(0, 1, LoadPattern::Busy);
        let b = gpu.add_group(0, 2, LoadPattern::Busy);
        gpu.set_timeslice(a, 3 * MS).unwrap();
        gpu.set_timeslice(b, MS).unwrap();
        gpu.run_until(400 * MS, &[]).unwrap();
        assert_eq!(gpu.run_time(a).unwrap(), 300 * MS);
        assert_eq!(gpu.run_time(b).unwrap(), 100 * MS);
    }

    #[test]
    fn inert_timeslice_lever_is_ignored() {
        let mut gpu = FakeGpu::new(FakeGpu::gsp_levers(), free());
        let a = gpu.add_group(0, 1, LoadPattern::Busy);
        let b = gpu.add_group(0, 2, LoadPattern::Busy);
        gpu.set_timeslice(a, 3 * MS).unwrap();
        gpu.run_until(400 * MS, &[]).unwrap();
        assert_eq!(gpu.run_time(a).unwrap(), gpu.run_time(b).unwrap());
    }

    #[test]
    fn disabled_group_stops_after_preempt_and_switches_cost_time() {
        let mut gpu = FakeGpu::new(FakeGpu::all_levers(), FakeCosts::default());
        let a = gpu.add_group(0, 1, LoadPattern::Busy);
        let b = gpu.add_group(0, 2, LoadPattern::Busy);
        gpu.set_enabled(&[b], false).unwrap();
        gpu.run_until(10 * MS, &[]).unwrap();
        let a_ran = gpu.run_time(a).unwrap();
        assert_eq!(a_ran, 10 * MS - Duration::from_micros(20));
        gpu.set_enabled(&[a], false).unwrap();
        gpu.preempt(&[a]).unwrap();
        gpu.set_enabled(&[b], true).unwrap();
        gpu.run_until(20 * MS, &[]).unwrap();
        assert!(gpu.run_time(a).unwrap() - a_ran <= Duration::from_micros(10));
        assert!(gpu.run_time(b).unwrap() > 9 * MS);
        assert!(gpu.busy(b).unwrap());
    }

    #[test]
    fn bursty_group_runs_dry_and_run_until_stops_there() {
        let mut gpu = FakeGpu::new(FakeGpu::all_levers(), free());
        let a = gpu.add_group(
            0,
            1,
            LoadPattern::Bursty {
                period: 10 * MS,
                work: 3 * MS,
            },
        );
        let t = gpu.run_until(9 * MS, &[a]).unwrap();
        assert!(t >= 3 * MS && t <= 3 * MS + WATCH_STEP, "{t:?}");
        assert!(!gpu.busy(a).unwrap());
        gpu.run_until(35 * MS, &[]).unwrap();
        assert_eq!(gpu.run_time(a).unwrap(), 12 * MS);
    }
}
