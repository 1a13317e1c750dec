//! The scheduler's mechanism on a GSP-era NVIDIA GPU: each tenant's whole channel set is one
//! group, enabled and disabled with `NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS` from the daemon's own
//! client. Timeslice, interleave and schedule controls are accepted and inert there (measured),
//! so they are reported as not effective; a tenant's TSGs belong to another client, which the
//! daemon cannot preempt, so preempt is not offered either.
//!
//! Run time is measured, not assumed: a tenant accrues time from the moment its enable call
//! returned to the moment its disable call was issued, so the switch itself (about 1 ms) is
//! charged to nobody and the scheduler's credits close the gap to the target share.

use crate::protocol::ChannelPair;
use crate::tenants::TenantRegistry;
use rm_nvidia::forward::ControlError;
use rm_nvidia::{HostClient, NvDriver};
use scheduler::mechanism::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
use scheduler::policy_file::{Policy, Priority};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Enables and disables sets of channels.
pub trait ChannelSwitch {
    /// Enables (`true`) or disables all of `channels`.
    fn set_enabled(&mut self, channels: &[ChannelPair], enabled: bool) -> Result<(), ControlError>;
}

impl<D: NvDriver> ChannelSwitch for HostClient<D> {
    fn set_enabled(&mut self, channels: &[ChannelPair], enabled: bool) -> Result<(), ControlError> {
        self.set_channels_enabled(channels, enabled)
    }
}

/// Time, and waiting for it to pass.
pub trait Clock {
    /// Time since the clock's start.
    fn now(&self) -> Duration;
    /// Waits up to `d`, returning early when the registry changes.
    fn wait(&mut self, registry: &TenantRegistry, d: Duration);
}

/// Wall-clock time.
#[derive(Debug)]
pub struct RealClock(Instant);

impl Default for RealClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }

    fn wait(&mut self, registry: &TenantRegistry, d: Duration) {
        let g = registry.generation();
        registry.wait_change(g, d);
    }
}

/// Count and total duration of one kind of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    /// Calls made.
    pub count: u64,
    /// Their total duration, ns.
    pub total_ns: u64,
    /// Calls that failed.
    pub failed: u64,
}

impl CallStats {
    fn add(&mut self, d: Duration, ok: bool) {
        self.count += 1;
        self.total_ns += d.as_nanos() as u64;
        self.failed += u64::from(!ok);
    }

    /// Mean duration in µs.
    pub fn mean_us(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ns as f64 / self.count as f64 / 1e3
        }
    }
}

/// The GFID each policy tenant is gated under: its first. A policy tenant without GFIDs cannot
/// be gated (the daemon's tenants name no vGPU UUIDs yet), which is an error naming it.
pub fn policy_gfids(policy: &Policy) -> Result<HashMap<String, u32>, String> {
    policy
        .tenants
        .iter()
        .map(|t| match t.gfids.first() {
            Some(&g) => Ok((t.name.clone(), g)),
            None => Err(format!(
                "tenant {:?} has no gfids; vgpud names tenants by their first GFID",
                t.name
            )),
        })
        .collect()
}

/// Channel gating over a [`ChannelSwitch`].
pub struct ChannelGate<S: ChannelSwitch, C: Clock> {
    switch: S,
    clock: C,
    registry: TenantRegistry,
    /// Tenant name -> the GFID the policy gives it.
    gfids: HashMap<String, u32>,
    /// Per GFID: whether it is enabled now (absent: never touched, so enabled).
    enabled: HashMap<u32, bool>,
    on_since: HashMap<u32, Duration>,
    run: HashMap<u32, Duration>,
    /// Per GFID: the channels whose state was last set.
    applied: HashMap<u32, BTreeSet<ChannelPair>>,
    /// When the gates were last asserted again (see [`REASSERT_PERIOD`]).
    reasserted: Duration,
    /// Disable and enable calls.
    pub disables: CallStats,
    /// Enable calls.
    pub enables: CallStats,
}

impl<S: ChannelSwitch, C: Clock> std::fmt::Debug for ChannelGate<S, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelGate").finish_non_exhaustive()
    }
}

