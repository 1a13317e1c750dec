//! The planner: the policy's single output. Given the policy, the attached and busy tenants and
//! the time each has used, it says who runs next and for how long ([`Planner::decide`]), or how
//! much time each tenant should get over the next balance window ([`Planner::window_plan`]).

use std::time::Duration;

use super::credit::{Ledger, Slot};
use super::shares::{target_shares, Targets};
use crate::policy_file::Policy;

/// What happens in the next slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The tenant (policy index) runs.
    Run(usize),
    /// Nobody runs: an idle tenant's slot under a non-work-conserving policy, time a cap leaves
    /// over, or no work at all.
    Idle,
}

/// One decision: who, for how long, and whose account pays for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Who runs.
    pub turn: Turn,
    /// The longest the turn may last; the mechanism may end it early when the tenant runs dry.
    pub slice: Duration,
    /// The account charged for the slice (None when nobody could use it).
    pub charge: Option<Slot>,
}

/// Holds the policy and the accounting state; decides, never dispatches.
#[derive(Debug, Clone)]
pub struct Planner {
    policy: Policy,
    attached: Vec<bool>,
    busy: Vec<bool>,
    targets: Targets,
    ledger: Ledger,
    cursor: usize,
    min_slice: Duration,
}

impl Planner {
    /// A planner with every tenant attached and none busy.
    pub fn new(policy: Policy) -> Self {
        let n = policy.tenants.len();
        let attached = vec![true; n];
        let busy = vec![false; n];
        let targets = target_shares(&policy, &attached, &busy);
        let mut ledger = Ledger::new(n, policy.balance_period);
        ledger.set_shares(&targets.tenants, targets.spare);
        let mut p = Self {
            policy,
            attached,
            busy,
            targets,
            ledger,
            cursor: 0,
            min_slice: Duration::ZERO,
        };
        p.update();
        p
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Current target shares.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Current balance of a tenant in nanoseconds (positive: owed time).
    pub fn credit(&self, tenant: usize) -> f64 {
        self.ledger.credit(Slot::Tenant(tenant))
    }

    /// Which tenants have a vGPU present on the GPU (equal share divides among these).
    pub fn set_attached(&mut self, attached: &[bool]) {
        if attached != self.attached.as_slice() {
            self.attached.copy_from_slice(attached);
            self.update();
        }
    }

    /// Which tenants have work pending.
    pub fn set_busy(&mut self, busy: &[bool]) {
        if busy != self.busy.as_slice() {
            self.busy.copy_from_slice(busy);
            self.update();
        }
    }

    /// Sets the shortest slice worth handing out: where each switch costs measurable time, the
    /// mechanism raises this so that switching stays a small fraction of the GPU's time.
    pub fn set_min_slice(&mut self, d: Duration) {
        self.min_slice = d;
    }

    /// Records time handed out since the last call (see [`Ledger::settle`]).
    pub fn settle(&mut self, charges: &[(Slot, Duration)]) {
        self.ledger.settle(charges);
    }

    /// Who runs next and for how long.
    ///
    /// The candidate whose turn is due first wins: of those not ahead of their share, the one
    /// that would still be furthest behind after its slice (see [`Ledger::most_due`]); ties
    /// rotate round robin. Under work-conserving
    /// policies only busy tenants are candidates; otherwise every tenant with a share is, and an
    /// idle tenant winning means its slot passes unused.
    pub fn decide(&mut self) -> Decision {
        let n = self.policy.tenants.len();
        let wc = self.policy.kind.work_conserving();
        let order = (0..n).map(|k| (self.cursor + k) % n);
        let candidates = order
            .filter(|&i| self.targets.tenants[i] > 0.0 && (!wc || self.busy[i]))
            .map(|i| (Slot::Tenant(i), self.slice_of(i)))
            .chain((self.targets.spare > 0.0).then_some((Slot::Spare, self.policy.timeslice)))
            .map(|(s, d)| (s, d.as_nanos() as f64));
        match self.ledger.most_due(candidates) {
            Some(Slot::Tenant(i)) => {
                self.cursor = (i + 1) % n.max(1);
                let slice = self.slice_of(i);
                let turn = if self.busy[i] {
                    Turn::Run(i)
                } else {
                    Turn::Idle
                };
                Decision {
                    turn,
                    slice,
                    charge: Some(Slot::Tenant(i)),
                }
            }
            Some(Slot::Spare) => Decision {
                turn: Turn::Idle,
                slice: self.policy.timeslice,
                charge: Some(Slot::Spare),
            },
            None => Decision {
                turn: Turn::Idle,
                slice: self.policy.timeslice,
                charge: None,
            },
        }
    }

    /// Time each tenant should get over the next `period`: its share of the period plus what it
    /// is owed (minus what it owes), never negative. Used where the backend's own round robin
    /// does the switching and the scheduler only programs timeslices.
    pub fn window_plan(&self, period: Duration) -> Vec<Duration> {
        let p = period.as_nanos() as f64;
        (0..self.policy.tenants.len())
            .map(|i| {
                let share = self.targets.tenants[i];
                if share == 0.0 {
                    return Duration::ZERO;
                }
                let want = share * p + self.ledger.credit(Slot::Tenant(i));
                Duration::from_nanos(want.max(0.0) as u64)
            })
            .collect()
    }

    /// The slice tenant `i` gets when it wins a turn.
    fn slice_of(&self, i: usize) -> Duration {
        self.policy.timeslice_of(i).max(self.min_slice)
    }

    fn update(&mut self) {
        self.targets = target_shares(&self.policy, &self.attached, &self.busy);
        self.ledger
            .set_shares(&self.targets.tenants, self.targets.spare);
        let wc = self.policy.kind.work_conserving();
        for i in 0..self.policy.tenants.len() {
            // An idle tenant under a work-conserving policy gave its time away: it keeps at most
            // one slice of surplus, so returning from idle cannot starve the others.
            let surplus = if wc && !self.busy[i] {
                self.policy.timeslice_of(i)
            } else {
                self.policy.balance_period
            };
            self.ledger
                .set_limits(i, surplus, self.policy.balance_period);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::shares::tests::policy;
    use crate::policy_file::PolicyKind;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    /// Runs the planner against an ideal GPU (no switch cost) for `steps` decisions; `busy(i, t)`
    /// says whether tenant i has work at time t. Returns per-tenant run time and idle time.
    fn run_ideal(
        planner: &mut Planner,
        steps: usize,
        busy: impl Fn(usize, Duration) -> bool,
    ) -> (Vec<Duration>, Duration) {
        let n = planner.policy().tenants.len();
        let mut ran = vec![Duration::ZERO; n];
        let mut idle = Duration::ZERO;
        let mut now = Duration::ZERO;
        for _ in 0..steps {
            let b: Vec<bool> = (0..n).map(|i| busy(i, now)).collect();
            planner.set_busy(&b);
            let d = planner.decide();
            match d.turn {
                Turn::Run(i) => ran[i] += d.slice,
                Turn::Idle => idle += d.slice,
            }
            planner.settle(&d.charge.map(|c| vec![(c, d.slice)]).unwrap_or_default());
            now += d.slice;
        }
        (ran, idle)
    }

    #[test]
    fn three_to_one_alternates_exactly() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(3, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        let (ran, idle) = run_ideal(&mut p, 400, |_, _| true);
        assert_eq!(idle, Duration::ZERO);
        assert_eq!(ran[0], 600 * MS);
        assert_eq!(ran[1], 200 * MS);
    }

    #[test]
    fn weighted_gives_idle_time_away() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(1, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        let (ran, idle) = run_ideal(&mut p, 100, |i, _| i == 0);
        assert_eq!(ran[0], 200 * MS);
        assert_eq!(ran[1], Duration::ZERO);
        assert_eq!(idle, Duration::ZERO);
    }

    #[test]
    fn fixed_share_leaves_idle_slots_idle() {
        let mut p = Planner::new(policy(
            PolicyKind::FixedShare,
            &[(1, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        let (ran, idle) = run_ideal(&mut p, 100, |i, _| i == 0);
        assert_eq!(ran[0], 100 * MS);
        assert_eq!(idle, 100 * MS);
    }

    #[test]
    fn equal_share_holds_slots_of_attached_idle_tenants_only() {
        let mut p = Planner::new(policy(
            PolicyKind::EqualShare,
            &[(1, 0.0, 1.0), (1, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        p.set_attached(&[true, true, false]);
        let (ran, idle) = run_ideal(&mut p, 100, |i, _| i == 0);
        assert_eq!(ran[0], 100 * MS);
        assert_eq!(idle, 100 * MS);
    }

    #[test]
    fn max_share_caps_a_lone_tenant() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(1, 0.0, 0.25), (1, 0.0, 1.0)],
        ));
        let (ran, idle) = run_ideal(&mut p, 400, |i, _| i == 0);
        assert_eq!(ran[0], 200 * MS);
        assert_eq!(idle, 600 * MS);
    }

    #[test]
    fn min_share_is_honoured_against_heavy_weights() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(1, 0.4, 1.0), (10, 0.0, 1.0), (10, 0.0, 1.0)],
        ));
        let (ran, _) = run_ideal(&mut p, 1000, |_, _| true);
        assert_eq!(ran[0], 800 * MS);
        assert_eq!(ran[1], 600 * MS);
    }

    #[test]
    fn returning_from_idle_does_not_starve_others() {
        // Tenant 1 idles for 1 s, then both are busy: tenant 1 may catch up at most one slice.
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(1, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        let (ran, _) = run_ideal(&mut p, 600, |i, t| i == 0 || t >= Duration::from_secs(1));
        let ahead = ran[1].as_nanos() as i128 - 100 * MS.as_nanos() as i128;
        assert!(ahead.abs() <= 2 * MS.as_nanos() as i128, "{ran:?}");
    }

    #[test]
    fn min_slice_stretches_turns_but_keeps_shares() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(3, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        p.set_min_slice(10 * MS);
        let (ran, _) = run_ideal(&mut p, 400, |_, _| true);
        assert_eq!(ran[0], 3000 * MS);
        assert_eq!(ran[1], 1000 * MS);
    }

    #[test]
    fn window_plan_adds_carried_credit() {
        let mut p = Planner::new(policy(
            PolicyKind::Weighted,
            &[(3, 0.0, 1.0), (1, 0.0, 1.0)],
        ));
        p.set_busy(&[true, true]);
        p.settle(&[(Slot::Tenant(0), 10 * MS)]);
        let plan = p.window_plan(100 * MS);
        assert_eq!(plan[0], 72_500 * Duration::from_micros(1));
        assert_eq!(plan[1], 27_500 * Duration::from_micros(1));
    }

    proptest! {
        /// Always-busy tenants: every tenant's cumulative time stays within two of the longest
        /// timeslices of its exact share, at every decision.
        #[test]
        fn busy_tenants_track_their_shares(
            weights in prop::collection::vec(1u32..10, 1..33),
            slices in prop::collection::vec(1u64..5, 33),
            kind in prop::sample::select(vec![PolicyKind::Weighted, PolicyKind::BestEffort,
                PolicyKind::FixedShare, PolicyKind::EqualShare]),
        ) {
            let mut pol = policy(kind, &weights.iter().map(|&w| (w, 0.0, 1.0)).collect::<Vec<_>>());
            for (t, s) in pol.tenants.iter_mut().zip(&slices) {
                t.timeslice = Some(MS * *s as u32 / 2);
            }
            let max_slice = pol.tenants.iter().map(|t| t.timeslice.unwrap()).max().unwrap();
            let mut p = Planner::new(pol);
            let n = weights.len();
            p.set_busy(&vec![true; n]);
            let shares = p.targets().tenants.clone();
            let mut ran = vec![0f64; n];
            let mut total = 0f64;
            for _ in 0..2000 {
                let d = p.decide();
                let Turn::Run(i) = d.turn else { panic!("idle while all busy") };
                let s = d.slice.as_nanos() as f64;
                ran[i] += s;
                total += s;
                p.settle(&[(Slot::Tenant(i), d.slice)]);
                for j in 0..n {
                    let err = (ran[j] - shares[j] * total).abs();
                    prop_assert!(err <= 2.0 * max_slice.as_nanos() as f64,
                        "tenant {} off by {} ns", j, err);
                }
            }
        }

        /// Work-conserving policies never idle while someone is busy; non-work-conserving ones
        /// never give a tenant more than its share plus a slice.
        #[test]
        fn conservation_rules(
            weights in prop::collection::vec(1u32..5, 2..8),
            pattern in prop::collection::vec(any::<bool>(), 8),
            kind in prop::sample::select(vec![PolicyKind::Weighted, PolicyKind::BestEffort,
                PolicyKind::FixedShare]),
        ) {
            let mut p = Planner::new(policy(kind, &weights.iter().map(|&w| (w, 0.0, 1.0)).collect::<Vec<_>>()));
            let n = weights.len();
            let busy = |i: usize, t: Duration| pattern[(i + (t.as_millis() / 50) as usize) % 8];
            let mut now = Duration::ZERO;
            let mut ran = vec![Duration::ZERO; n];
            for _ in 0..500 {
                let b: Vec<bool> = (0..n).map(|i| busy(i, now)).collect();
                p.set_busy(&b);
                let d = p.decide();
                match d.turn {
                    Turn::Run(i) => { prop_assert!(b[i]); ran[i] += d.slice; }
                    Turn::Idle => prop_assert!(!kind.work_conserving() || !b.iter().any(|&x| x)),
                }
                p.settle(&d.charge.map(|c| vec![(c, d.slice)]).unwrap_or_default());
                now += d.slice;
            }
            if kind == PolicyKind::FixedShare {
                let sum: u32 = weights.iter().sum();
                for i in 0..n {
                    let cap = now.as_secs_f64() * f64::from(weights[i]) / f64::from(sum) + 0.004;
                    prop_assert!(ran[i].as_secs_f64() <= cap, "tenant {} ran {:?} > {}", i, ran[i], cap);
                }
            }
        }
    }
}
