//! The scheduler benchmark: tenants 2, 4, 8, 32; weights 1:1, 3:1, 1:2:3:4 (repeated over the
//! tenants); always-busy and bursty loads. Per case: the largest share error of always-busy
//! tenants over 1 s windows after the first second, aggregate throughput against one tenant
//! alone on the same GPU in the same run, and for a 3:1 -> 1:1 reload: the time until the split
//! is the new one, the latency to the first decision under the new policy, and the split in the
//! first balance period after it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::analysis::{
    class_shares, max_share_error, reload_effect_time, renormalise, window_shares,
};
use crate::experiment::{run, Experiment, ExperimentError, Outcome};
use crate::mechanism::load::LoadPattern;
use crate::policy_file::{Policy, Priority, Tenant, DEFAULT_BALANCE_PERIOD, DEFAULT_TIMESLICE};
use crate::scheduler::{Method, ReloadLatency};
use crate::testbed::Testbed;

/// Weight patterns the benchmark uses, repeated over the tenants.
pub const WEIGHT_PATTERNS: [&[u32]; 3] = [&[1, 1], &[3, 1], &[1, 2, 3, 4]];
/// Tenant counts the benchmark uses.
pub const TENANT_COUNTS: [usize; 4] = [2, 4, 8, 32];

/// The two load mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMix {
    /// Every tenant always has work.
    Busy,
    /// Even-numbered tenants always busy; odd-numbered ones get a batch every 100 ms worth
    /// half the GPU divided by the tenant count.
    Bursty,
}

impl LoadMix {
    /// Name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Bursty => "bursty",
        }
    }

    /// The load of each of `n` tenants.
    pub fn loads(self, n: usize) -> Vec<LoadPattern> {
        (0..n)
            .map(|i| match self {
                Self::Busy => LoadPattern::Busy,
                Self::Bursty if i % 2 == 0 => LoadPattern::Busy,
                Self::Bursty => LoadPattern::Bursty {
                    period: Duration::from_millis(100),
                    work: Duration::from_nanos(50_000_000 / n as u64),
                },
            })
            .collect()
    }
}

/// A weighted policy for `n` tenants with weights `pattern` repeated; tenant i owns GFID i+1.
pub fn weighted_policy(n: usize, pattern: &[u32]) -> Policy {
    Policy {
        kind: crate::policy_file::PolicyKind::Weighted,
        timeslice: DEFAULT_TIMESLICE,
        balance_period: DEFAULT_BALANCE_PERIOD,
        tenants: (0..n)
            .map(|i| Tenant {
                name: format!("t{i:02}"),
                vgpus: vec![],
                gfids: vec![i as u32 + 1],
                weight: pattern[i % pattern.len()],
                min_share: 0.0,
                max_share: 1.0,
                timeslice: None,
                priority: Priority::Low,
                binding: Default::default(),
            })
            .collect(),
    }
}

/// One benchmark row.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// Tenants.
    pub tenants: usize,
    /// Weight pattern, e.g. "3:1".
    pub weights: String,
    /// Load mix.
    pub load: LoadMix,
    /// Method used.
    pub method: Method,
    /// Largest |achieved - target| share of always-busy tenants over 1 s windows after the
    /// first, in percentage points (bursty mix: shares among the always-busy tenants).
    pub max_error_pp: f64,
    /// All tenants' work over one tenant alone, same GPU, same duration.
    pub throughput: f64,
    /// Bursty mix: the smallest fraction of its offered work any bursty tenant got done
    /// (work-conserving policies should serve bursty tenants fully while their demand is below
    /// their share). None for the busy mix.
    pub bursty_served: Option<f64>,
    /// The 3:1 -> 1:1 reload (same tenant count and method, all busy).
    pub reload: ReloadMeasure,
}

/// What a 3:1 -> 1:1 reload did (see [`reload_case`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReloadMeasure {
    /// From the reload until the weight-3 tenants' split stays at its new target (None: not
    /// within 1 s).
    pub effect: Option<Duration>,
    /// From the reload to the first scheduling decision carried out under the new policy.
    pub first_decision: Option<ReloadLatency>,
    /// The weight-3 tenants' summed share of engine time in the first balance period after
    /// the reload (target 0.5).
    pub first_period_share: f64,
}

/// Benchmark settings.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// GPU time per case.
    pub duration: Duration,
    /// Methods to run (None: chosen from capabilities).
    pub methods: Vec<Option<Method>>,
    /// Tenant counts.
    pub tenant_counts: Vec<usize>,
}