impl<S: ChannelSwitch, C: Clock> ChannelGate<S, C> {
    /// Gates the tenants of `registry` whose names `gfids` maps (the policy's tenants).
    pub fn new(switch: S, clock: C, registry: TenantRegistry, gfids: HashMap<String, u32>) -> Self {
        Self {
            switch,
            clock,
            registry,
            gfids,
            enabled: HashMap::new(),
            on_since: HashMap::new(),
            run: HashMap::new(),
            applied: HashMap::new(),
            reasserted: Duration::ZERO,
            disables: CallStats::default(),
            enables: CallStats::default(),
        }
    }

    /// The switch (e.g. to release channels at exit).
    pub fn switch_mut(&mut self) -> &mut S {
        &mut self.switch
    }

    fn channels_of(&self, gfid: u32) -> Vec<ChannelPair> {
        let by = self.registry.by_tenant();
        self.gfids
            .iter()
            .filter(|(_, &g)| g == gfid)
            .flat_map(|(n, _)| by.get(n).cloned().unwrap_or_default())
            .collect()
    }

    /// Sets `channels` and records the call; on a failure retries one channel at a time (a
    /// channel of a tenant that just died fails, and must not keep the others in their state).
    /// Returns how many channels could not be set.
    fn apply(&mut self, channels: &[ChannelPair], enabled: bool) -> usize {
        if channels.is_empty() {
            return 0;
        }
        let t0 = Instant::now();
        let r = self.switch.set_enabled(channels, enabled);
        let stats = if enabled {
            &mut self.enables
        } else {
            &mut self.disables
        };
        stats.add(t0.elapsed(), r.is_ok());
        let Err(e) = r else { return 0 };
        tracing::debug!(
            "set_enabled({enabled}) on {} channels: {e}; retrying one by one",
            channels.len()
        );
        channels
            .iter()
            .filter(|&&c| match self.switch.set_enabled(&[c], enabled) {
                Ok(()) => false,
                Err(e) => {
                    tracing::debug!("channel {:x}:{:x}: {e}", c.0, c.1);
                    true
                }
            })
            .count()
    }

    /// Enables every one of `channels` that can be (the daemon's exit), as every switch does:
    /// in one call, and where that fails (a channel of a tenant that died, a bogus pair a
    /// client sent) one channel at a time, so no channel stays disabled because another failed.
    /// Returns how many could not be enabled.
    pub fn enable_all(&mut self, channels: &[ChannelPair]) -> usize {
        self.apply(channels, true)
    }

    /// The registry of tenants whose channels this gate switches.
    pub fn registry(&self) -> &TenantRegistry {
        &self.registry
    }

    /// Gates by a new name-to-GFID map (a reloaded policy). Channels that leave a disabled
    /// group (their tenant left the policy or moved to another GFID) are enabled; channels that
    /// join a disabled group are disabled. The scheduler then restarts under the new policy.
    pub fn set_gfids(&mut self, gfids: HashMap<String, u32>) {
        self.gfids = gfids;
        let disabled: Vec<u32> = (self.enabled.iter())
            .filter(|(_, &on)| !on)
            .map(|(&g, _)| g)
            .collect();
        let still_off: BTreeSet<ChannelPair> =
            disabled.iter().flat_map(|&g| self.channels_of(g)).collect();
        for g in disabled {
            let now: BTreeSet<ChannelPair> = self.channels_of(g).into_iter().collect();
            let applied = self.applied.remove(&g).unwrap_or_default();
            let gone: Vec<ChannelPair> = applied.difference(&still_off).copied().collect();
            self.apply(&gone, true);
            self.applied
                .insert(g, applied.intersection(&now).copied().collect());
        }
        self.sync_channels();
    }

