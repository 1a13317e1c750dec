//! The daemon's enforcement loop: the scheduler runs the policy over the [`ChannelGate`] in
//! ticks of at most half a balance period, and after each tick the policy file is checked for a
//! reload (SIGHUP or a change of its content) through the scheduler crate's [`PolicyWatcher`].
//! A new policy is queued on the scheduler and takes over at its next decision, so it is in
//! force within one balance period; a file that does not validate, or names a tenant the daemon
//! cannot gate, leaves the old policy in force and the reason (file:line) in the log.

use crate::gate::{policy_gfids, ChannelGate, ChannelSwitch, Clock};
use crate::tenants::policy_bindings;
use scheduler::policy_file::Policy;
use scheduler::reload::{PolicyWatcher, ReloadOutcome};
use scheduler::scheduler::{SchedError, Scheduler};
use std::time::Duration;

/// Longest tick: the daemon's other duties (statistics, stop requests) come between ticks.
pub const MAX_TICK: Duration = Duration::from_millis(50);

/// GPU time one tick schedules under `policy`: half its balance period, at most [`MAX_TICK`],
/// so that a reload seen after a tick is in force within one balance period.
pub fn tick_length(policy: &Policy) -> Duration {
    (policy.balance_period / 2).min(MAX_TICK)
}

