//! Measures over a schedule: achieved shares per window, share error against targets, and how
//! long a policy change took to show in the shares.

use std::collections::HashMap;
use std::time::Duration;

use crate::log::{Record, SchedLog};

/// Shares of used engine time per window, from cumulative per-tenant run times sampled at
/// window boundaries (`samples[k]` = totals at the end of window k-1).
pub fn window_shares(samples: &[Vec<Duration>]) -> Vec<Vec<f64>> {
    samples
        .windows(2)
        .map(|w| {
            let d: Vec<f64> = w[1]
                .iter()
                .zip(&w[0])
                .map(|(a, b)| a.saturating_sub(*b).as_secs_f64())
                .collect();
            let total: f64 = d.iter().sum();
            d.iter()
                .map(|x| if total > 0.0 { x / total } else { 0.0 })
                .collect()
        })
        .collect()
}

/// Largest |achieved - target| over the windows and the tenants selected by `only` (None: all).
pub fn max_share_error(windows: &[Vec<f64>], targets: &[f64], only: Option<&[usize]>) -> f64 {
    let all: Vec<usize> = (0..targets.len()).collect();
    let idx = only.unwrap_or(&all);
    windows
        .iter()
        .flat_map(|w| idx.iter().map(move |&i| (w[i] - targets[i]).abs()))
        .fold(0.0, f64::max)
}

/// Shares renormalised over a subset of tenants (e.g. the always-busy ones).
pub fn renormalise(window: &[f64], subset: &[usize]) -> Vec<f64> {
    let total: f64 = subset.iter().map(|&i| window[i]).sum();
    window
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if subset.contains(&i) && total > 0.0 {
                s / total
            } else {
                0.0
            }
        })
        .collect()
}

/// Each class's share of the engine time the classified tenants ran in `[from, to)`, from the
/// log's slices clipped to that range (`classes`: tenant name to class index below `count`).
/// All zero if none of them ran.
pub fn class_shares(
    log: &SchedLog,
    from: Duration,
    to: Duration,
    classes: &HashMap<String, usize>,
    count: usize,
) -> Vec<f64> {
    let (from, to) = (from.as_nanos() as u64, to.as_nanos() as u64);
    let mut runs = vec![0.0; count];
    for s in log.slices() {
        let Some(&k) = classes.get(&s.tenant) else {
            continue;
        };
        let (a, b) = (
            s.timestamp_ns.max(from),
            (s.timestamp_ns + s.time_run_ns).min(to),
        );
        runs[k] += b.saturating_sub(a) as f64;
    }
    let total: f64 = runs.iter().sum();
    runs.iter()
        .map(|r| if total > 0.0 { r / total } else { 0.0 })
        .collect()
}

/// Time from `reload_at` to the start of the first window of length `window` from which on the
/// shares over every window (slid in 1 ms steps, up to `horizon` after the reload) stay within
/// `tolerance` of the targets: from that moment the new policy is what the GPU does.
/// Tenants are grouped into classes (`classes`: tenant name to class index) and each class's
/// summed share is compared with `class_targets`. None if they never settle within the horizon.
pub fn reload_effect_time(
    log: &SchedLog,
    reload_at: Duration,
    classes: &HashMap<String, usize>,
    class_targets: &[f64],
    window: Duration,
    tolerance: f64,
    horizon: Duration,
) -> Option<Duration> {
    const STEP: u64 = 1_000_000;
    let start = reload_at.as_nanos() as u64;
    let end = start + horizon.as_nanos() as u64 + window.as_nanos() as u64;
    let bins = ((end - start) / STEP) as usize;
    // Engine time per class per 1 ms bin after the reload.
    let mut per: Vec<Vec<f64>> = vec![vec![0.0; bins + 1]; class_targets.len()];
    for r in &log.records {
        let Record::Slice(s) = r else { continue };
        let Some(&k) = classes.get(&s.tenant) else {
            continue;
        };
        let (mut a, b) = (
            s.timestamp_ns.max(start),
            (s.timestamp_ns + s.time_run_ns).min(end),
        );
        while a < b {
            let bin = ((a - start) / STEP) as usize;
            let bin_end = start + (bin as u64 + 1) * STEP;
            let piece = b.min(bin_end) - a;
            per[k][bin] += piece as f64;
            a += piece;
        }
    }
    let w = (window.as_nanos() as u64 / STEP) as usize;
    let positions = bins.saturating_sub(w);
    if positions == 0 {
        return None;
    }
    let prefix: Vec<Vec<f64>> = per
        .iter()
        .map(|v| {
            let mut p = vec![0.0; v.len() + 1];
            for (i, x) in v.iter().enumerate() {
                p[i + 1] = p[i] + x;
            }
            p
        })
        .collect();
    let error_at = |pos: usize| -> f64 {
        let runs: Vec<f64> = prefix.iter().map(|p| p[pos + w] - p[pos]).collect();
        let total: f64 = runs.iter().sum();
        if total <= 0.0 {
            return 1.0;
        }
        class_targets
            .iter()
            .zip(&runs)
            .map(|(t, r)| (r / total - t).abs())
            .fold(0.0, f64::max)
    };
    let errors: Vec<f64> = (0..positions).map(error_at).collect();
    // Earliest position from which no window exceeds the tolerance.
    let mut first_good = None;
    for pos in (0..positions).rev() {
        if errors[pos] > tolerance {
            break;
        }
        first_good = Some(pos);
    }
    first_good.map(|pos| Duration::from_nanos(pos as u64 * STEP))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::slice;

    const MS: Duration = Duration::from_millis(1);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn shares_and_errors() {
        let samples = vec![
            vec![Duration::ZERO, Duration::ZERO],
            vec![750 * MS, 250 * MS],
            vec![1490 * MS, 510 * MS],
        ];
        let w = window_shares(&samples);
        assert_eq!(w[0], vec![0.75, 0.25]);
        let e = max_share_error(&w, &[0.75, 0.25], None);
        assert!((e - 0.01).abs() < 1e-9, "{e}");
        assert_eq!(
            renormalise(&[0.2, 0.3, 0.5], &[0, 2]),
            vec![0.2 / 0.7, 0.0, 0.5 / 0.7]
        );
    }

    #[test]
    fn effect_time_finds_the_switch() {
        // 3:1 in 4 ms rounds until 100 ms, then 1:1 in 2 ms rounds.
        let mut log = SchedLog::default();
        let mut t = 0u64;
        let mut push = |tenant: &str, d: u64, t: &mut u64| {
            log.push(slice(*t, tenant, d));
            *t += d;
        };
        while t < 100_000_000 {
            push("a", 3_000_000, &mut t);
            push("b", 1_000_000, &mut t);
        }
        while t < 1_000_000_000 {
            push("a", 1_000_000, &mut t);
            push("b", 1_000_000, &mut t);
        }
        let classes: HashMap<String, usize> = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        let d = reload_effect_time(
            &log,
            50 * MS,
            &classes,
            &[0.5, 0.5],
            20 * MS,
            0.02,
            500 * MS,
        )
        .unwrap();
        // The split changes at 100 ms, 50 ms after the reload; a window starting 1 ms early
        // is already within 2 points.
        assert!(d >= 45 * MS && d <= 50 * MS, "{d:?}");
        // 3:1 before 100 ms, 1:1 after; clipped at both ends.
        let s = class_shares(&log, 90 * MS, 102 * MS, &classes, 2);
        assert!((s[0] - 8.0 / 12.0).abs() < 1e-9, "{s:?}");
        assert_eq!(
            class_shares(&log, 2 * SEC, 3 * SEC, &classes, 2),
            [0.0, 0.0]
        );
    }
}
