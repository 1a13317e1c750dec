//! KVM exit counters, printed by `--stats` as `stats: exit <reason> <count>` lines.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// The exit reasons counted, in the order they are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// `KVM_EXIT_IO`, guest `in`.
    IoIn,
    /// `KVM_EXIT_IO`, guest `out`.
    IoOut,
    /// `KVM_EXIT_MMIO` read.
    MmioRead,
    /// `KVM_EXIT_MMIO` write.
    MmioWrite,
    /// `KVM_EXIT_HLT` (only without an in-kernel LAPIC).
    Hlt,
    /// `KVM_EXIT_SHUTDOWN`.
    Shutdown,
    /// `KVM_EXIT_SYSTEM_EVENT`.
    SystemEvent,
    /// `KVM_EXIT_INTR` / `EINTR` from `KVM_RUN` (a kick).
    Intr,
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError,
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry,
    /// Any other exit.
    Other,
}

impl ExitKind {
    /// Every kind, in print order.
    pub const ALL: [ExitKind; 11] = [
        ExitKind::IoIn,
        ExitKind::IoOut,
        ExitKind::MmioRead,
        ExitKind::MmioWrite,
        ExitKind::Hlt,
        ExitKind::Shutdown,
        ExitKind::SystemEvent,
        ExitKind::Intr,
        ExitKind::InternalError,
        ExitKind::FailEntry,
        ExitKind::Other,
    ];

    /// The machine-parsable name printed by `--stats`.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::IoIn => "io_in",
            ExitKind::IoOut => "io_out",
            ExitKind::MmioRead => "mmio_read",
            ExitKind::MmioWrite => "mmio_write",
            ExitKind::Hlt => "hlt",
            ExitKind::Shutdown => "shutdown",
            ExitKind::SystemEvent => "system_event",
            ExitKind::Intr => "intr",
            ExitKind::InternalError => "internal_error",
            ExitKind::FailEntry => "fail_entry",
            ExitKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Exit counters shared by all vCPU threads (relaxed atomics: counts, not ordering).
#[derive(Debug, Default)]
pub struct ExitStats {
    counts: [AtomicU64; ExitKind::ALL.len()],
}

impl ExitStats {
    /// Counts one exit of `kind`.
    pub fn record(&self, kind: ExitKind) {
        self.counts[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The count for `kind`.
    pub fn get(&self, kind: ExitKind) -> u64 {
        self.counts[kind.index()].load(Ordering::Relaxed)
    }

    /// Sum over all kinds.
    pub fn total(&self) -> u64 {
        ExitKind::ALL.iter().map(|k| self.get(*k)).sum()
    }

    /// One `stats: exit <reason> <count>` line per kind, then `stats: exit total <n>`.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for kind in ExitKind::ALL {
            let _ = writeln!(out, "stats: exit {} {}", kind.name(), self.get(kind));
        }
        let _ = writeln!(out, "stats: exit total {}", self.total());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lists_every_reason_once() {
        let stats = ExitStats::default();
        stats.record(ExitKind::IoOut);
        stats.record(ExitKind::IoOut);
        stats.record(ExitKind::MmioRead);
        let report = stats.report();
        assert!(report.contains("stats: exit io_out 2\n"));
        assert!(report.contains("stats: exit mmio_read 1\n"));
        assert!(report.contains("stats: exit hlt 0\n"));
        assert!(report.ends_with("stats: exit total 3\n"));
        assert_eq!(report.lines().count(), ExitKind::ALL.len() + 1);
    }
}
