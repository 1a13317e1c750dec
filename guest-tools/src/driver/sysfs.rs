//! Finding the vGPU in sysfs, mapping its BARs through `resourceN`, and (for interrupt
//! completion) binding it to `uio_pci_generic`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::device::{DriverError, Setup, VgpuDriver};
use super::interrupt::Completion;
use super::mmio::{MapError, MappedFile, MmioBar};
use super::protocol::{BAR0, BAR2, PCI_DEVICE_ID, PCI_VENDOR_ID};
use super::uio::{self, UioError, UioInterrupt};
use super::window::SharedWindow;
use crate::pci::{self, PciError};
use crate::report::PciFunction;

/// Errors opening the vGPU from sysfs.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// PCI functions could not be listed.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// No function with the vGPU's ids.
    #[error("no vGPU (PCI {PCI_VENDOR_ID:04x}:{PCI_DEVICE_ID:04x}) in {0}")]
    NotFound(String),
    /// The function lacks a BAR the driver needs.
    #[error("{bdf} has no BAR{bar}")]
    NoBar {
        /// The function.
        bdf: String,
        /// Which BAR.
        bar: u8,
    },
    /// Memory decoding could not be enabled.
    #[error("enabling {path}: {error}")]
    Enable {
        /// The `enable` file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// Another process drives the vGPU.
    #[error("the vGPU {0} is in use by another process")]
    Busy(String),
    /// A BAR could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The driver could not bring the device up.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The interrupt could not be set up.
    #[error(transparent)]
    Uio(#[from] UioError),
}

/// Finds the first vGPU function under `root` (normally `/sys/bus/pci/devices`).
pub fn find(root: &Path) -> Result<PciFunction, OpenError> {
    pci::enumerate(root)?
        .into_iter()
        .find(|f| f.vendor == PCI_VENDOR_ID && f.device == PCI_DEVICE_ID)
        .ok_or_else(|| OpenError::NotFound(root.display().to_string()))
}

/// A driver opened from sysfs, with the lock that keeps other processes of this guest off the
/// device while it lives.
#[derive(Debug)]
pub struct PciVgpu {
    /// The driver.
    pub driver: VgpuDriver,
    /// The function it drives.
    pub function: PciFunction,
    /// The lock on `resource0`; the device is this process's while it is held.
    pub lock: File,
    /// With interrupt completion: the uio device's sysfs `event` count file.
    pub uio_events: Option<PathBuf>,
}

/// Opens the vGPU under `root`: enables memory decoding, takes an exclusive lock on its
/// `resource0` (released by the kernel when this process dies, however it dies), maps BAR0 and
/// BAR2, and brings the driver up as `setup` says. With [`Completion::Irq`] the function is
/// bound to `uio_pci_generic` first (the module must be loaded) and requests complete by
/// waiting on its `/dev/uioN`.
pub fn open(root: &Path, setup: Setup, completion: Completion) -> Result<PciVgpu, OpenError> {
    let function = find(root)?;
    let irq = match completion {
        Completion::Poll => None,
        Completion::Irq => {
            uio::bind(root, &function.bdf)?;
            Some(UioInterrupt::open(root, &function.bdf, Path::new("/dev"))?)
        }
    };
    let dir = root.join(&function.bdf);
    let bar = |index: u8| {
        function
            .bars
            .iter()
            .find(|b| b.index == index)
            .ok_or_else(|| OpenError::NoBar {
                bdf: function.bdf.clone(),
                bar: index,
            })
    };
    let (bar0, bar2) = (bar(BAR0)?.size, bar(BAR2)?.size);
    let enable = dir.join("enable");
    if !std::fs::read_to_string(&enable).is_ok_and(|s| s.trim() != "0") {
        std::fs::write(&enable, "1").map_err(|error| OpenError::Enable {
            path: enable.clone(),
            error,
        })?;
    }
    let res0 = dir.join(format!("resource{BAR0}"));
    let lock = File::open(&res0).map_err(|error| MapError::Open {
        path: res0.display().to_string(),
        error,
    })?;
    // SAFETY: flock on an open descriptor; no pointers.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(OpenError::Busy(function.bdf.clone()));
    }
    let regs = MappedFile::map(&res0, bar0 as usize)?;
    let window = MappedFile::map(&dir.join(format!("resource{BAR2}")), bar2 as usize)?;
    let mut driver = VgpuDriver::new(
        Box::new(MmioBar::new(regs)),
        SharedWindow::from_mapping(window),
        setup,
    )?;
    let uio_events = irq.as_ref().map(UioInterrupt::event_path);
    if let Some(irq) = irq {
        driver.use_interrupts(Box::new(irq))?;
    }
    Ok(PciVgpu {
        driver,
        function,
        lock,
        uio_events,
    })
}
