//! Credit accounting: each tenant earns its target share of the time that is handed out and
//! pays for the time it uses. The balance (credit when owed time, debt when ahead) carries over
//! between decisions and balance windows, bounded so that neither a long-idle tenant nor an old
//! overshoot can distort the present (GVT-g carries debt for ten 100 ms stages and then drops
//! it all at once; here the bound is continuous and never drops a balance inside its range).

use std::time::Duration;

/// Who a piece of time is charged to: a tenant, or the spare time that max-share caps leave idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Tenant by policy index.
    Tenant(usize),
    /// The idle remainder left by caps.
    Spare,
}

/// Per-tenant balances in nanoseconds; positive means the tenant is owed time.
#[derive(Debug, Clone)]
pub struct Ledger {
    credit: Vec<f64>,
    spare_credit: f64,
    shares: Vec<f64>,
    spare_share: f64,
    /// Upper bound of each tenant's credit.
    surplus_limit: Vec<f64>,
    /// Lower bound (as a positive number) of each tenant's debt.
    debt_limit: Vec<f64>,
}

impl Ledger {
    /// A ledger for `n` tenants, all balances zero, bounds `limit` either way.
    pub fn new(n: usize, limit: Duration) -> Self {
        let l = limit.as_nanos() as f64;
        Self {
            credit: vec![0.0; n],
            spare_credit: 0.0,
            shares: vec![0.0; n],
            spare_share: 0.0,
            surplus_limit: vec![l; n],
            debt_limit: vec![l; n],
        }
    }

    /// Sets the shares time is earned at from now on.
    pub fn set_shares(&mut self, tenants: &[f64], spare: f64) {
        self.shares.copy_from_slice(tenants);
        self.spare_share = spare;
    }

    /// Sets the bounds of one tenant's balance (e.g. tighter surplus while it is idle).
    pub fn set_limits(&mut self, tenant: usize, surplus: Duration, debt: Duration) {
        self.surplus_limit[tenant] = surplus.as_nanos() as f64;
        self.debt_limit[tenant] = debt.as_nanos() as f64;
        self.clamp(tenant);
    }

    /// Balance of a slot in nanoseconds.
    pub fn credit(&self, slot: Slot) -> f64 {
        match slot {
            Slot::Tenant(i) => self.credit[i],
            Slot::Spare => self.spare_credit,
        }
    }

    /// Records that `charges` were handed out: everyone earns its share of their total, each
    /// charged slot pays what it got. Time handed to nobody (switch overhead) earns nothing.
    pub fn settle(&mut self, charges: &[(Slot, Duration)]) {
        let total: f64 = charges.iter().map(|(_, d)| d.as_nanos() as f64).sum();
        for (c, s) in self.credit.iter_mut().zip(&self.shares) {
            *c += s * total;
        }
        self.spare_credit += self.spare_share * total;
        for &(slot, d) in charges {
            let d = d.as_nanos() as f64;
            match slot {
                Slot::Tenant(i) => self.credit[i] -= d,
                Slot::Spare => self.spare_credit -= d,
            }
        }
        for i in 0..self.credit.len() {
            self.clamp(i);
        }
        let spare_limit = self.surplus_limit.iter().copied().fold(0.0, f64::max);
        self.spare_credit = self.spare_credit.clamp(-spare_limit, spare_limit);
        if self.spare_share == 0.0 {
            self.spare_credit = self.spare_credit.min(0.0);
        }
    }

    /// Among `candidates`, the slot with the largest balance; ties go to the earliest in the list.
    pub fn richest(&self, candidates: impl IntoIterator<Item = Slot>) -> Option<Slot> {
        let mut best: Option<(Slot, f64)> = None;
        for s in candidates {
            let c = self.credit(s);
            if best.is_none_or(|(_, b)| c > b + 1e-6) {
                best = Some((s, c));
            }
        }
        best.map(|(s, _)| s)
    }

    /// Among `candidates`, the slot furthest behind relative to its share (largest
    /// credit / share): the one whose owed time would take longest to earn again. Compared with
    /// the largest absolute credit this spreads small shares evenly instead of in bursts (as
    /// stride scheduling does). Slots without a share are never chosen; ties go to the earliest.
    pub fn most_behind(&self, candidates: impl IntoIterator<Item = Slot>) -> Option<Slot> {
        let mut best: Option<(Slot, f64)> = None;
        for s in candidates {
            let share = self.share(s);
            if share <= 0.0 {
                continue;
            }
            let lag = self.credit(s) / share;
            if best.is_none_or(|(_, b)| lag > b + 1e-3) {
                best = Some((s, lag));
            }
        }
        best.map(|(s, _)| s)
    }

