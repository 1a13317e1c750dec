//! The mechanism over the rm crate's sim backend ([`SimGpu`]): every lever is effective there.
//! Timeslice and interleave go into the TSG's runlist header, gating writes the channels'
//! enable bits in channel RAM, preempt writes `NV_RUNLIST_PREEMPT` and waits for PENDING to
//! clear, run time is the TSG's engine-time accounting.
//!
//! The GPU is either owned by the mechanism (a simulation the scheduler drives on the virtual
//! clock: [`SimMechanism::new`]) or shared with an RM core on the real-time clock, where guests
//! submit work and a driver thread moves the clock ([`SimMechanism::shared`], what `vgpud`
//! schedules VMs with). The levers are the same; only the wait differs: an owned GPU is
//! simulated up to the deadline, a shared one is waited for in host time.
//!
//! Either way the mechanism governs the GPU ([`SimGpu::set_governed`]): the levers are the
//! host's, so a guest's own `SET_TIMESLICE`, `SET_INTERLEAVE_LEVEL` and channel enables cannot
//! lengthen its slice, raise its level or lift a gate the policy put on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rm_abi::userd;
use rm_sim::{InterleaveLevel, SimError, SimGpu, TsgRef};

use super::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
use crate::policy_file::Priority;

/// Longest a preemption may take before it is reported as failed (GPU time).
const PREEMPT_TIMEOUT: Duration = Duration::from_millis(100);

/// How the mechanism reaches its sim GPU and lets time pass on it.
pub trait SimHandle {
    /// How much GPU time passes between checks of whether watched groups went idle.
    const WATCH_STEP: Duration;
    /// Runs `f` on the GPU.
    fn with<R>(&mut self, f: impl FnOnce(&mut SimGpu) -> R) -> R;
    /// The GPU's clock, ns.
    fn now_ns(&self) -> u64;
    /// Lets GPU time pass up to `end_ns` or for at most `step` (shared GPUs), whichever is
    /// first.
    fn pass_time(&mut self, end_ns: u64, step: Duration);
}

impl SimHandle for SimGpu {
    const WATCH_STEP: Duration = Duration::from_micros(50);

    fn with<R>(&mut self, f: impl FnOnce(&mut SimGpu) -> R) -> R {
        f(self)
    }

    fn now_ns(&self) -> u64 {
        SimGpu::now_ns(self)
    }

    fn pass_time(&mut self, end_ns: u64, step: Duration) {
        let step = u64::try_from(step.as_nanos()).unwrap_or(u64::MAX);
        let end = end_ns.min(SimGpu::now_ns(self).saturating_add(step));
        self.run_until(end);
    }
}

/// A sim GPU shared with an RM core and driven on its real-time clock by another thread.
#[derive(Debug, Clone)]
pub struct SharedSim(pub Arc<Mutex<SimGpu>>);

impl SharedSim {
    fn lock(&self) -> std::sync::MutexGuard<'_, SimGpu> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SimHandle for SharedSim {
    // Host time here: a sleep much shorter than this costs more than it saves.
    const WATCH_STEP: Duration = Duration::from_micros(200);

    fn with<R>(&mut self, f: impl FnOnce(&mut SimGpu) -> R) -> R {
        f(&mut self.lock())
    }

    fn now_ns(&self) -> u64 {
        self.lock().now_ns()
    }

    fn pass_time(&mut self, end_ns: u64, step: Duration) {
        let now = self.now_ns();
        if end_ns > now {
            // The driver thread moves the clock; GPU time tracks host time.
            std::thread::sleep(Duration::from_nanos(end_ns - now).min(step));
        }
    }
}

/// [`Mechanism`] for a sim GPU, owned ([`SimGpu`]) or shared ([`SharedSim`]).
#[derive(Debug)]
pub struct SimMechanism<H: SimHandle = SimGpu> {
    gpu: H,
}

impl SimMechanism<SimGpu> {
    /// Wraps a sim GPU the scheduler drives (virtual clock).
    pub fn new(mut gpu: SimGpu) -> Self {
        gpu.set_governed(true);
        Self { gpu }
    }

    /// The GPU.
    pub fn gpu(&self) -> &SimGpu {
        &self.gpu
    }

    /// The GPU, mutably (to create channels and submit work).
    pub fn gpu_mut(&mut self) -> &mut SimGpu {
        &mut self.gpu
    }
}

impl SimMechanism<SharedSim> {
    /// Schedules a sim GPU that an RM core shares, on its real-time clock.
    pub fn shared(gpu: Arc<Mutex<SimGpu>>) -> Self {
        let mut gpu = SharedSim(gpu);
        gpu.with(|g| g.set_governed(true));
        Self { gpu }
    }
}

fn tsg(group: GroupRef) -> TsgRef {
    TsgRef {
        runlist: group.runlist,
        tsgid: group.tsg,
    }
}

fn err(group: GroupRef, e: SimError) -> MechanismError {
    match e {
        SimError::NoSuchTsg(_) | SimError::NoSuchRunlist(_) => MechanismError::NoSuchGroup(group),
        SimError::PreemptTimeout(_) => MechanismError::PreemptTimeout(group),
        other => MechanismError::Backend(other.to_string()),
    }
}

