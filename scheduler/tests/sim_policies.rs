//! Each global policy on the sim backend, through the whole stack (policy file -> planner ->
//! scheduler -> sim mechanism): the share of GPU time each tenant gets.

use std::collections::HashMap;
use std::time::Duration;

use scheduler::mechanism::load::LoadPattern;
use scheduler::mechanism::Mechanism;
use scheduler::policy_file::Policy;
use scheduler::scheduler::{Method, Scheduler};
use scheduler::testbed::sim::SimTestbed;
use scheduler::testbed::Testbed;

const SECS: u64 = 2;

/// Runs `policy` with one tenant per load (GFID i+1) and returns each tenant's fraction of
/// wall-clock GPU time, and the method used.
fn run(policy: &str, loads: &[LoadPattern]) -> (Vec<f64>, Method) {
    let policy = Policy::parse(policy, "test.toml").unwrap();
    let mut gpu = SimTestbed::default();
    for (i, &l) in loads.iter().enumerate() {
        gpu.add_load(i as u32 + 1, l).unwrap();
    }
    let mut s = Scheduler::new(gpu, policy, None, HashMap::new()).unwrap();
    s.run_for(Duration::from_secs(SECS)).unwrap();
    let wall = s.mechanism().now().as_secs_f64();
    let shares = s
        .tenant_run_times()
        .iter()
        .map(|d| d.as_secs_f64() / wall)
        .collect();
    (shares, s.method())
}

fn tenants(weights: &[u32], extra: &str) -> String {
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                "[[tenant]]\nname = \"t{i}\"\ngfids = [{}]\nweight = {w}\n{extra}",
                i + 1
            )
        })
        .collect()
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 0.01
}

#[test]
fn fixed_share_leaves_the_idle_tenants_slot_idle() {
    let p = format!("policy = \"fixed_share\"\n{}", tenants(&[1, 1], ""));
    let (s, m) = run(&p, &[LoadPattern::Busy, LoadPattern::Idle]);
    assert_eq!(m, Method::Gating, "idling needs gating");
    assert!(near(s[0], 0.5), "{s:?}");
}

#[test]
fn equal_share_divides_among_attached_tenants() {
    let p = format!("policy = \"equal_share\"\n{}", tenants(&[5, 1, 1], ""));
    let (s, _) = run(
        &p,
        &[LoadPattern::Busy, LoadPattern::Busy, LoadPattern::Idle],
    );
    assert!(near(s[0], 1.0 / 3.0) && near(s[1], 1.0 / 3.0), "{s:?}");
}

#[test]
fn best_effort_gives_everything_to_whoever_is_busy() {
    let p = format!("policy = \"best_effort\"\n{}", tenants(&[9, 1], ""));
    let (s, m) = run(&p, &[LoadPattern::Busy, LoadPattern::Busy]);
    assert_eq!(m, Method::Timeslice);
    assert!(near(s[0], 0.5), "{s:?}");
    let (s, _) = run(&p, &[LoadPattern::Busy, LoadPattern::Idle]);
    assert!(s[0] > 0.98, "{s:?}");
}

#[test]
fn max_share_caps_a_lone_tenant_and_min_share_lifts_a_light_one() {
    let p = format!(
        "policy = \"weighted\"\n{}",
        tenants(&[1], "max_share = 30\n")
    );
    let (s, _) = run(&p, &[LoadPattern::Busy]);
    assert!(near(s[0], 0.3), "{s:?}");
    let p = format!(
        "policy = \"weighted\"\n{}{}",
        tenants(&[1], "min_share = 40\n"),
        "[[tenant]]\nname = \"heavy\"\ngfids = [2]\nweight = 9\n"
    );
    let (s, _) = run(&p, &[LoadPattern::Busy, LoadPattern::Busy]);
    assert!(near(s[0], 0.4), "{s:?}");
}