    /// Among `candidates` (each a slot and the slice it would get, in nanoseconds), the slot
    /// whose turn is due first, as in EEVDF (Stoica and Abdel-Wahab, 1995): of the slots not
    /// ahead of their share (credit ≥ 0, "eligible"), the one with the earliest virtual deadline,
    /// that is the largest `(credit − slice) / share`: the one that would still be furthest
    /// behind after its slice. Weighing the slice in matters when slices differ: choosing by
    /// credit alone ([`Ledger::most_behind`]) lets every tenant with a long slice run once
    /// before a large-share tenant with a short slice gets back in, so that tenant falls behind
    /// by its share of all the others' slices together. With the deadline rule and shares that
    /// add up to 1, no balance leaves (−slice, longest slice). Slots without a share are never
    /// chosen; when no candidate is eligible (balances clamped, time handed to nobody) the one
    /// furthest behind wins.
    ///
    /// Balances less than a hundredth of a slice apart count as level and the tie goes to the
    /// earliest candidate (the planner lists them in rotation order after the last runner).
    /// Measured charges jitter by microseconds (switch tails, preemption granularity); compared
    /// exactly, that jitter reorders equal tenants every round, and the drifting order bunches
    /// tenants into long runs that skew every window shorter than a few rounds.
    pub fn most_due(&self, candidates: impl IntoIterator<Item = (Slot, f64)>) -> Option<Slot> {
        /// Rounding slack of a balance in nanoseconds; below it a balance counts as zero.
        const EPSILON: f64 = 1.0;
        /// Fraction of a slice within which two balances count as level.
        const TIE: f64 = 0.01;
        let mut best: Option<(Slot, f64)> = None;
        let mut behind: Option<(Slot, f64)> = None;
        for (s, slice) in candidates {
            let share = self.share(s);
            if share <= 0.0 {
                continue;
            }
            let credit = self.credit(s);
            let tie = (TIE * slice).max(1e-3) / share;
            let lag = credit / share;
            if behind.is_none_or(|(_, b)| lag > b + tie) {
                behind = Some((s, lag));
            }
            let deadline = (credit - slice) / share;
            if credit >= -EPSILON && best.is_none_or(|(_, b)| deadline > b + tie) {
                best = Some((s, deadline));
            }
        }
        best.or(behind).map(|(s, _)| s)
    }

    /// Forgets all balances (a new policy starts clean).
    pub fn reset(&mut self) {
        self.credit.iter_mut().for_each(|c| *c = 0.0);
        self.spare_credit = 0.0;
    }

    fn share(&self, slot: Slot) -> f64 {
        match slot {
            Slot::Tenant(i) => self.shares[i],
            Slot::Spare => self.spare_share,
        }
    }

