//! Hot reload of the policy file: on SIGHUP, and when the file's content changes (polled).
//! A new file that does not validate is reported and the policy in force stays.
//!
//! Every program that schedules from a file (`vgpu-sched simulate --realtime`, `vgpud`) reloads
//! through [`PolicyWatcher::apply_to`], so they share one behaviour: the new policy is queued on
//! the [`Scheduler`] (in force at its next decision, within one balance period, no work
//! preempted), and a refused file leaves the old policy in force with the reason logged.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::mechanism::Mechanism;
use crate::policy_file::{Policy, PolicyError};
use crate::scheduler::Scheduler;

/// What one [`PolicyWatcher::apply_to`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Neither SIGHUP nor a change of the file.
    Unchanged,
    /// A new policy was queued on the scheduler; its one-line summary.
    Applied(String),
    /// The new file was refused and the old policy stays; why, naming file (and line).
    Refused(String),
}

/// Watches one policy file.
#[derive(Debug)]
pub struct PolicyWatcher {
    path: PathBuf,
    last: Option<Vec<u8>>,
    hup: Arc<AtomicBool>,
}

impl PolicyWatcher {
    /// Watches `path`, whose current content is taken as already applied; installs a SIGHUP
    /// handler that makes the next [`poll`](Self::poll) reload unconditionally.
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
        Ok(Self {
            path: path.to_path_buf(),
            last: std::fs::read(path).ok(),
            hup,
        })
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns a freshly validated policy (or why the new file is refused) when SIGHUP arrived
    /// or the content changed since the last call; `None` when nothing happened.
    pub fn poll(&mut self) -> Option<Result<Policy, PolicyError>> {
        let forced = self.hup.swap(false, Ordering::SeqCst);
        let now = std::fs::read(&self.path).ok();
        if !forced && now == self.last {
            return None;
        }
        self.last = now;
        Some(Policy::load(&self.path))
    }

    /// Polls, and hands a valid new policy to `sched`. `prepare` may refuse a policy the
    /// caller cannot run (its message is prefixed with the file) or adapt the mechanism to it
    /// before the scheduler switches. A refusal is recorded in the scheduler's log and the
    /// policy in force stays.
    pub fn apply_to<M: Mechanism>(
        &mut self,
        sched: &mut Scheduler<M>,
        prepare: impl FnOnce(&Policy, &mut M) -> Result<(), String>,
    ) -> ReloadOutcome {
        let why = match self.poll() {
            None => return ReloadOutcome::Unchanged,
            Some(Err(e)) => e.to_string(),
            Some(Ok(policy)) => match prepare(&policy, sched.mechanism_mut()) {
                Ok(()) => {
                    let summary = policy.to_string();
                    sched.apply_policy(policy);
                    return ReloadOutcome::Applied(summary);
                }
                Err(e) => format!("{}: {e}", self.path.display()),
            },
        };
        sched.note_rejected_reload(&why);
        ReloadOutcome::Refused(why)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn change_sighup_and_invalid_file() {
        let dir = std::env::temp_dir().join(format!("vgpu-sched-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.toml");
        write(
            &path,
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n",
        );
        let mut w = PolicyWatcher::new(&path).unwrap();
        assert!(w.poll().is_none(), "unchanged file is not reloaded");

        write(
            &path,
            "policy = \"best_effort\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n",
        );
        let p = w.poll().expect("change seen").expect("valid");
        assert_eq!(p.kind.name(), "best_effort");
        assert!(w.poll().is_none());

        signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
        assert!(matches!(w.poll(), Some(Ok(_))), "SIGHUP forces a reload");

        write(&path, "policy = \"fastest\"\n");
        let e = w.poll().expect("change seen").unwrap_err();
        assert_eq!(e.line(), Some(1));
        assert!(w.poll().is_none(), "a refused file is reported once");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
