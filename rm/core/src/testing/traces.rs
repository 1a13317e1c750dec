//! The real driver's traces (`tests/fixtures/traces/` of the workspace), found the same way by
//! every crate's trace tests: a trace that is missing skips a test on a developer's checkout
//! and fails it under `CI=true`, so CI never passes a trace test that did not run.

use std::path::PathBuf;

/// The workspace's trace fixture directory.
pub fn trace_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/traces")
}

/// `<name>.jsonl.gz` in [`trace_dir`]; `None` (after saying so) when it is missing outside CI.
///
/// # Panics
/// When the file is missing and `CI=true`.
pub fn trace(name: &str) -> Option<PathBuf> {
    required(trace_dir().join(format!("{name}.jsonl.gz")))
}

/// `tests/fixtures/h200/<name>`: what the real driver answered a probe on the H200 (e.g.
/// `gr-probe.json` from `rm-trace probe-gr`); missing, as [`trace`].
///
/// # Panics
/// When the file is missing and `CI=true`.
pub fn h200_probe(name: &str) -> Option<PathBuf> {
    required(trace_dir().join("../h200").join(name))
}

fn required(path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "fixture {} is missing (CI=true: a test of the real driver's answers may not skip)",
        path.display()
    );
    eprintln!("skipping: no {}", path.display());
    None
}

/// Every trace in [`trace_dir`], sorted; empty (after saying so) when there are none outside CI.
///
/// # Panics
/// When there are none and `CI=true`.
pub fn all_traces() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(trace_dir())
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".jsonl.gz"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "no trace fixtures under {} (CI=true: a trace test may not skip)",
            trace_dir().display()
        );
        eprintln!("skipping: no traces under {}", trace_dir().display());
    }
    files
}
