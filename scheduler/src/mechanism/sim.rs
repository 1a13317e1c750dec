//! The mechanism over the rm crate's sim backend ([`SimGpu`]): every lever is effective there.
//! Timeslice and interleave go into the TSG's runlist header, gating writes the channels'
//! enable bits in channel RAM, preempt writes `NV_RUNLIST_PREEMPT` and waits for PENDING to
//! clear, run time is the TSG's engine-time accounting.

use std::time::Duration;

use rm_abi::userd;
use rm_sim::memory::MemoryPool;
use rm_sim::{InterleaveLevel, SimError, SimGpu, TsgRef};

use super::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
use crate::policy_file::Priority;

/// Longest a preemption may take before it is reported as failed (GPU time).
const PREEMPT_TIMEOUT: Duration = Duration::from_millis(100);

/// [`Mechanism`] for a [`SimGpu`].
#[derive(Debug)]
pub struct SimMechanism {
    gpu: SimGpu,
}

impl SimMechanism {
    /// Wraps a sim GPU.
    pub fn new(gpu: SimGpu) -> Self {
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

    fn tsg(group: GroupRef) -> TsgRef {
        TsgRef {
            runlist: group.runlist,
            tsgid: group.tsg,
        }
    }

    fn err(group: GroupRef, e: SimError) -> MechanismError {
        match e {
            SimError::NoSuchTsg(_) | SimError::NoSuchRunlist(_) => {
                MechanismError::NoSuchGroup(group)
            }
            SimError::PreemptTimeout(_) => MechanismError::PreemptTimeout(group),
            other => MechanismError::Backend(other.to_string()),
        }
    }

    /// Whether any channel of the TSG has GPFIFO entries not yet fetched (GP_GET != GP_PUT).
    fn has_unfetched(&self, group: GroupRef) -> Result<bool, MechanismError> {
        let info = self
            .gpu
            .tsg_info(Self::tsg(group))
            .map_err(|e| Self::err(group, e))?;
        let pool: &MemoryPool = self.gpu.memory();
        for c in info.channels {
            let cfg = self
                .gpu
                .channel_config(c)
                .map_err(|e| Self::err(group, e))?;
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
}

impl Mechanism for SimMechanism {
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
        Ok(self
            .gpu
            .tsgs()
            .into_iter()
            .filter(|t| !t.channels.is_empty())
            .map(|t| GroupInfo {
                group: GroupRef {
                    runlist: t.tsg.runlist,
                    tsg: t.tsg.tsgid,
                },
                gfid: t.gfid,
            })
            .collect())
    }

    fn set_timeslice(
        &mut self,
        group: GroupRef,
        slice: Duration,
    ) -> Result<Duration, MechanismError> {
        let ts = self
            .gpu
            .set_tsg_timeslice_us(Self::tsg(group), slice.as_micros().max(1) as u64)
            .map_err(|e| Self::err(group, e))?;
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
        let t = Self::tsg(group);
        let current = self
            .gpu
            .tsg_info(t)
            .map_err(|e| Self::err(group, e))?
            .interleave;
        if current != level {
            self.gpu
                .set_tsg_interleave(t, level)
                .map_err(|e| Self::err(group, e))?;
        }
        Ok(())
    }

    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError> {
        for &g in groups {
            let info = self
                .gpu
                .tsg_info(Self::tsg(g))
                .map_err(|e| Self::err(g, e))?;
            for c in info.channels {
                self.gpu
                    .set_channel_enabled(c, enabled)
                    .map_err(|e| Self::err(g, e))?;
            }
        }
        Ok(())
    }

    fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError> {
        for &g in groups {
            let t = Self::tsg(g);
            let resident = self
                .gpu
                .resident_tsg(g.runlist)
                .map_err(|e| Self::err(g, e))?;
            if resident == Some(t) {
                self.gpu
                    .preempt_tsg_and_wait(t, PREEMPT_TIMEOUT.as_nanos() as u64)
                    .map_err(|e| Self::err(g, e))?;
            }
        }
        Ok(())
    }

    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
        let resident = self
            .gpu
            .resident_tsg(group.runlist)
            .map_err(|e| Self::err(group, e))?
            == Some(Self::tsg(group));
        Ok(resident || self.has_unfetched(group)?)
    }

    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
        let s = self
            .gpu
            .tsg_stats(Self::tsg(group))
            .map_err(|e| Self::err(group, e))?;
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
        const STEP: u64 = 50_000;
        let end = deadline.as_nanos() as u64;
        while self.gpu.now_ns() < end {
            let step_end = if watch.is_empty() {
                end
            } else {
                end.min(self.gpu.now_ns() + STEP)
            };
            self.gpu.run_until(step_end);
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