    /// Enables the channels of tenants that went away, and puts channels that appeared since
    /// their tenant's last switch into the tenant's state.
    fn sync_channels(&mut self) {
        for c in self.registry.take_released() {
            // Fails harmlessly when the tenant's process (and so the channel) is gone.
            let _ = self.switch.set_enabled(&[c], true);
        }
        let gfids: Vec<u32> = self.enabled.keys().copied().collect();
        for g in gfids {
            let now: BTreeSet<ChannelPair> = self.channels_of(g).into_iter().collect();
            let applied = self.applied.entry(g).or_default();
            let fresh: Vec<ChannelPair> = now.difference(applied).copied().collect();
            *applied = now;
            if !fresh.is_empty() && self.enabled.get(&g) == Some(&false) {
                self.apply(&fresh, false);
            }
        }
    }

    fn accrued(&self, gfid: u32) -> Duration {
        let base = self.run.get(&gfid).copied().unwrap_or_default();
        match (self.enabled.get(&gfid), self.on_since.get(&gfid)) {
            (Some(true), Some(&since)) => base + self.clock.now().saturating_sub(since),
            _ => base,
        }
    }
}

/// How often the gate disables a gated tenant's channels again. A process tenant is
/// cooperative: its shim refuses to re-enable them, but a raw `ioctl` that skips the shim can,
/// and would then run outside its turn until this comes round.
pub const REASSERT_PERIOD: Duration = Duration::from_millis(10);

impl<S: ChannelSwitch, C: Clock> ChannelGate<S, C> {
    /// Disables every gated tenant's channels again, once per [`REASSERT_PERIOD`].
    fn reassert(&mut self) {
        let now = self.clock.now();
        if now.saturating_sub(self.reasserted) < REASSERT_PERIOD {
            return;
        }
        self.reasserted = now;
        let gated: Vec<Vec<ChannelPair>> = (self.enabled.iter())
            .filter(|(_, &on)| !on)
            .filter_map(|(g, _)| self.applied.get(g))
            .map(|set| set.iter().copied().collect())
            .collect();
        for channels in gated {
            self.apply(&channels, false);
        }
    }
}

impl<S: ChannelSwitch, C: Clock> Mechanism for ChannelGate<S, C> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channel_gate: true,
            busy_query: true,
            run_time_stats: true,
            ..Default::default()
        }
    }

    fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError> {
        let by = self.registry.by_tenant();
        let mut out: Vec<GroupInfo> = by
            .iter()
            .filter(|(_, ch)| !ch.is_empty())
            .filter_map(|(n, _)| self.gfids.get(n))
            .map(|&gfid| GroupInfo {
                group: GroupRef {
                    runlist: 0,
                    tsg: gfid,
                },
                gfid,
            })
            .collect();
        out.sort_by_key(|g| g.gfid);
        out.dedup_by_key(|g| g.gfid);
        Ok(out)
    }

    fn set_timeslice(&mut self, _: GroupRef, _: Duration) -> Result<Duration, MechanismError> {
        Err(MechanismError::Unsupported("timeslice (inert under GSP)"))
    }

    fn set_interleave(&mut self, _: GroupRef, _: Priority) -> Result<(), MechanismError> {
        Err(MechanismError::Unsupported("interleave (inert under GSP)"))
    }

    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError> {
        for g in groups {
            let gfid = g.tsg;
            let channels = self.channels_of(gfid);
            if !enabled && self.enabled.get(&gfid) != Some(&false) {
                let run = self.accrued(gfid);
                self.run.insert(gfid, run);
            }
            self.apply(&channels, enabled);
            if enabled && self.enabled.get(&gfid) != Some(&true) {
                let now = self.clock.now();
                self.on_since.insert(gfid, now);
            }
            self.enabled.insert(gfid, enabled);
            self.applied.insert(gfid, channels.into_iter().collect());
        }
        Ok(())
    }

    fn preempt(&mut self, _: &[GroupRef]) -> Result<(), MechanismError> {
        Err(MechanismError::Unsupported(
            "preempt of another client's TSG",
        ))
    }

    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
        Ok(!self.channels_of(group.tsg).is_empty())
    }

    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
        Ok(self.accrued(group.tsg))
    }

    fn now(&self) -> Duration {
        self.clock.now()
    }

    fn run_until(
        &mut self,
        deadline: Duration,
        _watch: &[GroupRef],
    ) -> Result<Duration, MechanismError> {
        loop {
            self.sync_channels();
            self.reassert();
            let now = self.clock.now();
            if now >= deadline {
                return Ok(now);
            }
            let registry = self.registry.clone();
            self.clock.wait(&registry, deadline - now);
        }
    }
}

