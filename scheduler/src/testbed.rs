//! A GPU the scheduler can be exercised on with synthetic tenants: a [`Mechanism`] that can also
//! be given work and report how much work each GFID has completed (the throughput measure).

use std::time::Duration;

use crate::mechanism::fake::FakeGpu;
use crate::mechanism::load::LoadPattern;
use crate::mechanism::{GroupRef, Mechanism, MechanismError};

/// A mechanism that hosts synthetic tenants.
pub trait Testbed: Mechanism {
    /// Gives `gfid` a channel group on the compute runlist running `load`.
    fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError>;

    /// Useful engine time completed so far by `gfid`'s synthetic work (what throughput counts).
    fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError>;

    /// One line describing the GPU model (for reports).
    fn describe(&self) -> String;
}

impl Testbed for FakeGpu {
    fn add_load(&mut self, gfid: u32, load: LoadPattern) -> Result<GroupRef, MechanismError> {
        Ok(self.add_group(0, gfid, load))
    }

    fn work_done(&mut self, gfid: u32) -> Result<Duration, MechanismError> {
        let mut total = Duration::ZERO;
        for info in self.groups()? {
            if info.gfid == gfid {
                total += self.run_time(info.group)?;
            }
        }
        Ok(total)
    }

    fn describe(&self) -> String {
        let c = self.capabilities();
        format!(
            "fake GPU (timeslice lever {}, gating {})",
            if c.timeslice { "effective" } else { "inert" },
            if c.channel_gate { "effective" } else { "inert" }
        )
    }
}
