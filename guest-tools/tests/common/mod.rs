//! The guest driver over an in-process device model: BAR0 accesses call `VgpuDevice` directly
//! and the window is the device's own host memory, so the whole guest stack runs on the host.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use guest_tools::driver::{ByteBar, Setup, SharedWindow, VgpuDriver};
use mdev::rm_service::RmService;
use rm_core::Rm;
use rm_sim::{SimBackend, SimConfig};
use vgpu::{VgpuConfig, VgpuDevice};

/// The shared RM core over the sim backend.
pub type SimRm = Arc<Mutex<Rm<SimBackend>>>;

/// A device shared between the "VMM" (the test) and the driver's BAR0.
pub type SharedDevice = Arc<Mutex<VgpuDevice>>;

/// Window size of test devices.
pub const WINDOW: u64 = 4 << 20;

/// BAR0 as trapped accesses into the device model.
pub struct DeviceBar(pub SharedDevice);

impl ByteBar for DeviceBar {
    fn read_bytes(&self, off: u32, buf: &mut [u8]) {
        self.0.lock().unwrap().bar_read(0, u64::from(off), buf);
    }

    fn write_bytes(&self, off: u32, data: &[u8]) {
        self.0.lock().unwrap().bar_write(0, u64::from(off), data);
    }
}

/// A new RM core over a sim GPU.
pub fn sim_rm() -> SimRm {
    Arc::new(Mutex::new(Rm::new(SimBackend::new(SimConfig::default()))))
}

/// A vGPU `gfid` on `rm` with a [`WINDOW`]-byte window.
pub fn sim_device(rm: &SimRm, gfid: u32) -> SharedDevice {
    let svc =
        RmService::attach(rm.clone(), gfid, rm_core::VgpuConfig::with_quota(1 << 30)).unwrap();
    Arc::new(Mutex::new(
        VgpuDevice::new(
            VgpuConfig {
                gfid,
                window_size: WINDOW,
            },
            Box::new(svc),
        )
        .unwrap(),
    ))
}

/// The guest driver over `dev`. The test keeps `dev` alive longer than the driver.
pub fn driver(dev: &SharedDevice, setup: Setup) -> VgpuDriver {
    try_driver(dev, setup).unwrap()
}

/// Like [`driver`], with the error.
pub fn try_driver(
    dev: &SharedDevice,
    setup: Setup,
) -> Result<VgpuDriver, guest_tools::driver::DriverError> {
    let (base, size) = {
        let d = dev.lock().unwrap();
        (d.window().host_ptr(), d.window().size())
    };
    // SAFETY: the device (and so its window) lives in `dev`, which the driver's BAR keeps alive
    // (the Arc in `DeviceBar`) and the test keeps too.
    let window = unsafe { SharedWindow::from_raw(base, size) };
    VgpuDriver::new(Box::new(DeviceBar(dev.clone())), window, setup)
}
