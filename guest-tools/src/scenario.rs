//! Scenarios: what the agent does in a guest, selected with `vgpu.scenario=` on the kernel
//! command line.

use crate::modules::{ModuleError, ModuleIndex};
use crate::pci::{self, PciError};
use crate::report::Record;
use std::path::Path;

/// Kernel command-line key that selects the scenario.
pub const SCENARIO_PARAM: &str = "vgpu.scenario";

/// Modules the probe scenario loads: the virtio PCI transport and the userspace PCI driver the
/// vGPU driver will bind through.
pub const PROBE_MODULES: &[&str] = &["virtio_pci", "uio_pci_generic"];

/// A test scenario the agent can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Report boot time, load the guest's PCI driver modules, list PCI functions.
    Probe,
    /// What `probe` does, then drive the vGPU: smi, workload, hostile requests, bench,
    /// kill-and-reset, then bench and workload with interrupt completion.
    Vgpu,
    /// Show the vGPU: `vgpu-smi`, then a short workload ([`DEMO_WORKLOAD_SECONDS`]).
    Demo,
    /// Keep the GPU loaded for `vgpu.stream_seconds=` (default [`SHARE_SECONDS`]) and report
    /// the work done per 100 ms of GPU time: what VMs sharing one GPU compare.
    Share,
}

/// How long the share scenario streams when the command line does not say.
pub const SHARE_SECONDS: f64 = 12.0;

/// Kernel parameter with the share scenario's duration, seconds.
pub const STREAM_SECONDS_PARAM: &str = "vgpu.stream_seconds";

/// How long the demo scenario's workload runs.
pub const DEMO_WORKLOAD_SECONDS: f64 = 3.0;

/// Error from selecting or running a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The command line named a scenario this agent does not know.
    #[error("unknown scenario {0:?} (known: probe, vgpu, demo, share)")]
    Unknown(String),
    /// A module could not be loaded.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// PCI functions could not be listed.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// A vGPU program failed.
    #[error("{0:#}")]
    Vgpu(anyhow::Error),
}

impl std::str::FromStr for Scenario {
    type Err = ScenarioError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "probe" => Ok(Scenario::Probe),
            "vgpu" => Ok(Scenario::Vgpu),
            "demo" => Ok(Scenario::Demo),
            "share" => Ok(Scenario::Share),
            other => Err(ScenarioError::Unknown(other.to_string())),
        }
    }
}

impl Scenario {
    /// Name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Probe => "probe",
            Scenario::Vgpu => "vgpu",
            Scenario::Demo => "demo",
            Scenario::Share => "share",
        }
    }

    /// Picks the scenario from a kernel command line; `probe` when none is given.
    pub fn from_cmdline(cmdline: &str) -> Result<Self, ScenarioError> {
        crate::cmdline::param(cmdline, SCENARIO_PARAM)
            .map_or(Ok(Scenario::Probe), |name| name.parse())
    }

    /// Runs the scenario, emitting its result lines; stops at the first failing step.
    pub fn run(self) -> Result<(), ScenarioError> {
        match self {
            Scenario::Probe => probe(),
            Scenario::Vgpu => {
                probe()?;
                crate::cli::scenario().map_err(ScenarioError::Vgpu)
            }
            Scenario::Demo => crate::cli::demo(DEMO_WORKLOAD_SECONDS).map_err(ScenarioError::Vgpu),
            Scenario::Share => {
                let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
                let seconds = crate::cmdline::param(&cmdline, STREAM_SECONDS_PARAM)
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .unwrap_or(SHARE_SECONDS);
                crate::cli::share(seconds).map_err(ScenarioError::Vgpu)
            }
        }
    }
}

fn probe() -> Result<(), ScenarioError> {
    let index = ModuleIndex::running()?;
    let mut first_error = None;
    for name in PROBE_MODULES {
        let result = index.load(name);
        Record::Module {
            name: name.to_string(),
            loaded: result.is_ok(),
            error: result.as_ref().err().map(|e| e.to_string()),
        }
        .emit();
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    for function in pci::enumerate(Path::new(pci::SYSFS_PCI_DEVICES))? {
        Record::PciFunction(function).emit();
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_comes_from_the_command_line() {
        assert_eq!(Scenario::from_cmdline("quiet").unwrap(), Scenario::Probe);
        assert_eq!(
            Scenario::from_cmdline("quiet vgpu.scenario=probe").unwrap(),
            Scenario::Probe
        );
        assert_eq!(
            Scenario::from_cmdline("vgpu.scenario=demo quiet").unwrap(),
            Scenario::Demo
        );
        assert!(matches!(
            Scenario::from_cmdline("vgpu.scenario=fly"),
            Err(ScenarioError::Unknown(s)) if s == "fly"
        ));
    }
}