/// Whether the group is on its engine or any of its channels has GPFIFO entries not yet
/// fetched (GP_GET != GP_PUT).
fn busy(gpu: &SimGpu, group: GroupRef) -> Result<bool, MechanismError> {
    let t = tsg(group);
    if gpu.resident_tsg(group.runlist).map_err(|e| err(group, e))? == Some(t) {
        return Ok(true);
    }
    let info = gpu.tsg_info(t).map_err(|e| err(group, e))?;
    let pool = gpu.memory();
    for c in info.channels {
        let cfg = gpu.channel_config(c).map_err(|e| err(group, e))?;
        let get = cfg.userd.read(pool, userd::GP_GET);
        let put = cfg.userd.read(pool, userd::GP_PUT);
        if let (Ok(g), Ok(p)) = (get, put) {
            if g != p {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

impl<H: SimHandle> Mechanism for SimMechanism<H> {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            timeslice: true,
            interleave: true,
            channel_gate: true,
            preempt: true,
            busy_query: true,
            run_time_stats: true,
        }
    }

    fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError> {
        Ok(self.gpu.with(|gpu| {
            gpu.tsgs()
                .into_iter()
                .filter(|t| !t.channels.is_empty())
                .map(|t| GroupInfo {
                    group: GroupRef {
                        runlist: t.tsg.runlist,
                        tsg: t.tsg.tsgid,
                    },
                    gfid: t.gfid,
                })
                .collect()
        }))
    }

    fn set_timeslice(
        &mut self,
        group: GroupRef,
        slice: Duration,
    ) -> Result<Duration, MechanismError> {
        let ts = self
            .gpu
            .with(|gpu| gpu.program_tsg_timeslice_us(tsg(group), slice.as_micros().max(1) as u64))
            .map_err(|e| err(group, e))?;
        Ok(Duration::from_nanos(ts.as_ns()))
    }

    fn set_interleave(
        &mut self,
        group: GroupRef,
        priority: Priority,
    ) -> Result<(), MechanismError> {
        let level = match priority {
            Priority::Low => InterleaveLevel::Low,
            Priority::Medium => InterleaveLevel::Medium,
            Priority::High => InterleaveLevel::High,
        };
        self.gpu
            .with(|gpu| {
                let t = tsg(group);
                if gpu.tsg_info(t)?.interleave != level {
                    gpu.program_tsg_interleave(t, level)?;
                }
                Ok(())
            })
            .map_err(|e| err(group, e))
    }

    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError> {
        self.gpu.with(|gpu| {
            for &g in groups {
                gpu.gate_tsg(tsg(g), !enabled).map_err(|e| err(g, e))?;
            }
            Ok(())
        })
    }

    fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError> {
        self.gpu.with(|gpu| {
            for &g in groups {
                let t = tsg(g);
                if gpu.resident_tsg(g.runlist).map_err(|e| err(g, e))? == Some(t) {
                    gpu.preempt_tsg_and_wait(t, PREEMPT_TIMEOUT.as_nanos() as u64)
                        .map_err(|e| err(g, e))?;
                }
            }
            Ok(())
        })
    }

    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
        self.gpu.with(|gpu| busy(gpu, group))
    }

    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
        let s = self
            .gpu
            .with(|gpu| gpu.tsg_stats(tsg(group)))
            .map_err(|e| err(group, e))?;
        Ok(Duration::from_nanos(s.engine_time_ns))
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.gpu.now_ns())
    }

    fn run_until(
        &mut self,
        deadline: Duration,
        watch: &[GroupRef],
    ) -> Result<Duration, MechanismError> {
        let end = deadline.as_nanos() as u64;
        let step = if watch.is_empty() {
            Duration::MAX
        } else {
            H::WATCH_STEP
        };
        while self.gpu.now_ns() < end {
            self.gpu.pass_time(end, step);
            if !watch.is_empty() {
                let mut any = false;
                for &g in watch {
                    any |= self.busy(g)?;
                }
                if !any {
                    break;
                }
            }
        }
        Ok(self.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_sim::{ClockMode, SimConfig};

    #[test]
    fn shared_gpu_waits_in_host_time_while_its_driver_moves_the_clock() {
        let gpu = Arc::new(Mutex::new(SimGpu::new(SimConfig {
            clock: ClockMode::RealTime,
            ..SimConfig::default()
        })));
        let _driver =
            rm_sim::driver::RealTimeDriver::spawn(gpu.clone(), Duration::from_micros(100)).unwrap();
        let mut mech = SimMechanism::shared(gpu);
        let t0 = mech.now();
        let host = std::time::Instant::now();
        let reached = mech.run_until(t0 + Duration::from_millis(20), &[]).unwrap();
        assert!(reached >= t0 + Duration::from_millis(20));
        // The GPU clock follows host time: waiting 20 ms of GPU time took about as long.
        assert!(
            host.elapsed() >= Duration::from_millis(15),
            "{:?}",
            host.elapsed()
        );
        assert!(mech.groups().unwrap().is_empty());
    }
}