/// Runs the benchmark; `make_gpu` builds a fresh GPU for each run; `progress` gets each row.
pub fn run_bench<T: Testbed>(
    cfg: &BenchConfig,
    make_gpu: impl Fn() -> T,
    mut progress: impl FnMut(&BenchRow),
) -> Result<Vec<BenchRow>, ExperimentError> {
    let mut rows = Vec::new();
    for &method in &cfg.methods {
        // Baseline: one always-busy tenant alone.
        let alone = run_quietly(
            make_gpu(),
            &Experiment::new(
                weighted_policy(1, &[1]),
                vec![LoadPattern::Busy],
                cfg.duration,
                method,
            ),
        )?;
        let alone_work = alone.work[0].as_secs_f64();
        for &n in &cfg.tenant_counts {
            let reload = reload_case(&make_gpu, n, method, Duration::from_secs(2))?;
            for load in [LoadMix::Busy, LoadMix::Bursty] {
                for pattern in WEIGHT_PATTERNS {
                    let policy = weighted_policy(n, pattern);
                    let loads = load.loads(n);
                    let out = run_quietly(
                        make_gpu(),
                        &Experiment::new(policy.clone(), loads.clone(), cfg.duration, method),
                    )?;
                    let busy: Vec<usize> =
                        (0..n).filter(|&i| loads[i] == LoadPattern::Busy).collect();
                    let weights: Vec<f64> =
                        policy.tenants.iter().map(|t| f64::from(t.weight)).collect();
                    let targets = renormalise(&weights, &busy);
                    let windows: Vec<Vec<f64>> = window_shares(&out.samples)
                        .iter()
                        .skip(1)
                        .map(|w| renormalise(w, &busy))
                        .collect();
                    let err = max_share_error(&windows, &targets, Some(&busy));
                    let total: f64 = out.work.iter().map(|w| w.as_secs_f64()).sum();
                    let bursty_served = (0..n)
                        .filter(|&i| matches!(loads[i], LoadPattern::Bursty { .. }))
                        .filter_map(|i| {
                            // Work that arrived early enough to be finished by the end.
                            let LoadPattern::Bursty { period, .. } = loads[i] else {
                                return None;
                            };
                            let offered = loads[i].arrived_by(out.end.saturating_sub(period))?;
                            Some((out.work[i].as_secs_f64() / offered.as_secs_f64()).min(1.0))
                        })
                        .reduce(f64::min);
                    let row = BenchRow {
                        tenants: n,
                        weights: pattern
                            .iter()
                            .map(|w| w.to_string())
                            .collect::<Vec<_>>()
                            .join(":"),
                        load,
                        method: out.method,
                        max_error_pp: err * 100.0,
                        throughput: total / alone_work,
                        bursty_served,
                        reload,
                    };
                    progress(&row);
                    rows.push(row);
                }
            }
        }
    }
    Ok(rows)
}

/// Runs an experiment without a policy watcher or progress reports.
fn run_quietly<T: Testbed>(gpu: T, exp: &Experiment) -> Result<Outcome, ExperimentError> {
    run(gpu, exp, None, |_| {})
}

/// Runs 3:1 for 2 s with every tenant busy, reloads to 1:1, and measures from when on the
/// weight-3 tenants' summed share over every window is within a quarter of the change
/// (25 -> 6.25 points) of its new target (see [`reload_effect_time`]). The window is two
/// balance periods, or twenty of the longest turns seen if that is longer (a split cannot be
/// resolved in a window holding only a few turns).
/// With bursty tenants the 3:1 -> 1:1 change moves no always-busy share (the bursty tenants
/// get their demand either way), so it is measured with busy tenants only. The reload happens
/// at 2 s; the effect time counts from `measure_from` (2 s gives the reload-to-effect time).
/// Also measured: the latency to the first decision under the new policy, and the weight-3
/// tenants' summed share in the first balance period after the reload.
pub fn reload_case<T: Testbed>(
    make_gpu: &impl Fn() -> T,
    n: usize,
    method: Option<Method>,
    measure_from: Duration,
) -> Result<ReloadMeasure, ExperimentError> {
    let before = weighted_policy(n, &[3, 1]);
    let after = weighted_policy(n, &[1, 1]);
    let reload_at = Duration::from_secs(2);
    let out = run_quietly(
        make_gpu(),
        &Experiment {
            reloads: vec![(reload_at, after.clone())],
            ..Experiment::new(
                before,
                vec![LoadPattern::Busy],
                reload_at + Duration::from_millis(2500),
                method,
            )
        },
    )?;
    // Classes: tenants of weight 3 (even) and of weight 1 (odd); 75/25 before, 50/50 after.
    let classes: HashMap<String, usize> = (0..n).map(|i| (format!("t{i:02}"), i % 2)).collect();
    let heavy = n.div_ceil(2) as f64;
    let light = (n / 2) as f64;
    let old = 3.0 * heavy / (3.0 * heavy + light);
    let new = heavy / (heavy + light);
    let targets = [new, 1.0 - new];
    let tolerance = ((old - new).abs() / 4.0).max(0.02);
    let longest_turn = out.log.slices().map(|s| s.time_run_ns).max().unwrap_or(0);
    let window = (after.balance_period * 2)
        .max(Duration::from_nanos(longest_turn * 20))
        .min(Duration::from_millis(1500));
    let effect = reload_effect_time(
        &out.log,
        measure_from,
        &classes,
        &targets,
        window,
        tolerance,
        Duration::from_secs(1),
    );
    let first_period = class_shares(
        &out.log,
        reload_at,
        reload_at + after.balance_period,
        &classes,
        2,
    );
    Ok(ReloadMeasure {
        effect,
        first_decision: out.reload_latencies.first().copied().flatten(),
        first_period_share: first_period[0],
    })
}

