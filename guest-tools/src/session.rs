//! The guest programs' sessions on the vGPU: opening it from sysfs (or, from a host process,
//! through an instance's socket), `vgpu-smi`, the guest-side
//! bench, and the kill-and-reset check.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rm_abi::alloc_params::Nv0080AllocParameters;
use rm_abi::class;
use rm_abi::ctrl::{Nv0080CtrlGpuGetNumSubdevicesParams, NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES};
use serde::{Deserialize, Serialize};

use crate::driver::sysfs::{self, PciVgpu};
use crate::driver::uio::{self, UIO_DRIVER};
use crate::driver::{Completion, Setup};
use crate::modules::ModuleIndex;
use crate::rmapi::{RmClient, VgpuTransport};
use crate::smi::{self, SmiReport};
use crate::workload::{GpuContext, MemoryMode, OwnTsg, TsgSettings};

/// Where PCI functions are listed.
pub const SYSFS: &str = crate::pci::SYSFS_PCI_DEVICES;
/// Present once `uio_pci_generic` is loaded.
const UIO_DRIVERS: &str = "/sys/bus/pci/drivers/uio_pci_generic";

/// The vGPU opened by this process: the transport, and the lock that keeps others off it.
pub struct Session {
    /// The transport over the driver.
    pub transport: VgpuTransport,
    /// PCI address.
    pub bus_id: String,
    uio_events: Option<PathBuf>,
    /// In a guest: the lock on `resource0` (None when attached through a socket, where the
    /// daemon serves one client at a time).
    _lock: Option<std::fs::File>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

impl Session {
    /// Opens the vGPU from sysfs; with [`Completion::Irq`] loads `uio_pci_generic` if needed
    /// and binds the vGPU to it.
    pub fn open(setup: Setup, completion: Completion) -> anyhow::Result<Session> {
        if completion == Completion::Irq && !Path::new(UIO_DRIVERS).is_dir() {
            ModuleIndex::running()?
                .load(UIO_DRIVER)
                .with_context(|| format!("loading {UIO_DRIVER}"))?;
        }
        let PciVgpu {
            driver,
            function,
            lock,
            uio_events,
        } = sysfs::open(Path::new(SYSFS), setup, completion)?;
        Ok(Session {
            transport: VgpuTransport::new(driver),
            bus_id: function.bdf,
            uio_events,
            _lock: Some(lock),
        })
    }

    /// Attaches a vGPU instance from a host process through its vfio-user socket (no VM):
    /// the same driver and programs over socket messages and the window's memfd.
    pub fn attach(socket: &Path, setup: Setup, completion: Completion) -> anyhow::Result<Session> {
        let vgpu = crate::driver::vfio_user::attach(socket, setup, completion)?;
        Ok(Session {
            transport: VgpuTransport::new(vgpu.driver),
            bus_id: vgpu.name,
            uio_events: None,
            _lock: None,
        })
    }

    /// Interrupts the guest kernel counted for the vGPU's uio device (None when polling).
    pub fn uio_events(&self) -> anyhow::Result<Option<u64>> {
        self.uio_events
            .as_deref()
            .map(uio::event_count)
            .transpose()
            .map_err(Into::into)
    }

    /// `vgpu-smi` with the given client's channel groups.
    pub fn smi(
        &self,
        c: &mut RmClient<'_>,
        tsg_client: u32,
        tsgs: &[OwnTsg],
    ) -> anyhow::Result<SmiReport> {
        let (info, counters) = {
            let d = self.transport.driver();
            (d.info(), d.counters())
        };
        Ok(smi::gather(
            c,
            &self.bus_id,
            info,
            counters,
            tsg_client,
            tsgs,
        )?)
    }

    /// `vgpu-smi` from a client of its own (no channel groups).
    pub fn smi_standalone(&self) -> anyhow::Result<SmiReport> {
        let mut c = RmClient::open(&self.transport)?;
        let r = self.smi(&mut c, 0, &[])?;
        c.close()?;
        Ok(r)
    }
}

/// Percentiles of a sample of durations, in µs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Mean.
    pub mean_us: f64,
}

impl Percentiles {
    /// Of `samples` (sorted here).
    pub fn of(samples: &mut [Duration]) -> Percentiles {
        samples.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let at = |q: f64| {
            if samples.is_empty() {
                0.0
            } else {
                us(samples[((samples.len() - 1) as f64 * q).round() as usize])
            }
        };
        Percentiles {
            n: samples.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            mean_us: if samples.is_empty() {
                0.0
            } else {
                samples.iter().map(|&d| us(d)).sum::<f64>() / samples.len() as f64
            },
        }
    }
}

