//! Target shares: what fraction of the GPU each tenant should get right now, given the policy,
//! which tenants are attached and which have work.

use crate::policy_file::{Policy, PolicyKind};

/// Target shares for one moment: per tenant, plus the part that stays idle.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Fraction of GPU time per tenant, in policy order; 0 for tenants not eligible now.
    pub tenants: Vec<f64>,
    /// Fraction that no tenant may use (max-share caps leave it over); the GPU idles for it.
    pub spare: f64,
}

/// Computes target shares.
///
/// Eligible tenants and their base weights depend on the policy: best effort and weighted
/// consider tenants that are attached and busy (work-conserving), equal share every attached
/// tenant with weight 1, fixed share every configured tenant with its weight (an idle or absent
/// tenant keeps its slot). Shares are then `clamp(λ·weight, min, max)` with λ chosen so that
/// they add up to 1, or to less when every eligible tenant is at its cap.
pub fn target_shares(policy: &Policy, attached: &[bool], busy: &[bool]) -> Targets {
    let n = policy.tenants.len();
    let mut weight = vec![0.0f64; n];
    for (i, t) in policy.tenants.iter().enumerate() {
        let is_attached = attached.get(i).copied().unwrap_or(false);
        let is_busy = busy.get(i).copied().unwrap_or(false);
        weight[i] = match policy.kind {
            PolicyKind::BestEffort if is_attached && is_busy => 1.0,
            PolicyKind::Weighted if is_attached && is_busy => f64::from(t.weight),
            PolicyKind::EqualShare if is_attached => 1.0,
            PolicyKind::FixedShare => f64::from(t.weight),
            _ => 0.0,
        };
    }
    let lo: Vec<f64> = (0..n)
        .map(|i| {
            if weight[i] > 0.0 {
                policy.tenants[i].min_share
            } else {
                0.0
            }
        })
        .collect();
    let hi: Vec<f64> = (0..n)
        .map(|i| {
            if weight[i] > 0.0 {
                policy.tenants[i].max_share
            } else {
                0.0
            }
        })
        .collect();
    let fill = |lambda: f64| -> Vec<f64> {
        (0..n)
            .map(|i| (lambda * weight[i]).clamp(lo[i], hi[i]))
            .collect()
    };
    let sum_hi: f64 = hi.iter().sum();
    let shares = if sum_hi <= 1.0 {
        hi
    } else {
        // Σ clamp(λ·w, lo, hi) is continuous and non-decreasing in λ; bisect for Σ = 1.
        let min_w = weight
            .iter()
            .copied()
            .filter(|&w| w > 0.0)
            .fold(f64::INFINITY, f64::min);
        let (mut a, mut b) = (0.0f64, 1.0 / min_w);
        for _ in 0..200 {
            let mid = 0.5 * (a + b);
            if fill(mid).iter().sum::<f64>() < 1.0 {
                a = mid;
            } else {
                b = mid;
            }
        }
        let mut s = fill(b);
        let total: f64 = s.iter().sum();
        if total > 1.0 {
            // Remove bisection residue from the unclamped tenants so the sum is exactly 1.
            let free: Vec<usize> = (0..n).filter(|&i| s[i] > lo[i] && s[i] < hi[i]).collect();
            let free_sum: f64 = free.iter().map(|&i| s[i]).sum();
            if free_sum > 0.0 {
                let excess = total - 1.0;
                for &i in &free {
                    s[i] -= excess * s[i] / free_sum;
                }
            }
        }
        s
    };
    let spare = (1.0 - shares.iter().sum::<f64>()).max(0.0);
    let spare = if spare < 1e-12 { 0.0 } else { spare };
    Targets {
        tenants: shares,
        spare,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::policy_file::{Priority, Tenant};
    use proptest::prelude::*;
    use std::time::Duration;

    pub(crate) fn policy(kind: PolicyKind, tenants: &[(u32, f64, f64)]) -> Policy {
        Policy {
            kind,
            timeslice: Duration::from_millis(2),
            balance_period: Duration::from_millis(100),
            tenants: tenants
                .iter()
                .enumerate()
                .map(|(i, &(weight, min_share, max_share))| Tenant {
                    name: format!("t{i}"),
                    vgpus: vec![],
                    gfids: vec![i as u32 + 1],
                    weight,
                    min_share,
                    max_share,
                    timeslice: None,
                    priority: Priority::Low,
                    binding: Default::default(),
                })
                .collect(),
        }
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn weighted_follows_weights_among_busy() {
        let p = policy(
            PolicyKind::Weighted,
            &[(3, 0.0, 1.0), (1, 0.0, 1.0), (4, 0.0, 1.0)],
        );
        let t = target_shares(&p, &[true; 3], &[true, true, false]);
        assert!(close(&t.tenants, &[0.75, 0.25, 0.0]), "{t:?}");
        assert_eq!(t.spare, 0.0);
    }

    #[test]
    fn best_effort_is_equal_among_busy() {
        let p = policy(
            PolicyKind::BestEffort,
            &[(3, 0.0, 1.0), (1, 0.0, 1.0), (1, 0.0, 1.0)],
        );
        let t = target_shares(&p, &[true; 3], &[true, false, true]);
        assert!(close(&t.tenants, &[0.5, 0.0, 0.5]), "{t:?}");
    }

    #[test]
    fn equal_share_counts_attached_not_busy() {
        let p = policy(
            PolicyKind::EqualShare,
            &[(9, 0.0, 1.0), (1, 0.0, 1.0), (1, 0.0, 1.0)],
        );
        let t = target_shares(&p, &[true, true, false], &[true, false, false]);
        assert!(close(&t.tenants, &[0.5, 0.5, 0.0]), "{t:?}");
    }

    #[test]
    fn fixed_share_keeps_slots_of_idle_and_absent_tenants() {
        let p = policy(
            PolicyKind::FixedShare,
            &[(1, 0.0, 1.0), (1, 0.0, 1.0), (2, 0.0, 1.0)],
        );
        let t = target_shares(&p, &[true, false, true], &[true, false, false]);
        assert!(close(&t.tenants, &[0.25, 0.25, 0.5]), "{t:?}");
    }

    #[test]
    fn min_share_lifts_a_small_weight() {
        let p = policy(PolicyKind::Weighted, &[(1, 0.3, 1.0), (9, 0.0, 1.0)]);
        let t = target_shares(&p, &[true; 2], &[true; 2]);
        assert!(close(&t.tenants, &[0.3, 0.7]), "{t:?}");
    }

    #[test]
    fn max_share_caps_and_leaves_spare_when_alone() {
        let p = policy(PolicyKind::Weighted, &[(4, 0.0, 0.3), (1, 0.0, 1.0)]);
        let t = target_shares(&p, &[true; 2], &[true; 2]);
        assert!(close(&t.tenants, &[0.3, 0.7]), "{t:?}");
        let t = target_shares(&p, &[true; 2], &[true, false]);
        assert!(close(&t.tenants, &[0.3, 0.0]), "{t:?}");
        assert!((t.spare - 0.7).abs() < 1e-9);
    }

    #[test]
    fn nobody_busy_means_all_spare() {
        let p = policy(PolicyKind::Weighted, &[(1, 0.0, 1.0)]);
        let t = target_shares(&p, &[true], &[false]);
        assert_eq!(t.tenants, vec![0.0]);
        assert_eq!(t.spare, 1.0);
    }

    fn tenant_strategy() -> impl Strategy<Value = (u32, f64, f64, bool)> {
        (1u32..20, 0.0f64..0.2, 0.05f64..1.0, any::<bool>())
            .prop_map(|(w, lo, hi, busy)| (w, lo.min(hi), hi, busy))
    }

    proptest! {
        #[test]
        fn shares_respect_bounds_and_sum(
            ts in prop::collection::vec(tenant_strategy(), 1..12),
            kind in prop::sample::select(vec![
                PolicyKind::BestEffort, PolicyKind::EqualShare,
                PolicyKind::FixedShare, PolicyKind::Weighted]),
        ) {
            let mins: f64 = ts.iter().map(|t| t.1).sum();
            prop_assume!(mins <= 1.0);
            let p = policy(kind, &ts.iter().map(|t| (t.0, t.1, t.2)).collect::<Vec<_>>());
            let busy: Vec<bool> = ts.iter().map(|t| t.3).collect();
            let attached = vec![true; ts.len()];
            let t = target_shares(&p, &attached, &busy);
            let sum: f64 = t.tenants.iter().sum();
            prop_assert!((sum + t.spare - 1.0).abs() < 1e-9);
            let mut sum_hi = 0.0;
            for (i, s) in t.tenants.iter().enumerate() {
                let eligible = !kind.work_conserving() || busy[i];
                if !eligible {
                    prop_assert_eq!(*s, 0.0);
                    continue;
                }
                sum_hi += ts[i].2;
                prop_assert!(*s >= ts[i].1 - 1e-9 && *s <= ts[i].2 + 1e-9, "{} not in bounds", s);
            }
            // Spare only when every eligible tenant is capped.
            if sum_hi > 1.0 + 1e-9 {
                prop_assert!(t.spare < 1e-9, "spare {} though caps allow more", t.spare);
            }
            // Unclamped tenants are proportional to their base weight.
            let base = |i: usize| match kind {
                PolicyKind::BestEffort | PolicyKind::EqualShare => 1.0,
                _ => f64::from(ts[i].0),
            };
            let free: Vec<usize> = (0..ts.len())
                .filter(|&i| (!kind.work_conserving() || busy[i])
                    && t.tenants[i] > ts[i].1 + 1e-7 && t.tenants[i] < ts[i].2 - 1e-7)
                .collect();
            for w in free.windows(2) {
                let (a, b) = (w[0], w[1]);
                prop_assert!((t.tenants[a] / base(a) - t.tenants[b] / base(b)).abs() < 1e-6);
            }
        }
    }
}