    fn clamp(&mut self, i: usize) {
        self.credit[i] = self.credit[i].clamp(-self.debt_limit[i], self.surplus_limit[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn earn_and_pay() {
        let mut l = Ledger::new(2, 100 * MS);
        l.set_shares(&[0.75, 0.25], 0.0);
        l.settle(&[(Slot::Tenant(0), 2 * MS)]);
        assert_eq!(l.credit(Slot::Tenant(0)), -0.5e6);
        assert_eq!(l.credit(Slot::Tenant(1)), 0.5e6);
        assert_eq!(
            l.richest([Slot::Tenant(0), Slot::Tenant(1)]),
            Some(Slot::Tenant(1))
        );
    }

    #[test]
    fn balances_are_bounded_both_ways() {
        let mut l = Ledger::new(2, 3 * MS);
        l.set_shares(&[0.5, 0.5], 0.0);
        l.settle(&[(Slot::Tenant(0), 100 * MS)]);
        assert_eq!(l.credit(Slot::Tenant(0)), -3e6);
        assert_eq!(l.credit(Slot::Tenant(1)), 3e6);
        l.set_limits(1, MS, 3 * MS);
        assert_eq!(l.credit(Slot::Tenant(1)), 1e6);
    }

    #[test]
    fn unassigned_time_earns_nothing() {
        let mut l = Ledger::new(2, 100 * MS);
        l.set_shares(&[0.5, 0.5], 0.0);
        l.settle(&[]);
        assert_eq!(l.credit(Slot::Tenant(0)), 0.0);
        assert_eq!(l.credit(Slot::Tenant(1)), 0.0);
    }

    #[test]
    fn spare_earns_its_share() {
        let mut l = Ledger::new(1, 100 * MS);
        l.set_shares(&[0.3], 0.7);
        l.settle(&[(Slot::Tenant(0), 10 * MS)]);
        assert!((l.credit(Slot::Spare) - 7e6).abs() < 1e-3);
        assert_eq!(l.richest([Slot::Tenant(0), Slot::Spare]), Some(Slot::Spare));
        l.reset();
        assert_eq!(l.credit(Slot::Spare), 0.0);
    }

    #[test]
    fn most_behind_weighs_credit_by_share() {
        let mut l = Ledger::new(2, 100 * MS);
        l.set_shares(&[0.9, 0.1], 0.0);
        // Tenant 0 ran 2 ms: it owes 0.2 ms, tenant 1 is owed 0.2 ms.
        l.settle(&[(Slot::Tenant(0), 2 * MS)]);
        assert_eq!(
            l.most_behind([Slot::Tenant(0), Slot::Tenant(1)]),
            Some(Slot::Tenant(1))
        );
        l.set_shares(&[1.0, 0.0], 0.0);
        assert_eq!(
            l.most_behind([Slot::Tenant(1)]),
            None,
            "no share, never chosen"
        );
    }

    #[test]
    fn most_due_weighs_in_the_slice() {
        let mut l = Ledger::new(3, 100 * MS);
        l.set_shares(&[0.7, 0.15, 0.15], 0.0);
        // Tenant 1 ran 1.5 ms: tenant 0 is owed 1.05 ms, tenant 2 0.225 ms.
        l.settle(&[(Slot::Tenant(1), 1500 * Duration::from_micros(1))]);
        let (t0, t2) = (Slot::Tenant(0), Slot::Tenant(2));
        // By credit per share tenant 2 (1.5 ms) is level with tenant 0 and listed first...
        assert_eq!(l.most_behind([t2, t0]), Some(t2));
        // ...but its 1.5 ms slice would take it far ahead, tenant 0's 0.5 ms would not.
        assert_eq!(l.most_due([(t2, 1.5e6), (t0, 0.5e6)]), Some(t0));
        // A slot ahead of its share is not eligible while another is.
        assert_eq!(l.most_due([(Slot::Tenant(1), 0.0), (t2, 1.5e6)]), Some(t2));
        assert_eq!(l.most_due([(Slot::Tenant(1), 0.0)]), Some(Slot::Tenant(1)));
    }

    #[test]
    fn most_due_treats_jitter_as_a_tie() {
        let mut l = Ledger::new(3, 100 * MS);
        l.set_shares(&[1.0 / 3.0; 3], 0.0);
        // Tenant 0 ran a little longer than 2 ms, tenant 1 a few microseconds less than tenant 2:
        // both are slightly owed time.
        let us = Duration::from_micros(1);
        l.settle(&[
            (Slot::Tenant(0), 2010 * us),
            (Slot::Tenant(1), 1995 * us),
            (Slot::Tenant(2), 2 * MS),
        ]);
        let c = |i| (Slot::Tenant(i), 2e6);
        // 5 µs of 2 ms slices is jitter: the first listed wins, whichever it is.
        assert_eq!(l.most_due([c(2), c(1)]), Some(Slot::Tenant(2)));
        assert_eq!(l.most_due([c(1), c(2)]), Some(Slot::Tenant(1)));
        // A real difference still counts.
        l.settle(&[(Slot::Tenant(2), MS)]);
        assert_eq!(l.most_due([c(2), c(1)]), Some(Slot::Tenant(1)));
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        let l = Ledger::new(3, MS);
        assert_eq!(
            l.richest([Slot::Tenant(2), Slot::Tenant(0)]),
            Some(Slot::Tenant(2))
        );
        assert_eq!(l.richest([]), None);
    }
}
