//! The bounded pass CI runs: every target over its seed corpus, then a fixed number of
//! deterministic mutations (`FUZZ_ITERATIONS` overrides the count), a few seconds each. Inputs
//! the long runs stopped on are kept in `tests/fuzz/regressions/TARGET/` and run as seeds.

use fuzz_targets::{corpus, mutate, TARGETS};

fn iterations(default: u64) -> u64 {
    std::env::var("FUZZ_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pass(name: &str, default_iterations: u64) {
    let target = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .expect("a known target");
    let mut seeds = corpus::seeds(name);
    seeds.extend(corpus::regressions(name));
    assert!(!seeds.is_empty(), "target {name} has no seeds");
    let r = mutate::bounded_pass(name, target, &seeds, iterations(default_iterations), 0x5eed);
    eprintln!("{name}: {} executions", r.executions);
}

#[test]
fn escape() {
    pass("escape", 2000);
}

#[test]
fn virtqueue() {
    pass("virtqueue", 2000);
}

#[test]
fn bar0() {
    pass("bar0", 2000);
}

#[test]
fn vfio_user() {
    pass("vfio_user", 1000);
}

#[test]
fn tenant() {
    pass("tenant", 5000);
}

#[test]
fn policy() {
    pass("policy", 5000);
}
