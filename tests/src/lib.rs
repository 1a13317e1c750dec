//! Helpers for the integration tests that boot guests in the nested-KVM harness (the QEMU
//! tests use `images::qemu_vm` and `images::vgpud` directly).

use images::{GuestRun, HarnessOutcome};

/// Lines of each console shown when a boot test fails.
pub const TAIL_LINES: usize = 40;

/// A failure report: `what`, then the tail of the harness (L1) console and of the inner
/// guest's (L2) console and VMM stderr.
pub fn failure_report(what: &str, outcome: &HarnessOutcome, guest: Option<&GuestRun>) -> String {
    let mut report = format!(
        "{what}\n(harness: {:.1} s, timed out: {}, qemu exit: {:?})\n--- harness (L1) console, last {TAIL_LINES} lines ---\n{}",
        outcome.elapsed.as_secs_f64(),
        outcome.timed_out,
        outcome.qemu_exit,
        outcome.console_tail(TAIL_LINES)
    );
    match guest {
        Some(g) => report.push_str(&format!("\n{}", g.console_tail(TAIL_LINES))),
        None => report.push_str("\n--- no inner guest (L2) output ---"),
    }
    report
}
