//! Policy files: the TOML a host administrator (or a tenant's tooling) hands vgpud and
//! `vgpu-sched`, parsed and validated by [`Policy::parse`].
//!
//! Checked: every input is a policy or an error; an error is one line naming the file and a
//! line of the text; an accepted policy keeps the rules the parser promises (unique non-empty
//! names, unique GFIDs in 1..=65535, weights in 1..=[`MAX_WEIGHT`], shares with
//! `0 <= min <= max <= 1`, minimums adding up to at most 1, timeslices within bounds), and the
//! scheduler's share computation and planner run on it without a share outside `0..=max`.

use std::collections::BTreeSet;

use scheduler::policy::planner::Planner;
use scheduler::policy::shares::target_shares;
use scheduler::policy_file::{
    Policy, PolicyError, MAX_BALANCE_PERIOD, MAX_TIMESLICE, MAX_WEIGHT, MIN_TIMESLICE,
};

const FILE: &str = "fuzz.toml";

/// Runs one input: the bytes as a policy file's text (invalid UTF-8 replaced).
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Policy::parse(&text, FILE) {
        Ok(p) => check_policy(&p, data),
        Err(e) => {
            let shown = e.to_string();
            assert!(!shown.contains('\n'), "a multi-line error: {shown:?}");
            assert!(
                shown.starts_with(FILE),
                "the error does not name the file: {shown}"
            );
            let lines = text.lines().count().max(1);
            let line = e.line().expect("parse errors point at a line");
            assert!(
                (1..=lines + 1).contains(&line),
                "line {line} of a {lines}-line file"
            );
            assert!(matches!(e, PolicyError::Invalid { .. }));
        }
    }
}

fn check_policy(p: &Policy, data: &[u8]) {
    assert!(!p.to_string().contains('\n'));
    assert!((MIN_TIMESLICE..=MAX_TIMESLICE).contains(&p.timeslice));
    assert!(p.balance_period >= p.timeslice && p.balance_period <= MAX_BALANCE_PERIOD);
    let mut names = BTreeSet::new();
    let mut gfids = BTreeSet::new();
    let mut vgpus = BTreeSet::new();
    let mut min_sum = 0.0;
    for (i, t) in p.tenants.iter().enumerate() {
        assert!(
            !t.name.is_empty() && names.insert(t.name.clone()),
            "name {:?}",
            t.name
        );
        for &g in &t.gfids {
            assert!(
                (1..=u32::from(u16::MAX)).contains(&g) && gfids.insert(g),
                "GFID {g}"
            );
        }
        for v in &t.vgpus {
            assert!(vgpus.insert(v.clone()), "vGPU {v} twice");
        }
        assert!((1..=MAX_WEIGHT).contains(&t.weight), "weight {}", t.weight);
        assert!(
            (0.0..=t.max_share).contains(&t.min_share) && t.max_share <= 1.0 && t.max_share > 0.0,
            "shares {} {}",
            t.min_share,
            t.max_share
        );
        min_sum += t.min_share;
        let ts = p.timeslice_of(i);
        assert!(
            (MIN_TIMESLICE..=MAX_TIMESLICE).contains(&ts),
            "timeslice {ts:?}"
        );
        assert_eq!(
            p.tenant_of_gfid(t.gfids.first().copied().unwrap_or(0))
                .is_some(),
            !t.gfids.is_empty()
        );
    }
    assert!(min_sum <= 1.0 + 1e-9, "minimum shares add up to {min_sum}");

    // The shares the scheduler derives, for every tenant busy and for a pattern from the bytes.
    let n = p.tenants.len();
    let pattern: Vec<bool> = (0..n)
        .map(|i| data.get(i).is_some_and(|b| b & 1 == 1))
        .collect();
    for (attached, busy) in [(vec![true; n], vec![true; n]), (pattern.clone(), pattern)] {
        let t = target_shares(p, &attached, &busy);
        let sum: f64 = t.tenants.iter().sum();
        assert!(t.spare.is_finite() && t.spare >= -1e-9, "spare {}", t.spare);
        assert!(sum <= 1.0 + 1e-6, "shares add up to {sum}");
        for (i, s) in t.tenants.iter().enumerate() {
            assert!(
                s.is_finite() && *s >= 0.0 && *s <= p.tenants[i].max_share + 1e-6,
                "tenant {i} share {s}"
            );
        }
    }
    let mut planner = Planner::new(p.clone());
    planner.set_attached(&vec![true; n]);
    planner.set_busy(&vec![true; n]);
    for _ in 0..4 {
        let _ = planner.decide();
    }
    for d in planner.window_plan(p.balance_period) {
        assert!(
            d <= 2 * p.balance_period + MAX_TIMESLICE,
            "a window plan of {d:?}"
        );
    }
}