/// The rows as a Markdown table.
pub fn markdown_table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "| tenants | weights | load | method | max share error (pp) | throughput vs one alone | bursty work served | reload 3:1->1:1 in effect after | first decision after reload (GPU / host time) | weight-3 share, 1st period after reload |\n\
         | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {:.3} | {:.1} % | {} | {} | {} | {:.1} % |",
            r.tenants,
            r.weights,
            r.load.name(),
            r.method.name(),
            r.max_error_pp,
            r.throughput * 100.0,
            r.bursty_served
                .map_or("-".to_string(), |f| format!("{:.1} %", f * 100.0)),
            r.reload
                .effect
                .map_or("not within 1 s".to_string(), |d| format!(
                    "{:.0} ms",
                    d.as_secs_f64() * 1e3
                )),
            r.reload.first_decision.map_or("-".to_string(), |d| format!(
                "{:.1} / {:.1} µs",
                d.gpu.as_secs_f64() * 1e6,
                d.host.as_secs_f64() * 1e6
            )),
            r.reload.first_period_share * 100.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::fake::{FakeCosts, FakeGpu};

    #[test]
    fn small_bench_on_the_fake_gpu_meets_the_targets() {
        let cfg = BenchConfig {
            duration: Duration::from_secs(3),
            methods: vec![Some(Method::Gating)],
            tenant_counts: vec![2],
        };
        let rows = run_bench(
            &cfg,
            || FakeGpu::new(FakeGpu::gsp_levers(), FakeCosts::default()),
            |_| {},
        )
        .unwrap();
        assert_eq!(rows.len(), 6);
        for r in &rows {
            assert!(r.max_error_pp <= 0.5, "{r:?}");
            assert!(r.throughput >= 0.97, "{r:?}");
            assert_eq!(r.bursty_served.is_some(), r.load == LoadMix::Bursty);
            assert!(r.bursty_served.is_none_or(|f| f > 0.97), "{r:?}");
            assert!(
                r.reload.effect.is_some_and(|d| d <= DEFAULT_BALANCE_PERIOD),
                "{r:?}"
            );
            assert!(
                r.reload
                    .first_decision
                    .is_some_and(|d| d.gpu < Duration::from_millis(1)),
                "{r:?}"
            );
            assert!((r.reload.first_period_share - 0.5).abs() < 0.05, "{r:?}");
        }
        let table = markdown_table(&rows);
        assert_eq!(table.lines().count(), 8);
    }

    #[test]
    fn reload_measure_is_not_trivially_zero() {
        let gpu = || FakeGpu::new(FakeGpu::gsp_levers(), FakeCosts::default());
        let at_reload = reload_case(&gpu, 2, None, Duration::from_secs(2))
            .unwrap()
            .effect
            .unwrap();
        assert!(at_reload <= DEFAULT_BALANCE_PERIOD, "{at_reload:?}");
        // Measured from half a second before the reload, the old 3:1 split must show: the new
        // split cannot be found much before the reload itself.
        let early = reload_case(&gpu, 2, None, Duration::from_millis(1500))
            .unwrap()
            .effect
            .unwrap();
        assert!(early >= Duration::from_millis(450), "{early:?}");
        assert!(
            early <= Duration::from_millis(500) + DEFAULT_BALANCE_PERIOD,
            "{early:?}"
        );
    }

    #[test]
    fn bursty_mix_alternates() {
        let l = LoadMix::Bursty.loads(4);
        assert_eq!(l[0], LoadPattern::Busy);
        assert!(matches!(l[1], LoadPattern::Bursty { .. }));
        assert_eq!(weighted_policy(5, &[3, 1]).tenants[4].weight, 3);
    }
}
