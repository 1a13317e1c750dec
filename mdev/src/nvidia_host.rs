//! The RM core over the host's NVIDIA GPU ([`rm_nvidia::NvidiaBackend`]): VM guests' escapes
//! run on the real driver, each guest in its own GFID namespace, with the same validation,
//! sanitising and quotas as on the sim. The GPU runs on its own; there is no clock to drive.
//! Limit: no VM scheduler yet (the policy's levers are the sim's), so instances share the GPU
//! by the hardware's own round robin.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rm_core::backend::GpuInfo;
use rm_core::Rm;
use rm_nvidia::NvidiaBackend;
use vgpu::{Gfid, VgpuConfig, VgpuDevice};

use crate::profile::Profile;
use crate::rm_service::RmService;
use crate::sim_host::{AttachError, GpuHost};

/// The shared RM core over the real GPU.
pub type NvidiaRm = Arc<Mutex<Rm<NvidiaBackend>>>;

/// An RM core over the host's GPU.
pub struct NvidiaHost {
    rm: NvidiaRm,
    started: Instant,
}

impl std::fmt::Debug for NvidiaHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvidiaHost").finish_non_exhaustive()
    }
}

impl NvidiaHost {
    /// The core over GPU `minor` (`/dev/nvidia<minor>`).
    pub fn open(minor: u32) -> Result<Self, rm_nvidia::backend::OpenError> {
        Ok(Self {
            rm: Arc::new(Mutex::new(Rm::new(NvidiaBackend::open(minor)?))),
            started: Instant::now(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Rm<NvidiaBackend>> {
        self.rm.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl GpuHost for NvidiaHost {
    fn gpu_info(&self) -> GpuInfo {
        self.lock().gpu_info().clone()
    }

    fn attach(
        &self,
        profile: &Profile,
        gfid: Gfid,
        window_size: u64,
        pci_slot: u8,
    ) -> Result<VgpuDevice, AttachError> {
        let info = self.gpu_info();
        let service = RmService::attach(
            self.rm.clone(),
            gfid,
            profile.rm_config(&info, gfid, pci_slot),
        )?;
        VgpuDevice::new(VgpuConfig { gfid, window_size }, Box::new(service)).map_err(|e| {
            let _ = self.lock().destroy_vgpu(gfid);
            AttachError::Device(e)
        })
    }

    fn object_count(&self, gfid: Gfid) -> usize {
        self.lock().object_count(gfid)
    }

    fn gpu_time_ns(&self) -> u64 {
        self.started.elapsed().as_nanos() as u64
    }

    fn sim_gpu(&self) -> Option<Arc<Mutex<rm_sim::SimGpu>>> {
        None
    }
}
