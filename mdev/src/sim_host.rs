//! The RM core over the sim GPU inside the VMM process, with the GPU running on its real-time
//! clock: what a VMM attaches vGPUs to until the core moves into a host daemon.
//!
//! The sim executes GPU work only when its clock advances. A [`RealTimeDriver`] thread advances
//! it every [`DRIVER_PERIOD`], so work a guest submits through the doorbell runs while the guest
//! polls its semaphore, without any call from the guest. Each accepted doorbell also brings the
//! clock up to host time at once (in the doorbell's exit, after the core is unlocked), so short
//! work completes before the guest's next instruction instead of at the next tick. Lock order:
//! the core's mutex, then the GPU's; the driver and the doorbell catch-up take only the GPU's.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rm_core::backend::GpuInfo;
use rm_core::{Rm, RmError};
use rm_sim::driver::{RealTimeDriver, MAX_CATCH_UP_NS};
use rm_sim::{ClockMode, SimBackend, SimConfig};
use thiserror::Error;

use vgpu::{DeviceError, Gfid, VgpuConfig, VgpuDevice};

use crate::profile::Profile;
use crate::rm_service::RmService;

/// How often the driver thread moves the sim GPU's clock to host time.
pub const DRIVER_PERIOD: Duration = Duration::from_micros(100);

/// The shared in-process RM core over the sim backend.
pub type SimRm = Arc<Mutex<Rm<SimBackend>>>;

/// Why a vGPU could not be attached.
#[derive(Debug, Error)]
pub enum AttachError {
    /// The RM core refused the GFID (out of range or taken).
    #[error(transparent)]
    Rm(#[from] RmError),
    /// The device could not be built (its window).
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// The GPU side of vgpud: an RM core over one backend, which builds the device of each vGPU
/// instance the daemon starts. [`SimHost`] is the sim GPU; [`crate::nvidia_host::NvidiaHost`]
/// the host's NVIDIA GPU.
pub trait GpuHost: Send + std::fmt::Debug {
    /// What the backend reports about its GPU (vGPU types derive from it).
    fn gpu_info(&self) -> GpuInfo;
    /// Creates vGPU `gfid` of type `profile` in the core, as the guest will find it at PCI
    /// slot `pci_slot`, and builds its device with a window of `window_size` bytes.
    fn attach(
        &self,
        profile: &Profile,
        gfid: Gfid,
        window_size: u64,
        pci_slot: u8,
    ) -> Result<VgpuDevice, AttachError>;
    /// Objects the core holds for `gfid` (clients included).
    fn object_count(&self, gfid: Gfid) -> usize;
    /// The GPU's clock in ns (the sim's own clock; host time on a real GPU).
    fn gpu_time_ns(&self) -> u64;
    /// The sim GPU, whose levers the VM scheduler moves; None on a real GPU.
    fn sim_gpu(&self) -> Option<Arc<Mutex<rm_sim::SimGpu>>>;
}

/// An RM core over a real-time sim GPU, with the thread that drives it.
pub struct SimHost {
    rm: SimRm,
    _driver: Option<RealTimeDriver>,
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost")
            .field("real_time", &self._driver.is_some())
            .finish_non_exhaustive()
    }
}

impl SimHost {
    /// A sim GPU on the real-time clock, driven every [`DRIVER_PERIOD`].
    pub fn real_time() -> std::io::Result<Self> {
        let rm = Arc::new(Mutex::new(Rm::new(SimBackend::new(SimConfig {
            clock: ClockMode::RealTime,
            ..SimConfig::default()
        }))));
        let gpu = lock(&rm).backend().gpu();
        let driver = RealTimeDriver::spawn(gpu, DRIVER_PERIOD)?;
        Ok(Self {
            rm,
            _driver: Some(driver),
        })
    }

    /// A sim GPU on the virtual clock, advanced only by hand (benchmarks of the call path).
    pub fn virtual_clock() -> Self {
        Self {
            rm: Arc::new(Mutex::new(Rm::new(SimBackend::new(SimConfig::default())))),
            _driver: None,
        }
    }

    /// The core (shared with every device attached to it).
    pub fn rm(&self) -> SimRm {
        self.rm.clone()
    }

    /// The sim GPU itself (the scheduler's levers act on it).
    pub fn gpu(&self) -> Arc<Mutex<rm_sim::SimGpu>> {
        lock(&self.rm).backend().gpu()
    }
}

impl GpuHost for SimHost {
    fn gpu_info(&self) -> GpuInfo {
        lock(&self.rm).gpu_info().clone()
    }

    fn attach(
        &self,
        profile: &Profile,
        gfid: Gfid,
        window_size: u64,
        pci_slot: u8,
    ) -> Result<VgpuDevice, AttachError> {
        let info = self.gpu_info();
        let gpu = lock(&self.rm).backend().gpu();
        let service = RmService::attach(
            self.rm.clone(),
            gfid,
            profile.rm_config(&info, gfid, pci_slot),
        )?
        .on_doorbell(move || {
            gpu.lock()
                .unwrap_or_else(|p| p.into_inner())
                .sync_to_real_time(MAX_CATCH_UP_NS);
        });
        VgpuDevice::new(VgpuConfig { gfid, window_size }, Box::new(service)).map_err(|e| {
            // The device never existed, so nothing will tear the vGPU down but us.
            let _ = lock(&self.rm).destroy_vgpu(gfid);
            AttachError::Device(e)
        })
    }

    fn object_count(&self, gfid: Gfid) -> usize {
        lock(&self.rm).object_count(gfid)
    }

    fn gpu_time_ns(&self) -> u64 {
        self.gpu()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .now_ns()
    }

    fn sim_gpu(&self) -> Option<Arc<Mutex<rm_sim::SimGpu>>> {
        Some(self.gpu())
    }
}

fn lock(rm: &Mutex<Rm<SimBackend>>) -> MutexGuard<'_, Rm<SimBackend>> {
    rm.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile;

    #[test]
    fn attach_creates_the_vgpu_and_refuses_a_taken_gfid() {
        let host = SimHost::virtual_clock();
        let p = profile::resolve("sim-70c", &host.gpu_info()).unwrap();
        let dev = host.attach(&p, 3, 1 << 20, 1).unwrap();
        assert_eq!(dev.gfid(), 3);
        assert!(matches!(
            host.attach(&p, 3, 1 << 20, 1),
            Err(AttachError::Rm(RmError::GfidInUse(3)))
        ));
        assert!(matches!(
            host.attach(&p, 64, 1 << 20, 1),
            Err(AttachError::Rm(RmError::BadGfid(64)))
        ));
        assert!(matches!(
            host.attach(&p, 4, 3 << 20, 1),
            Err(AttachError::Device(_))
        ));
        host.attach(&p, 4, 1 << 20, 1).unwrap();
        drop(dev);
        // Dropping the device destroyed the vGPU: the GFID is free again.
        host.attach(&p, 3, 1 << 20, 1).unwrap();
    }

    #[test]
    fn real_time_clock_advances_without_calls() {
        let host = SimHost::real_time().unwrap();
        let gpu = host.rm.lock().unwrap().backend().gpu();
        let t0 = gpu.lock().unwrap().now_ns();
        let mut t1 = t0;
        for _ in 0..1000 {
            std::thread::sleep(Duration::from_millis(1));
            t1 = gpu.lock().unwrap().now_ns();
            if t1 > t0 {
                break;
            }
        }
        assert!(t1 > t0, "the driver thread never advanced the GPU clock");
    }
}