/// The guest-side bench.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuestBench {
    /// `RM_CONTROL` (`NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES`) round trips through the queue.
    pub escape: Percentiles,
    /// From the first doorbell write to both channels' semaphores seen released (window
    /// memory, one entry per channel, no compute work).
    pub doorbell_to_semaphore: Percentiles,
    /// Memory mode of the doorbell rounds.
    pub memory: MemoryMode,
    /// Escape requests the device counted during the whole bench.
    pub requests: u64,
    /// Doorbells the device accepted during the whole bench.
    pub doorbells: u64,
    /// How the escapes completed.
    pub completion: Completion,
    /// Interrupts the driver waited for during the bench (0 when polling).
    pub interrupts: u64,
    /// Completions found without their interrupt during the bench (0 when polling).
    #[serde(default)]
    pub missed_interrupts: u64,
    /// Interrupts the guest kernel's uio device counted during the bench (None when polling).
    pub uio_events: Option<u64>,
}

/// Runs `escapes` control round trips and `rounds` doorbell rounds on `s`.
pub fn bench(s: &Session, escapes: usize, rounds: usize) -> anyhow::Result<GuestBench> {
    let t = &s.transport;
    let before = t.driver().counters();
    let (irq_before, uio_before) = (t.driver().interrupts(), s.uio_events()?);
    let missed_before = t.driver().missed_interrupts();
    let mut c = RmClient::open(t)?;
    let client = c.alloc_root()?;
    let device = c.alloc(
        client,
        client,
        class::NV01_DEVICE_0,
        &mut Nv0080AllocParameters::default(),
    )?;
    let mut samples = Vec::with_capacity(escapes);
    for _ in 0..escapes {
        let mut p = Nv0080CtrlGpuGetNumSubdevicesParams::default();
        let start = Instant::now();
        c.control(
            client,
            device,
            NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES,
            &mut p,
        )?;
        samples.push(start.elapsed());
        if p.numSubDevices != 1 {
            bail!("GET_NUM_SUBDEVICES answered {}", p.numSubDevices);
        }
    }
    c.free(client, client, client)?;
    c.close()?;
    let escape = Percentiles::of(&mut samples);

    let memory = MemoryMode::best(t);
    let mut ctx = GpuContext::create(t, TsgSettings::default(), memory)?;
    let ring = |tok: u32| t.driver().doorbell(tok);
    let mut lat = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        lat.push(ctx.round(1, 0, &ring)?.doorbell_to_semaphores);
    }
    ctx.destroy()?;
    let after = t.driver().counters();
    let uio_after = s.uio_events()?;
    let d = t.driver();
    Ok(GuestBench {
        escape,
        doorbell_to_semaphore: Percentiles::of(&mut lat),
        memory,
        requests: after.requests - before.requests,
        doorbells: after.doorbells - before.doorbells,
        completion: d.completion(),
        interrupts: d.interrupts() - irq_before,
        missed_interrupts: d.missed_interrupts() - missed_before,
        uio_events: uio_after.zip(uio_before).map(|(a, b)| a.saturating_sub(b)),
    })
}

/// What the kill check saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KillCleanup {
    /// Rounds the workload reported before it was killed.
    pub rounds_before_kill: u64,
    /// Signal that ended it.
    pub signal: Option<i32>,
    /// Framebuffer in use on the vGPU after the kill, before the reset (KiB).
    pub fb_used_kib_after_kill: u64,
    /// Framebuffer in use after the reset (KiB).
    pub fb_used_kib_after_reset: u64,
}

/// Starts `exe workload` (video memory, so its allocation shows in the framebuffer figures),
/// kills it with SIGKILL once it has reported `rounds` rounds, then attaches to the device it
/// left, reads the framebuffer use, resets the device, and reads it again.
pub fn kill_and_reset(exe: &Path, rounds: u64) -> anyhow::Result<KillCleanup> {
    let mut child = Command::new(exe)
        .args([
            "workload",
            "--memory",
            "video",
            "--seconds",
            "120",
            "--progress",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let out = child.stdout.take().context("piped stdout")?;
    let mut seen = 0;
    for line in BufReader::new(out).lines() {
        let line = line.context("reading the workload's progress")?;
        if let Some(n) = line.strip_prefix("progress: round ") {
            seen = n.trim().parse().unwrap_or(0);
            if seen >= rounds {
                break;
            }
        }
    }
    if seen < rounds {
        let status = child.wait()?;
        bail!("the workload ended after {seen} rounds ({status}) before it could be killed");
    }
    // SAFETY: signals our own child by pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let status = child.wait()?;
    use std::os::unix::process::ExitStatusExt;
    let s = Session::open(Setup::Attach, Completion::Poll)?;
    let after_kill = s.smi_standalone()?.fb_used_kib;
    s.transport.driver().reset()?;
    let after_reset = s.smi_standalone()?.fb_used_kib;
    Ok(KillCleanup {
        rounds_before_kill: seen,
        signal: status.signal(),
        fb_used_kib_after_kill: after_kill,
        fb_used_kib_after_reset: after_reset,
    })
}