/// A fake GPU and a virtual clock for tests of the gate and of the loop that drives it.
#[cfg(test)]
mod exit_tests {
    use super::testing::*;
    use super::*;

    /// Found by review: a tenant can enable its own gated channels with a raw ioctl that
    /// skips its shim. The gate disables them again within a period.
    #[test]
    fn a_tenant_that_lifts_its_own_gate_is_gated_again() {
        let (mut g, reg, _) = gate(2, Duration::from_micros(1));
        for i in 0..2u32 {
            let id = reg
                .connect(&format!("t{i}"), &crate::protocol::test_peer(100 + i))
                .unwrap();
            reg.set_channels(id, &[(0xC1D0_0000 + i, 0x5C00_0010)]);
        }
        let t1 = GroupRef { runlist: 0, tsg: 2 };
        g.set_enabled(&[t1], false).unwrap();
        assert!(g.switch.disabled.contains(&(0xC1D0_0001, 0x5C00_0010)));
        // The tenant's raw re-enable.
        g.switch.disabled.clear();
        let now = g.now();
        g.run_until(now + REASSERT_PERIOD + Duration::from_millis(1), &[])
            .unwrap();
        assert!(
            g.switch.disabled.contains(&(0xC1D0_0001, 0x5C00_0010)),
            "gated again"
        );
        assert!(
            !g.switch.disabled.contains(&(0xC1D0_0000, 0x5C00_0010)),
            "the other tenant, in its turn, is left alone"
        );
    }

