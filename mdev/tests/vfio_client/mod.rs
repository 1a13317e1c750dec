//! A VMM's side of an instance for host-side tests: the `vfio_user` crate's own client (a
//! peer we did not write) for config space and BAR0, the window mapped from the fd the server
//! passes, and the guest-tools driver over both.

#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::sync::Mutex;

use guest_tools::driver::{ByteBar, Setup, SharedWindow, VgpuDriver};
use vfio_bindings::bindings::vfio::{VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX};
use vfio_user::Client;

/// BAR0 as socket messages through the crate's client.
struct ClientBar(Mutex<Client>);

impl ByteBar for ClientBar {
    fn read_bytes(&self, off: u32, buf: &mut [u8]) {
        self.0
            .lock()
            .unwrap()
            .region_read(VFIO_PCI_BAR0_REGION_INDEX, u64::from(off), buf)
            .unwrap();
    }
    fn write_bytes(&self, off: u32, data: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .region_write(VFIO_PCI_BAR0_REGION_INDEX, u64::from(off), data)
            .unwrap();
    }
}

/// The window mapped from the fd the server sent with region 2.
pub struct Window {
    base: *mut u8,
    size: usize,
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: `base..base + size` is the mapping made in `attach`.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

/// A VMM's view of an instance: the client, its config space and the mapped window.
pub fn attach(path: &str) -> (VgpuDriver, Window) {
    let mut client = Client::new(std::path::Path::new(path)).unwrap();
    let mut cfg = [0u8; 64];
    client
        .region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut cfg)
        .unwrap();
    let id = pci::PciHeader::from_config_bytes(&cfg);
    assert_eq!(id, vgpu::pci::IDENTITY);
    let region = client.region(2).expect("BAR2 region");
    let fo = region.file_offset.as_ref().expect("BAR2 comes with its fd");
    let area = region.sparse_areas[0];
    assert_eq!(area.size, region.size);
    // SAFETY: a fresh shared mapping of the fd the server sent; unmapped by `Window`.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            area.size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fo.file().as_raw_fd(),
            (fo.start() + area.offset) as libc::off_t,
        )
    };
    assert_ne!(base, libc::MAP_FAILED);
    let window = Window {
        base: base.cast(),
        size: area.size as usize,
    };
    // SAFETY: the mapping lives in `window`, which the caller keeps longer than the driver.
    let shared = unsafe { SharedWindow::from_raw(window.base, area.size) };
    let driver = VgpuDriver::new(
        Box::new(ClientBar(Mutex::new(client))),
        shared,
        Setup::Reset,
    )
    .unwrap();
    (driver, window)
}
