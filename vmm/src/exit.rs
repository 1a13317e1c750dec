//! How a guest run ends, and the process exit status each ending maps to.
//!
//! The nested boot tests depend on these numbers exactly; `--help` repeats them.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use vmm_sys_util::eventfd::EventFd;

/// Exit status: the guest powered off (ACPI S5).
pub const STATUS_POWER_OFF: i32 = 0;
/// Exit status: the VMM failed or the guest died.
pub const STATUS_GUEST_DIED: i32 = 1;
/// Exit status: usage error (clap's default).
pub const STATUS_USAGE: i32 = 2;
/// Exit status: the guest asked for a reboot (i8042 0xFE or ACPI reset register).
pub const STATUS_REBOOT: i32 = 80;
/// Exit status: triple fault (`KVM_EXIT_SHUTDOWN`).
pub const STATUS_TRIPLE_FAULT: i32 = 81;

/// The reason a guest run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest entered ACPI S5 (power off).
    PowerOff,
    /// The guest asked for a reset, through `what` (the device that saw it).
    Reboot {
        /// Which device saw the reset request.
        what: &'static str,
    },
    /// A vCPU got `KVM_EXIT_SHUTDOWN` (triple fault).
    TripleFault {
        /// The vCPU that faulted.
        vcpu: usize,
    },
    /// The guest or a vCPU thread failed; `reason` is a one-line description.
    Died {
        /// One-line description, including exit reason and RIP where available.
        reason: String,
    },
}

impl GuestExit {
    /// The process exit status for this ending.
    pub fn status(&self) -> i32 {
        match self {
            GuestExit::PowerOff => STATUS_POWER_OFF,
            GuestExit::Reboot { .. } => STATUS_REBOOT,
            GuestExit::TripleFault { .. } => STATUS_TRIPLE_FAULT,
            GuestExit::Died { .. } => STATUS_GUEST_DIED,
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::PowerOff => write!(f, "guest powered off"),
            GuestExit::Reboot { what } => write!(f, "guest requested reboot ({what})"),
            GuestExit::TripleFault { vcpu } => write!(f, "triple fault on vcpu {vcpu}"),
            GuestExit::Died { reason } => write!(f, "guest died: {reason}"),
        }
    }
}

/// Shared place where the first [`GuestExit`] of a run is recorded.
///
/// Devices (power-off, reset) and vCPU threads report here; the first report wins, sets the
/// stop flag every vCPU loop checks, and wakes the event loop through an eventfd.
#[derive(Debug)]
pub struct ExitLatch {
    reason: Mutex<Option<GuestExit>>,
    stop: AtomicBool,
    event: EventFd,
}

impl ExitLatch {
    /// Creates an unset latch.
    pub fn new() -> std::io::Result<Self> {
        Ok(ExitLatch {
            reason: Mutex::new(None),
            stop: AtomicBool::new(false),
            event: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// Records `exit` if nothing was recorded yet, and asks everyone to stop.
    pub fn report(&self, exit: GuestExit) {
        let mut slot = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::debug!(%exit, "guest exit reported");
            *slot = Some(exit);
        }
        self.stop.store(true, Ordering::SeqCst);
        // A full counter (2^64-2 writes) is the only failure; the stop flag is already set.
        let _ = self.event.write(1);
    }

    /// True once any exit was reported.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The recorded exit, if any.
    pub fn reason(&self) -> Option<GuestExit> {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The eventfd that becomes readable when an exit is reported.
    pub fn event(&self) -> &EventFd {
        &self.event
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_the_documented_ones() {
        assert_eq!(GuestExit::PowerOff.status(), 0);
        assert_eq!(GuestExit::Reboot { what: "i8042" }.status(), 80);
        assert_eq!(GuestExit::TripleFault { vcpu: 0 }.status(), 81);
        assert_eq!(GuestExit::Died { reason: "x".into() }.status(), 1);
    }

    #[test]
    fn first_report_wins() {
        let latch = ExitLatch::new().unwrap();
        assert!(!latch.should_stop());
        latch.report(GuestExit::PowerOff);
        latch.report(GuestExit::TripleFault { vcpu: 1 });
        assert!(latch.should_stop());
        assert_eq!(latch.reason(), Some(GuestExit::PowerOff));
        assert_eq!(latch.event().read().unwrap(), 2);
    }
}
