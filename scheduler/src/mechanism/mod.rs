//! The mechanism layer: what the scheduler can do to a backend's runlists, and which of those
//! levers actually take effect there. The scheduler chooses its method from [`Capabilities`],
//! never from a backend's name: on the sim GPU every lever works; on a GSP-era NVIDIA GPU only
//! channel enable/disable and preempt do (timeslice and interleave are accepted and inert).

pub mod fake;
pub mod load;
pub mod sim;

use std::time::Duration;

use crate::policy_file::Priority;

/// One channel group (TSG) on one runlist, as the backend names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    /// Runlist (engine) the group is on.
    pub runlist: u32,
    /// The group's id on that runlist.
    pub tsg: u32,
}

/// A channel group present on the GPU and the GFID that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub group: GroupRef,
    /// Owning GPU function (0 = the physical function / host).
    pub gfid: u32,
}

/// Which levers take effect on a backend. A lever that the backend accepts but ignores is
/// `false` here: the scheduler must not rely on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Per-group timeslice changes how long the group runs per runlist pass.
    pub timeslice: bool,
    /// Per-group interleave level changes how often it appears per pass.
    pub interleave: bool,
    /// Enabling/disabling a set of channels stops and resumes their scheduling.
    pub channel_gate: bool,
    /// Preempting a group takes it off the engine and waits until it is off.
    pub preempt: bool,
    /// Whether a group has work pending can be queried.
    pub busy_query: bool,
    /// Cumulative engine time per group can be read.
    pub run_time_stats: bool,
}

/// A failure of a lever or query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MechanismError {
    /// The group is not (or no longer) on the GPU.
    #[error("no channel group {0:?}")]
    NoSuchGroup(GroupRef),
    /// The backend does not offer this lever at all.
    #[error("lever `{0}` is not available on this backend")]
    Unsupported(&'static str),
    /// A preemption did not complete in time.
    #[error("preemption of {0:?} timed out")]
    PreemptTimeout(GroupRef),
    /// The backend reported an error.
    #[error("backend error: {0}")]
    Backend(String),
}

/// The levers and queries the scheduler uses on a backend's runlists.
pub trait Mechanism {
    /// Levers that take effect on this backend.
    fn capabilities(&self) -> Capabilities;

    /// The channel groups currently on the GPU.
    fn groups(&mut self) -> Result<Vec<GroupInfo>, MechanismError>;

    /// Sets a group's timeslice; returns the value the hardware will use (rounded).
    fn set_timeslice(
        &mut self,
        group: GroupRef,
        slice: Duration,
    ) -> Result<Duration, MechanismError>;

    /// Sets a group's interleave level from the tenant's priority.
    fn set_interleave(&mut self, group: GroupRef, priority: Priority)
        -> Result<(), MechanismError>;

    /// Enables or disables scheduling of all channels of `groups`. Disabling does not take a
    /// running group off the engine; [`Mechanism::preempt`] does.
    fn set_enabled(&mut self, groups: &[GroupRef], enabled: bool) -> Result<(), MechanismError>;

    /// Takes `groups` off their engines, returning once the preemption has completed.
    fn preempt(&mut self, groups: &[GroupRef]) -> Result<(), MechanismError>;

    /// Whether the group has work pending (submitted and not finished), enabled or not.
    fn busy(&mut self, group: GroupRef) -> Result<bool, MechanismError>;

    /// Cumulative time the group has spent executing on its engine.
    fn run_time(&mut self, group: GroupRef) -> Result<Duration, MechanismError>;

    /// The GPU's current time.
    fn now(&self) -> Duration;

    /// Lets the GPU run until `deadline`, or until none of `watch` has work left (when `watch` is
    /// not empty), whichever comes first. Returns the time reached. A virtual-clock backend
    /// simulates up to that point; a real one sleeps.
    fn run_until(
        &mut self,
        deadline: Duration,
        watch: &[GroupRef],
    ) -> Result<Duration, MechanismError>;
}
