//! The scheduler for VM tenants: one thread runs the policy file over the shared sim GPU's
//! runlists, with every started instance's channel groups placed under the tenant the
//! instance names. The GPU runs on its real-time clock (guests submit work at any time), so the
//! scheduler's waits are host time; its levers take the GPU's lock only for the moment they
//! act. The policy file reloads as for the other tenants (change of content or SIGHUP) and is
//! in force within one balance period.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rm_sim::SimGpu;
use scheduler::log::WindowRecord;
use scheduler::mechanism::sim::{SharedSim, SimMechanism};
use scheduler::policy_file::{Policy, PolicyError};
use scheduler::reload::{PolicyWatcher, ReloadOutcome};
use scheduler::scheduler::{BoundInstance, SchedError, Scheduler};

use crate::enforce::tick_length;

/// How often the thread publishes its view and flushes its log.
const PUBLISH_PERIOD: Duration = Duration::from_millis(200);

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum VmSchedulerError {
    /// The policy file does not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policy cannot run on this GPU.
    #[error(transparent)]
    Sched(#[from] SchedError),
    /// The log file or the thread.
    #[error("{0}")]
    Io(String),
}

/// What the scheduler thread publishes for `status` and metrics.
#[derive(Debug, Clone, Default)]
pub struct SchedView {
    /// The policy in force, summarised.
    pub policy: String,
    /// The method (`timeslice` or `gating`).
    pub method: String,
    /// Shares of the last balance window.
    pub window: Option<WindowRecord>,
    /// Policy reloads applied since start.
    pub reloads: u64,
    /// The last reload refused, with its reason.
    pub refused: Option<String>,
}

impl SchedView {
    /// Target and achieved share of tenant `name` in the last window.
    pub fn share_of(&self, name: &str) -> Option<(f64, f64)> {
        let w = self.window.as_ref()?;
        let t = w.tenants.iter().find(|t| t.tenant == name)?;
        Some((t.target, t.share))
    }
}

#[derive(Debug, Default)]
struct Shared {
    view: SchedView,
    instances: Option<Vec<BoundInstance>>,
}

/// The running scheduler thread; stops (and re-enables every channel it gated) on drop.
#[derive(Debug)]
pub struct VmScheduler {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

fn lock(s: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl VmScheduler {
    /// Starts scheduling `gpu` (on its real-time clock) by the policy file at `path`; the
    /// scheduler's JSONL records go to `log` when given (else they are dropped as they come).
    pub fn start(
        gpu: Arc<Mutex<SimGpu>>,
        path: &Path,
        log: Option<&Path>,
    ) -> Result<Self, VmSchedulerError> {
        let policy = Policy::load(path)?;
        let watcher = PolicyWatcher::new(path)
            .map_err(|e| VmSchedulerError::Io(format!("watching {}: {e}", path.display())))?;
        let log = match log {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| VmSchedulerError::Io(format!("opening {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let sched = Scheduler::new(SimMechanism::shared(gpu), policy, None, Default::default())?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        publish(&shared, &sched);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("scheduler".into())
                .spawn(move || run(sched, watcher, log, &shared, &stop))
                .map_err(|e| VmSchedulerError::Io(format!("starting the thread: {e}")))?
        };
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
            path: path.to_path_buf(),
        })
    }

    /// The policy file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the started instances; the thread binds them at its next tick.
    pub fn set_instances(&self, instances: Vec<BoundInstance>) {
        lock(&self.shared).instances = Some(instances);
    }

    /// What the thread published last.
    pub fn view(&self) -> SchedView {
        lock(&self.shared).view.clone()
    }
}

impl Drop for VmScheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn publish(shared: &Mutex<Shared>, sched: &Scheduler<SimMechanism<SharedSim>>) {
    let mut s = lock(shared);
    s.view.policy = sched.policy().to_string();
    s.view.method = sched.method().name().to_string();
    s.view.window = sched.last_window().cloned();
}

fn run(
    mut sched: Scheduler<SimMechanism<SharedSim>>,
    mut watcher: PolicyWatcher,
    mut log: Option<File>,
    shared: &Mutex<Shared>,
    stop: &AtomicBool,
) {
    let mut last_publish = Instant::now();
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        if let Some(instances) = lock(shared).instances.take() {
            sched.set_instances(&instances);
            if let Err(e) = sched.regroup() {
                tracing::warn!("scheduler: binding instances: {e}");
            }
        }
        if let Err(e) = sched.run_for(tick_length(sched.policy())) {
            // A group went away under a lever (a VM left, a guest freed its TSG): find the
            // groups again and go on. Errors are logged at most once a second.
            if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                tracing::warn!("scheduler: {e}; finding the channel groups again");
                last_error = Some(Instant::now());
            }
            if sched.regroup().is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        match watcher.apply_to(&mut sched, |_, _| Ok(())) {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Applied(summary) => {
                tracing::info!("policy reloaded: {summary}");
                lock(shared).view.reloads += 1;
            }
            ReloadOutcome::Refused(why) => {
                tracing::warn!("policy reload refused, keeping the policy in force: {why}");
                lock(shared).view.refused = Some(why);
            }
        }
        if last_publish.elapsed() >= PUBLISH_PERIOD {
            publish(shared, &sched);
            flush(&mut sched, &mut log);
            last_publish = Instant::now();
        }
    }
    if let Err(e) = sched.release() {
        tracing::warn!("scheduler: re-enabling channels at exit: {e}");
    }
    flush(&mut sched, &mut log);
}

/// Moves the scheduler's records to the log file, if there is one, so memory stays bounded.
fn flush(sched: &mut Scheduler<SimMechanism<SharedSim>>, file: &mut Option<File>) {
    let records = sched.take_log();
    if let Some(f) = file {
        let mut out = std::io::BufWriter::new(f);
        if let Err(e) = records.write_jsonl(&mut out).and_then(|()| out.flush()) {
            tracing::warn!("writing the scheduler log: {e}");
        }
    }
}