/// Runs one tick of the schedule, then applies a reload of the watched policy file if SIGHUP
/// arrived or the file changed (the gate follows the new policy's tenant-to-GFID map, the
/// registry its tenant bindings).
pub fn tick<S: ChannelSwitch, C: Clock>(
    sched: &mut Scheduler<ChannelGate<S, C>>,
    watcher: Option<&mut PolicyWatcher>,
) -> Result<ReloadOutcome, SchedError> {
    sched.run_for(tick_length(sched.policy()))?;
    Ok(match watcher {
        None => ReloadOutcome::Unchanged,
        Some(w) => w.apply_to(sched, |policy, gate| {
            gate.set_gfids(policy_gfids(policy)?);
            gate.registry().set_bindings(policy_bindings(policy));
            Ok(())
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::testing::{gate, policy_text, FakeClock, FakeSwitch};
    use crate::tenants::TenantRegistry;
    use scheduler::log::{Record, ReloadRecord};
    use scheduler::mechanism::{GroupRef, Mechanism};
    use scheduler::scheduler::Method;
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};

    type GateSched = Scheduler<ChannelGate<FakeSwitch, FakeClock>>;

    /// A policy file in a fresh directory, and the daemon's scheduler over two busy tenants
    /// of the fake GPU under it, with a watcher on the file.
    fn daemon(name: &str, weights: &[u32]) -> (PathBuf, GateSched, PolicyWatcher, TenantRegistry) {
        let dir = std::env::temp_dir().join(format!("vgpud-enforce-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("policy.toml");
        std::fs::write(&path, policy_text(weights)).unwrap();
        let (g, reg, _) = gate(2, Duration::from_micros(700));
        for i in 0..2u32 {
            let id = reg
                .connect(&format!("t{i}"), &crate::protocol::test_peer(100 + i))
                .unwrap();
            reg.set_channels(id, &[(0xC1D0_0000 + i, 0x5C00_0010)]);
        }
        let policy = Policy::load(&path).unwrap();
        let sched = Scheduler::new(g, policy, Some(Method::Gating), HashMap::new()).unwrap();
        let watcher = PolicyWatcher::new(&path).unwrap();
        (path, sched, watcher, reg)
    }

    /// Ticks for `d` of GPU time; returns every tick's reload outcome that was not Unchanged.
    fn run(s: &mut GateSched, w: &mut PolicyWatcher, d: Duration) -> Vec<ReloadOutcome> {
        let end = s.mechanism().now() + d;
        let mut seen = Vec::new();
        while s.mechanism().now() < end {
            match tick(s, Some(w)).unwrap() {
                ReloadOutcome::Unchanged => {}
                o => seen.push(o),
            }
        }
        seen
    }

    /// Tenant 0's share of the run time the two tenants got between two readings.
    fn share(before: &[Duration], after: &[Duration]) -> f64 {
        let d: Vec<f64> = (0..2)
            .map(|i| (after[i] - before[i]).as_secs_f64())
            .collect();
        d[0] / (d[0] + d[1])
    }

    fn reloads(s: &GateSched) -> Vec<ReloadRecord> {
        (s.log().records.iter())
            .filter_map(|r| match r {
                Record::Reload(x) => Some(x.clone()),
                _ => None,
            })
            .collect()
    }

    fn remove(path: &Path) {
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn reload_from_three_to_one_to_one_to_one_is_in_force_within_a_balance_period() {
        let (path, mut s, mut w, reg) = daemon("reload", &[3, 1]);
        assert!(run(&mut s, &mut w, Duration::from_secs(2)).is_empty());
        let t = s.tenant_run_times().to_vec();
        assert!(
            (share(&[Duration::ZERO; 2], &t) - 0.75).abs() < 0.01,
            "{t:?}"
        );
        let groups = [1, 2].map(|tsg| GroupRef { runlist: 0, tsg });
        let ran_before: Vec<Duration> = groups
            .iter()
            .map(|&g| s.mechanism_mut().run_time(g).unwrap())
            .collect();

        std::fs::write(&path, policy_text(&[1, 1])).unwrap();
        assert!(w.settle(Duration::from_secs(5)), "the watch saw the write");
        let changed_at = s.mechanism().now();
        let period = s.policy().balance_period;
        let seen = run(&mut s, &mut w, Duration::from_secs(5));
        assert!(
            matches!(seen.as_slice(), [ReloadOutcome::Applied(_)]),
            "{seen:?}"
        );
        let applied = &reloads(&s)[0];
        assert!(applied.applied, "{applied:?}");
        let in_force_at = Duration::from_nanos(applied.timestamp_ns);
        assert!(
            in_force_at - changed_at <= period,
            "{in_force_at:?} after {changed_at:?}"
        );
        assert_eq!(s.policy().tenants[0].weight, 1);
        // The scheduler's totals restart at the reload: the whole time since is 1:1.
        let t = s.tenant_run_times().to_vec();
        assert!(
            (share(&[Duration::ZERO; 2], &t) - 0.5).abs() < 0.01,
            "{t:?}"
        );
        // No work lost: both tenants kept their channels and went on accruing run time.
        assert_eq!(reg.all_channels().len(), 2);
        for (g, before) in groups.iter().zip(&ran_before) {
            assert!(s.mechanism_mut().run_time(*g).unwrap() > *before + Duration::from_secs(2));
        }
        remove(&path);
    }

    #[test]
    fn a_broken_file_leaves_three_to_one_in_force_and_says_why() {
        let (path, mut s, mut w, _reg) = daemon("broken", &[3, 1]);
        run(&mut s, &mut w, Duration::from_secs(1));
        let file = path.display().to_string();
        for (text, why) in [
            ("policy = \"fastest\"\n", format!("{file}:1:")),
            (
                "policy = \"weighted\"\n[[tenant]]\nname = \"t0\"\nvgpus = [\"aaaaaaaa-0000-4000-8000-000000000001\"]\n",
                format!("{file}: tenant \"t0\" has no gfids"),
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(w.settle(Duration::from_secs(5)), "the watch saw the write");
            let before = s.tenant_run_times().to_vec();
            let seen = run(&mut s, &mut w, Duration::from_secs(4));
            match seen.as_slice() {
                [ReloadOutcome::Refused(m)] => assert!(m.starts_with(&why), "{m}"),
                other => panic!("{other:?}"),
            }
            let logged = reloads(&s).pop().unwrap();
            assert!(!logged.applied && logged.message.starts_with(&why), "{logged:?}");
            assert_eq!(s.policy().tenants[0].weight, 3);
            let after = s.tenant_run_times().to_vec();
            assert!((share(&before, &after) - 0.75).abs() < 0.01, "{after:?}");
        }
        remove(&path);
    }
}
