//! Runs a policy on a [`Testbed`] with synthetic tenants: the engine behind `vgpu-sched
//! simulate` and the benchmark. Samples each tenant's engine time at fixed intervals, applies
//! scripted or watched policy reloads, and returns what happened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::log::SchedLog;
use crate::mechanism::load::LoadPattern;
use crate::policy::target_shares;
use crate::policy_file::Policy;
use crate::reload::{PolicyWatcher, ReloadOutcome};
use crate::scheduler::{Method, ReloadLatency, SchedError, Scheduler};
use crate::testbed::Testbed;

/// What to run.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// Policy at the start.
    pub policy: Policy,
    /// One load per tenant, in policy order.
    pub loads: Vec<LoadPattern>,
    /// GPU time to run.
    pub duration: Duration,
    /// Method override (None: chosen from capabilities).
    pub method: Option<Method>,
    /// Policies to apply at given GPU times.
    pub reloads: Vec<(Duration, Policy)>,
    /// Interval at which per-tenant engine time is sampled.
    pub sample_every: Duration,
    /// Pace GPU time to wall-clock time (so SIGHUP and file edits can be tried by hand).
    pub realtime: bool,
}

impl Experiment {
    /// `policy` with `loads` for `duration` of GPU time, sampled every second, without reloads
    /// or pacing.
    pub fn new(
        policy: Policy,
        loads: Vec<LoadPattern>,
        duration: Duration,
        method: Option<Method>,
    ) -> Self {
        Self {
            policy,
            loads,
            duration,
            method,
            reloads: vec![],
            sample_every: Duration::from_secs(1),
            realtime: false,
        }
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Tenant names, in policy order (of the first policy).
    pub tenants: Vec<String>,
    /// GFID each tenant's synthetic load runs under.
    pub gfids: Vec<u32>,
    /// Cumulative engine time per tenant at 0, `sample_every`, 2×, ...
    pub samples: Vec<Vec<Duration>>,
    /// Useful work completed per tenant over the whole run.
    pub work: Vec<Duration>,
    /// GPU time at the end.
    pub end: Duration,
    /// The method used at the end.
    pub method: Method,
    /// Target shares of the policy in force at the end, with every tenant attached and busy.
    pub targets: Vec<f64>,
    /// Time lost to gating switches.
    pub switch_time: Duration,
    /// Per scripted reload, in order: time from the reload to the first decision carried out
    /// under the new policy (None if the new policy was refused).
    pub reload_latencies: Vec<Option<ReloadLatency>>,
    /// The scheduler log.
    pub log: SchedLog,
    /// One line describing the GPU model.
    pub gpu: String,
}

/// Why an experiment could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The loads do not match the tenants.
    #[error("{loads} load(s) given for {tenants} tenant(s): give one per tenant, or one for all")]
    LoadCount {
        /// Loads given.
        loads: usize,
        /// Tenants in the policy.
        tenants: usize,
    },
    /// The policy has no tenants.
    #[error("the policy has no tenants to simulate")]
    NoTenants,
    /// Scheduling failed.
    #[error(transparent)]
    Sched(#[from] SchedError),
}

/// The GFID a tenant's synthetic load runs under, and the vGPU-to-GFID map for tenants that
/// name vGPUs only (they get GFIDs above every GFID in the policy).
pub fn assign_gfids(policy: &Policy) -> (Vec<u32>, HashMap<String, u32>) {
    let mut next = policy
        .tenants
        .iter()
        .flat_map(|t| t.gfids.iter().copied())
        .max()
        .unwrap_or(0)
        + 1;
    let mut map = HashMap::new();
    let gfids = policy
        .tenants
        .iter()
        .map(|t| match t.gfids.first() {
            Some(&g) => g,
            None => {
                for u in &t.vgpus {
                    map.insert(u.clone(), next);
                    next += 1;
                }
                map[&t.vgpus[0]]
            }
        })
        .collect();
    (gfids, map)
}

/// Runs the experiment. `watch` reloads from a file (with `realtime`); `progress` is called
/// after each sample with the GPU time reached.
pub fn run<T: Testbed>(
    mut gpu: T,
    exp: &Experiment,
    mut watch: Option<&mut PolicyWatcher>,
    mut progress: impl FnMut(Duration),
) -> Result<Outcome, ExperimentError> {
    let n = exp.policy.tenants.len();
    if n == 0 {
        return Err(ExperimentError::NoTenants);
    }
    let loads: Vec<LoadPattern> = match exp.loads.len() {
        1 => vec![exp.loads[0]; n],
        k if k == n => exp.loads.clone(),
        k => {
            return Err(ExperimentError::LoadCount {
                loads: k,
                tenants: n,
            })
        }
    };
    let (gfids, vgpu_map) = assign_gfids(&exp.policy);
    for (&g, &l) in gfids.iter().zip(&loads) {
        gpu.add_load(g, l).map_err(SchedError::from)?;
    }
    let describe = gpu.describe();
    let mut sched = Scheduler::new(gpu, exp.policy.clone(), exp.method, vgpu_map)?;
    let tenants: Vec<String> = exp.policy.tenants.iter().map(|t| t.name.clone()).collect();
    let mut reloads = exp.reloads.clone();
    reloads.sort_by_key(|r| r.0);
    let mut reloads = reloads.into_iter().peekable();
    let mut reload_latencies = Vec::new();
    let start = sched.mechanism().now();
    let wall = Instant::now();
    let mut totals = vec![Duration::ZERO; n];
    let mut last_seen = vec![Duration::ZERO; n];
    let mut samples = vec![totals.clone()];
    let mut next_sample = start + exp.sample_every;
    let end = start + exp.duration;
    // Per-tenant totals survive policy changes (the scheduler restarts its own on reload).
    let accumulate =
        |sched: &Scheduler<T>, totals: &mut Vec<Duration>, last: &mut Vec<Duration>| {
            let now_totals = sched.tenant_run_times();
            let names: Vec<&String> = sched.policy().tenants.iter().map(|t| &t.name).collect();
            for (k, name) in names.iter().enumerate() {
                if let Some(i) = tenants.iter().position(|t| t == *name) {
                    let cur = now_totals[k];
                    totals[i] += cur.saturating_sub(last[i]);
                    last[i] = cur;
                }
            }
        };
    while sched.mechanism().now() < end {
        let mut target = next_sample.min(end);
        if let Some((t, _)) = reloads.peek() {
            target = target.min(start + *t);
        }
        if exp.realtime {
            let step = sched.policy().balance_period / 4;
            target = target.min(sched.mechanism().now() + step);
        }
        sched.run_until(target)?;
        let now = sched.mechanism().now();
        if exp.realtime {
            let gpu_elapsed = now - start;
            if let Some(sleep) = gpu_elapsed.checked_sub(wall.elapsed()) {
                std::thread::sleep(sleep);
            }
            if let Some(w) = watch.as_deref_mut() {
                match w.apply_to(&mut sched, |_, _| Ok(())) {
                    ReloadOutcome::Unchanged => {}
                    ReloadOutcome::Applied(summary) => {
                        eprintln!("policy reloaded: {summary}");
                        // The scheduler restarts its totals when the queued policy takes over.
                        accumulate(&sched, &mut totals, &mut last_seen);
                        last_seen = vec![Duration::ZERO; n];
                    }
                    ReloadOutcome::Refused(why) => {
                        eprintln!("policy reload refused, keeping the old policy: {why}")
                    }
                }
            }
        }
        while let Some((t, _)) = reloads.peek() {
            if start + *t > now {
                break;
            }
            let (_, p) = reloads.next().expect("peeked");
            accumulate(&sched, &mut totals, &mut last_seen);
            last_seen = vec![Duration::ZERO; n];
            sched.apply_policy(p);
            // Let the reload take effect before anything else is sampled.
            sched.run_until(now + Duration::from_nanos(1))?;
            reload_latencies.push(sched.reload_latency());
        }
        if now >= next_sample {
            accumulate(&sched, &mut totals, &mut last_seen);
            samples.push(totals.clone());
            next_sample += exp.sample_every;
            progress(now - start);
        }
    }
    accumulate(&sched, &mut totals, &mut last_seen);
    let mut work = Vec::with_capacity(n);
    for &g in &gfids {
        work.push(
            sched
                .mechanism_mut()
                .work_done(g)
                .map_err(SchedError::from)?,
        );
    }
    sched.release()?;
    let final_policy = sched.policy();
    let everyone = vec![true; final_policy.tenants.len()];
    let nominal = target_shares(final_policy, &everyone, &everyone);
    let targets = tenants
        .iter()
        .map(|name| {
            final_policy
                .tenants
                .iter()
                .position(|t| &t.name == name)
                .map_or(0.0, |k| nominal.tenants[k])
        })
        .collect();
    Ok(Outcome {
        tenants,
        gfids,
        samples,
        work,
        end: sched.mechanism().now() - start,
        method: sched.method(),
        targets,
        switch_time: sched.switch_time(),
        reload_latencies,
        log: sched.log().clone(),
        gpu: describe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{max_share_error, window_shares};
    use crate::mechanism::fake::{FakeCosts, FakeGpu};

    fn policy(text: &str) -> Policy {
        Policy::parse(text, "t.toml").unwrap()
    }

    #[test]
    fn vgpu_only_tenants_get_fresh_gfids() {
        let p = policy(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [4]\n\
             [[tenant]]\nname = \"b\"\nvgpus = [\"aaaaaaaa-0000-4000-8000-000000000001\"]\n",
        );
        let (g, map) = assign_gfids(&p);
        assert_eq!(g, vec![4, 5]);
        assert_eq!(map["aaaaaaaa-0000-4000-8000-000000000001"], 5);
    }

    #[test]
    fn scripted_reload_changes_shares_and_samples_continue() {
        let p31 = policy("policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\nweight = 3\n[[tenant]]\nname = \"b\"\ngfids = [2]\n");
        let p11 = policy("policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n[[tenant]]\nname = \"b\"\ngfids = [2]\n");
        let exp = Experiment {
            reloads: vec![(Duration::from_secs(2), p11)],
            ..Experiment::new(p31, vec![LoadPattern::Busy], Duration::from_secs(4), None)
        };
        let gpu = FakeGpu::new(FakeGpu::gsp_levers(), FakeCosts::default());
        let mut ticks = 0;
        let out = run(gpu, &exp, None, |_| ticks += 1).unwrap();
        assert_eq!(ticks, 4);
        let w = window_shares(&out.samples);
        assert_eq!(w.len(), 4);
        assert!(
            max_share_error(&w[1..2], &[0.75, 0.25], None) < 0.005,
            "{w:?}"
        );
        assert!(max_share_error(&w[2..], &[0.5, 0.5], None) < 0.005, "{w:?}");
        assert_eq!(out.targets, vec![0.5, 0.5]);
        assert!(
            matches!(out.reload_latencies[..], [Some(d)] if d.gpu < Duration::from_millis(1)),
            "{:?}",
            out.reload_latencies
        );
        assert!(out.work.iter().all(|w| *w > Duration::from_millis(1400)));
    }

    #[test]
    fn load_count_must_match() {
        let p = policy("policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n[[tenant]]\nname = \"b\"\ngfids = [2]\n[[tenant]]\nname = \"c\"\ngfids = [3]\n");
        let exp = Experiment::new(
            p,
            vec![LoadPattern::Busy, LoadPattern::Busy],
            Duration::from_secs(1),
            None,
        );
        let gpu = FakeGpu::new(FakeGpu::gsp_levers(), FakeCosts::default());
        assert!(matches!(
            run(gpu, &exp, None, |_| {}),
            Err(ExperimentError::LoadCount { .. })
        ));
    }
}