    /// Found by review: the exit's one batched enable stopped at the first channel that
    /// failed, so a bogus `0:0` pair from any client left every tenant frozen.
    #[test]
    fn at_exit_every_channel_that_can_be_enabled_is() {
        let (mut g, _reg, _) = gate(2, Duration::from_micros(1));
        let good: Vec<ChannelPair> = (0..200).map(|i| (0xC1D0_0000, 0x5C00_0000 + i)).collect();
        g.switch.disabled.extend(good.iter().copied());
        g.switch.dead.insert((0, 0));
        let mut all = good.clone();
        all.insert(100, (0, 0));
        assert_eq!(g.enable_all(&all), 1, "only the bogus pair fails");
        assert!(g.switch.disabled.is_empty(), "{:?}", g.switch.disabled);
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// A virtual clock: waiting advances it at once.
    #[derive(Clone, Default)]
    pub(crate) struct FakeClock(pub(crate) Rc<RefCell<Duration>>);

    impl Clock for FakeClock {
        fn now(&self) -> Duration {
            *self.0.borrow()
        }
        fn wait(&mut self, _: &TenantRegistry, d: Duration) {
            *self.0.borrow_mut() += d;
        }
    }

    /// A fake GPU: per channel enabled or not; each call costs `cost` of virtual time, and
    /// while a tenant's channels are all enabled it makes progress at one unit per ns.
    pub(crate) struct FakeSwitch {
        pub(crate) clock: FakeClock,
        pub(crate) cost: Duration,
        pub(crate) disabled: BTreeSet<ChannelPair>,
        pub(crate) dead: BTreeSet<ChannelPair>,
        pub(crate) calls: Vec<(usize, bool)>,
    }

    impl ChannelSwitch for FakeSwitch {
        fn set_enabled(
            &mut self,
            channels: &[ChannelPair],
            enabled: bool,
        ) -> Result<(), ControlError> {
            *self.clock.0.borrow_mut() += self.cost;
            self.calls.push((channels.len(), enabled));
            if channels.iter().any(|c| self.dead.contains(c)) {
                return Err(ControlError::Status(rm_abi::NvStatus::ERR_INVALID_CLIENT));
            }
            for c in channels {
                if enabled {
                    self.disabled.remove(c);
                } else {
                    self.disabled.insert(*c);
                }
            }
            Ok(())
        }
    }

    /// A weighted policy's text: tenant `t{i}` on GFID i+1 with the i-th weight.
    pub(crate) fn policy_text(weights: &[u32]) -> String {
        let mut text = String::from("policy = \"weighted\"\ntimeslice = \"20ms\"\n");
        for (i, w) in weights.iter().enumerate() {
            text += &format!(
                "[[tenant]]\nname = \"t{i}\"\ngfids = [{}]\nweight = {w}\n",
                i + 1
            );
        }
        text
    }

    pub(crate) fn policy(weights: &[u32]) -> Policy {
        Policy::parse(&policy_text(weights), "test.toml").unwrap()
    }

    pub(crate) fn gate(
        n: usize,
        cost: Duration,
    ) -> (
        ChannelGate<FakeSwitch, FakeClock>,
        TenantRegistry,
        FakeClock,
    ) {
        let clock = FakeClock::default();
        let registry = TenantRegistry::new(None);
        let gfids = (0..n).map(|i| (format!("t{i}"), i as u32 + 1)).collect();
        let sw = FakeSwitch {
            clock: clock.clone(),
            cost,
            disabled: BTreeSet::new(),
            dead: BTreeSet::new(),
            calls: vec![],
        };
        (
            ChannelGate::new(sw, clock.clone(), registry.clone(), gfids),
            registry,
            clock,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use scheduler::scheduler::{Method, Scheduler};

    #[test]
    fn weighted_shares_land_on_target_despite_switch_cost() {
        for weights in [vec![3, 1], vec![1, 2, 3], vec![1, 1]] {
            let (g, reg, _) = gate(weights.len(), Duration::from_micros(700));
            for i in 0..weights.len() {
                let id = reg
                    .connect(
                        &format!("t{i}"),
                        &crate::protocol::test_peer(100 + i as u32),
                    )
                    .unwrap();
                reg.set_channels(
                    id,
                    &[
                        (0xC1D0_0000 + i as u32, 0x5C00_0010),
                        (0xC1D0_0000 + i as u32, 0x5C00_0011),
                    ],
                );
            }
            let mut s =
                Scheduler::new(g, policy(&weights), Some(Method::Gating), HashMap::new()).unwrap();
            s.run_for(Duration::from_secs(10)).unwrap();
            let runs: Vec<f64> = s
                .tenant_run_times()
                .iter()
                .map(|d| d.as_secs_f64())
                .collect();
            let total: f64 = runs.iter().sum();
            let sum_w: u32 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let share = runs[i] / total;
                let target = f64::from(*w) / f64::from(sum_w);
                assert!(
                    (share - target).abs() < 0.01,
                    "{weights:?}: tenant {i} share {share:.4} target {target:.4}"
                );
            }
            // Switching costs stay within the scheduler's budget.
            assert!(
                total > 10.0 * (1.0 - 2.0 * scheduler::scheduler::SWITCH_OVERHEAD_BUDGET),
                "{weights:?}: {total}"
            );
            // Exactly one tenant is enabled at any moment of the gated run.
            let sw = &s.mechanism().switch;
            let enabled_tenants = (0..weights.len())
                .filter(|&i| !sw.disabled.contains(&(0xC1D0_0000 + i as u32, 0x5C00_0010)))
                .count();
            assert_eq!(enabled_tenants, 1, "{weights:?}");
        }
    }

    #[test]
    fn new_channels_of_a_gated_tenant_are_disabled_and_release_enables_all() {
        let (g, reg, _) = gate(2, Duration::from_micros(500));
        let a = reg.connect("t0", &crate::protocol::test_peer(1)).unwrap();
        let b = reg.connect("t1", &crate::protocol::test_peer(2)).unwrap();
        reg.set_channels(a, &[(1, 1)]);
        reg.set_channels(b, &[(2, 1)]);
        let mut s =
            Scheduler::new(g, policy(&[1, 1]), Some(Method::Gating), HashMap::new()).unwrap();
        s.run_for(Duration::from_millis(500)).unwrap();
        // Whichever is off now gets a new channel: it must come up disabled.
        let off = if s.mechanism().switch.disabled.contains(&(1, 1)) {
            (a, 1)
        } else {
            (b, 2)
        };
        reg.set_channels(off.0, &[(off.1, 1), (off.1, 2)]);
        let soon = s.mechanism().now() + Duration::from_millis(1);
        s.mechanism_mut().run_until(soon, &[]).unwrap();
        assert!(s.mechanism().switch.disabled.contains(&(off.1, 2)));
        s.release().unwrap();
        assert!(
            s.mechanism().switch.disabled.is_empty(),
            "release enables every channel"
        );
    }

    #[test]
    fn unknown_tenants_are_not_gated_and_dead_channels_do_not_block_others() {
        let (mut g, reg, _) = gate(1, Duration::from_micros(500));
        let stranger = reg
            .connect("stranger", &crate::protocol::test_peer(9))
            .unwrap();
        reg.set_channels(stranger, &[(9, 9)]);
        let t = reg.connect("t0", &crate::protocol::test_peer(1)).unwrap();
        reg.set_channels(t, &[(1, 1), (1, 2)]);
        assert_eq!(g.groups().unwrap().len(), 1);
        g.switch.dead.insert((1, 1));
        g.set_enabled(&[GroupRef { runlist: 0, tsg: 1 }], false)
            .unwrap();
        assert!(
            g.switch.disabled.contains(&(1, 2)),
            "the live channel is disabled one by one"
        );
        assert!(!g.switch.disabled.contains(&(9, 9)));
        assert_eq!(g.disables.failed, 1);
        g.switch.dead.clear();
        reg.disconnect(t);
        assert!(!g.busy(GroupRef { runlist: 0, tsg: 1 }).unwrap());
        g.run_until(g.now(), &[]).unwrap();
        assert!(
            !g.switch.disabled.contains(&(1, 2)),
            "a departed tenant's channels are enabled again"
        );
    }

    #[test]
    fn run_time_excludes_switch_time() {
        let (mut g, reg, clock) = gate(1, Duration::from_millis(1));
        let t = reg.connect("t0", &crate::protocol::test_peer(1)).unwrap();
        reg.set_channels(t, &[(1, 1)]);
        let grp = GroupRef { runlist: 0, tsg: 1 };
        g.set_enabled(&[grp], true).unwrap();
        *clock.0.borrow_mut() += Duration::from_millis(10);
        g.set_enabled(&[grp], false).unwrap();
        assert_eq!(g.run_time(grp).unwrap(), Duration::from_millis(10));
        assert!(g.enables.count == 1 && g.disables.count == 1);
    }

    #[test]
    fn remapped_tenants_leave_no_channel_disabled() {
        let (mut g, reg, _) = gate(2, Duration::from_micros(500));
        let a = reg.connect("t0", &crate::protocol::test_peer(1)).unwrap();
        let b = reg.connect("t1", &crate::protocol::test_peer(2)).unwrap();
        reg.set_channels(a, &[(1, 1)]);
        reg.set_channels(b, &[(2, 1)]);
        let (g1, g2) = (
            GroupRef { runlist: 0, tsg: 1 },
            GroupRef { runlist: 0, tsg: 2 },
        );
        g.set_enabled(&[g1, g2], false).unwrap();
        // t0 leaves the policy, t1 moves to GFID 1, whose group is disabled.
        g.set_gfids(HashMap::from([("t1".to_string(), 1)]));
        assert!(
            !g.switch.disabled.contains(&(1, 1)),
            "t0 is no longer gated"
        );
        assert!(
            g.switch.disabled.contains(&(2, 1)),
            "t1 joined a disabled group"
        );
        assert_eq!(
            g.switch.calls.iter().filter(|c| c.1).count(),
            1,
            "only t0's channel is enabled; t1's stays off between disabled groups"
        );
        assert_eq!(g.groups().unwrap().len(), 1);
    }
}
