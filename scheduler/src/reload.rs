//! Hot reload of the policy file: on SIGHUP, and when the file's content changes. Changes are
//! seen through `notify` (inotify on Linux) on the file's directory, so editors that write a new
//! file and rename it over the old one are seen too; where no watch can be set up (an inotify
//! limit, a filesystem without it) the file is read again at every poll instead.
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
    /// Set by the watch when an event names the file.
    touched: Arc<AtomicBool>,
    /// Kept for its watch; `None` when none could be set up (then every poll reads the file).
    watch: Option<notify::RecommendedWatcher>,
}

impl PolicyWatcher {
    /// Watches `path`, whose current content is taken as already applied; installs a SIGHUP
    /// handler that makes the next [`poll`](Self::poll) reload unconditionally.
    pub fn new(path: &Path) -> std::io::Result<Self> {
        let hup = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
        let touched = Arc::new(AtomicBool::new(false));
        let watch = match watch(path, Arc::clone(&touched)) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(
                    "cannot watch {} ({e}); reading it at every poll instead",
                    path.display()
                );
                None
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            last: std::fs::read(path).ok(),
            hup,
            touched,
            watch,
        })
    }

    /// Waits up to `timeout` of host time for the watch to see a change of the file (true
    /// at once without a watch): for a program that writes the file itself and wants its next
    /// [`poll`](Self::poll) to see it, as tests on a fake clock do.
    pub fn settle(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while self.watch.is_some() && !self.touched.load(Ordering::SeqCst) {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        true
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns a freshly validated policy (or why the new file is refused) when SIGHUP arrived
    /// or the content changed since the last call; `None` when nothing happened.
    pub fn poll(&mut self) -> Option<Result<Policy, PolicyError>> {
        let forced = self.hup.swap(false, Ordering::SeqCst);
        let touched = match self.watch {
            Some(_) => self.touched.swap(false, Ordering::SeqCst),
            None => true,
        };
        if !forced && !touched {
            return None;
        }
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

/// A watch on `path`'s directory that sets `touched` whenever an event names `path`'s file.
fn watch(path: &Path, touched: Arc<AtomicBool>) -> notify::Result<notify::RecommendedWatcher> {
    use notify::Watcher;
    let name = path.file_name().map(|n| n.to_os_string());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut w = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A watch error (events lost on overflow) may hide a change: read the file again.
        let hit = event.map_or(true, |e| {
            e.paths.iter().any(|p| p.file_name() == name.as_deref())
        });
        if hit {
            touched.store(true, Ordering::SeqCst);
        }
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)?;
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// Polls until the watcher reports something (the watch's events come on their own thread).
    fn changed(w: &mut PolicyWatcher) -> Result<Policy, PolicyError> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            if let Some(r) = w.poll() {
                return r;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "change not seen in 5 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
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
        let p = changed(&mut w).expect("valid");
        assert_eq!(p.kind.name(), "best_effort");
        assert!(w.poll().is_none());

        signal_hook::low_level::raise(signal_hook::consts::SIGHUP).unwrap();
        assert!(matches!(w.poll(), Some(Ok(_))), "SIGHUP forces a reload");

        write(&path, "policy = \"fastest\"\n");
        let e = changed(&mut w).unwrap_err();
        assert_eq!(e.line(), Some(1));
        assert!(w.poll().is_none(), "a refused file is reported once");

        // An editor's save: a new file renamed over the old one.
        let tmp = dir.join("p.toml.swp");
        write(
            &tmp,
            "policy = \"fixed_share\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n",
        );
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(changed(&mut w).expect("valid").kind.name(), "fixed_share");
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(w.poll().is_none(), "late events of one save reload nothing");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
