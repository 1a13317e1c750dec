//! The guest driver over an in-process device model: BAR0 accesses call `VgpuDevice` directly
//! and the window is the device's own host memory, so the whole guest stack runs on the host.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use guest_tools::driver::{RegisterBar, Setup, SharedWindow, VgpuDriver};
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

impl DeviceBar {
    fn read(&self, off: u32, buf: &mut [u8]) {
        self.0.lock().unwrap().bar_read(0, u64::from(off), buf);
    }

    fn write(&self, off: u32, data: &[u8]) {
        self.0.lock().unwrap().bar_write(0, u64::from(off), data);
    }
}

impl RegisterBar for DeviceBar {
    fn read8(&self, off: u32) -> u8 {
        let mut b = [0u8; 1];
        self.read(off, &mut b);
        b[0]
    }
    fn read16(&self, off: u32) -> u16 {
        let mut b = [0u8; 2];
        self.read(off, &mut b);
        u16::from_le_bytes(b)
    }
    fn read32(&self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.read(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn write8(&self, off: u32, v: u8) {
        self.write(off, &[v]);
    }
    fn write16(&self, off: u32, v: u16) {
        self.write(off, &v.to_le_bytes());
    }
    fn write32(&self, off: u32, v: u32) {
        self.write(off, &v.to_le_bytes());
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
