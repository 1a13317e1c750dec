//! The GPU models the command-line tool can run on, behind one type.

use std::time::Duration;

use crate::mechanism::fake::{FakeCosts, FakeGpu};
use crate::mechanism::load::LoadPattern;
use crate::mechanism::{Capabilities, GroupInfo, GroupRef, Mechanism, MechanismError};
use crate::policy_file::Priority;
use crate::testbed::sim::SimTestbed;
use crate::testbed::Testbed;

/// Which GPU model to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuKind {
    /// The rm crate's sim backend (software Hopper FIFO), virtual clock.
    Sim,
    /// The scheduler's own fake GPU with every lever effective.
    Fake,
    /// The fake GPU with only channel gating and preempt effective (as an H200 under GSP),
    /// with the measured H200 lever costs.
    FakeGsp,
}

/// One of the GPU models.
pub enum AnyGpu {
    /// A fake GPU.
    Fake(FakeGpu),
    /// The sim backend with synthetic tenants.
    Sim(Box<SimTestbed>),
}

impl std::fmt::Debug for AnyGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AnyGpu::Fake(_) => "AnyGpu::Fake",
            _ => "AnyGpu::Sim",
        })
    }
}

impl AnyGpu {
    /// A fresh GPU of `kind`.
    pub fn new(kind: GpuKind) -> Self {
        match kind {
            GpuKind::Sim => Self::Sim(Box::default()),
            GpuKind::Fake => Self::Fake(FakeGpu::new(FakeGpu::all_levers(), FakeCosts::default())),
            GpuKind::FakeGsp => Self::Fake(FakeGpu::new(
                FakeGpu::gsp_levers(),
                FakeCosts {
                    context_switch: Duration::from_micros(20),
                    preempt: Duration::from_micros(450),
                    gate: Duration::from_micros(400),
                    default_timeslice: Duration::from_millis(2),
                },
            )),
        }
    }

    /// Description of the model.
    pub fn describe_kind(&self) -> String {
        self.describe()
    }
}

macro_rules! delegate {
    ($self:ident, $g:ident => $e:expr) => {
        match $self {
            AnyGpu::Fake($g) => $e,
            AnyGpu::Sim($g) => $e,
        }
    };
}

impl Mechanism for AnyGpu {
    fn capabilities(&self) -> Capabilities {
        delegate!(self, g => g.capabilities())
    }
    fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError> {
        delegate!(self, g => g.groups())
    }
    fn set_timeslice(
        &mut self,
        group: GroupRef,
        slice: Duration,
    ) -> Result<Duration, MechanismError> {
        delegate!(self, g => g.set_timeslice(group, slice))
    }
    fn set_interleave(
        &mut self,
        group: GroupRef,
        priority: Priority,
    ) -> Result<(), MechanismError> {
        delegate!(self, g => g.set_interleave(group, priority))
    }
    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError> {
        delegate!(self, g => g.set_enabled(groups, enabled))
    }
    fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError> {
        delegate!(self, g => g.preempt(groups))
    }
    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError> {
        delegate!(self, g => g.busy(group))
    }
    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError> {
        delegate!(self, g => g.run_time(group))
    }
    fn now(&self) -> Duration {
        delegate!(self, g => g.now())
    }
    fn run_until(
        &mut self,
        deadline: Duration,
        watch: &[GroupRef],
    ) -> Result<Duration, MechanismError> {
        delegate!(self, g => g.run_until(deadline, watch))
    }
}

impl Testbed for AnyGpu {
    fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError> {
        delegate!(self, g => g.add_load(gfid, load))
    }
    fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError> {
        delegate!(self, g => g.work_done(gfid))
    }
    fn describe(&self) -> String {
        delegate!(self, g => g.describe())
    }
}
