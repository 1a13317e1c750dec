//! The vGPU's interrupt in userspace through `uio_pci_generic`: binding the function to it, and
//! waiting on `/dev/uioN` ([`UioInterrupt`]).
//!
//! `uio_pci_generic` owns the INTx line: its handler masks it (Command.INTx_Disable) and counts
//! the event; `read(2)` of `/dev/uioN` sleeps until the count moves. The driver has no
//! `irqcontrol` (writing to `/dev/uioN` is `ENOSYS`), so userspace unmasks as the kernel's UIO
//! howto shows: clear INTx_Disable (bit 2 of config byte 5) through the function's sysfs
//! `config` file. The driver acknowledges the cause at the device (`INTR_STATUS`, W1C) before it
//! unmasks, so a level that is still high means a new cause. `resourceN` mmaps keep working
//! while the function is bound, so the rest of the driver does not change.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::interrupt::InterruptSource;
use super::protocol::{PCI_DEVICE_ID, PCI_VENDOR_ID};

/// The kernel driver that exposes a PCI function's INTx to userspace.
pub const UIO_DRIVER: &str = "uio_pci_generic";
/// Config-space byte holding Command bits 8..15.
const COMMAND_HIGH: u64 = 5;
/// Command.INTx_Disable (bit 10) within [`COMMAND_HIGH`].
const INTX_DISABLE: u8 = 1 << 2;

/// Errors binding or opening the uio device.
#[derive(Debug, thiserror::Error)]
pub enum UioError {
    /// A sysfs or device file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// `uio_pci_generic` is not registered (module not loaded).
    #[error("{UIO_DRIVER} is not loaded ({0} missing)")]
    NoDriver(PathBuf),
    /// Another kernel driver owns the function.
    #[error("{bdf} is bound to {driver}, not {UIO_DRIVER}")]
    OtherDriver {
        /// The function.
        bdf: String,
        /// Its driver.
        driver: String,
    },
    /// Binding did not take.
    #[error("{0} is still not bound to {UIO_DRIVER} after binding it")]
    NotBound(String),
    /// The function has no interrupt line.
    #[error("{0} has no interrupt line (start the VMM with --vgpu ...,intr=intx)")]
    NoIrq(String),
    /// No uio device under the function.
    #[error("no uio device under {0}")]
    NoUioDevice(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UioError + '_ {
    move |error| UioError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// The driver bound to `bdf` under `pci_root` (`/sys/bus/pci/devices`), if any.
fn bound_driver(pci_root: &Path, bdf: &str) -> Option<String> {
    let link = std::fs::read_link(pci_root.join(bdf).join("driver")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// Binds `bdf` to `uio_pci_generic`: adds the vGPU's ids to the driver (which probes every
/// unbound function with them), or, when the ids are already there, binds the function by
/// address. Nothing to do when it is bound already.
pub fn bind(pci_root: &Path, bdf: &str) -> Result<(), UioError> {
    match bound_driver(pci_root, bdf) {
        Some(d) if d == UIO_DRIVER => return Ok(()),
        Some(driver) => {
            return Err(UioError::OtherDriver {
                bdf: bdf.to_string(),
                driver,
            })
        }
        None => {}
    }
    let drivers = pci_root
        .parent()
        .unwrap_or(pci_root)
        .join("drivers")
        .join(UIO_DRIVER);
    if !drivers.is_dir() {
        return Err(UioError::NoDriver(drivers));
    }
    let new_id = drivers.join("new_id");
    let ids = format!("{PCI_VENDOR_ID:04x} {PCI_DEVICE_ID:04x}");
    match std::fs::write(&new_id, &ids) {
        Ok(()) => {}
        // The ids are known already (an earlier process added them): bind by address.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
            let bind = drivers.join("bind");
            std::fs::write(&bind, bdf).map_err(io(&bind))?;
        }
        Err(e) => return Err(io(&new_id)(e)),
    }
    match bound_driver(pci_root, bdf) {
        Some(d) if d == UIO_DRIVER => Ok(()),
        _ => Err(UioError::NotBound(bdf.to_string())),
    }
}

/// `/dev/uioN` of a function bound to `uio_pci_generic`.
#[derive(Debug)]
pub struct UioInterrupt {
    file: File,
    config: File,
    name: String,
    event: PathBuf,
}

impl UioInterrupt {
    /// Opens the uio device of `bdf` under `pci_root`; `dev` is where its node is (`/dev`).
    pub fn open(pci_root: &Path, bdf: &str, dev: &Path) -> Result<Self, UioError> {
        let function = pci_root.join(bdf);
        let irq_path = function.join("irq");
        let irq = std::fs::read_to_string(&irq_path).map_err(io(&irq_path))?;
        if irq.trim().parse::<u32>().unwrap_or(0) == 0 {
            return Err(UioError::NoIrq(bdf.to_string()));
        }
        let dir = function.join("uio");
        let name = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|n| n.starts_with("uio"))
            .ok_or_else(|| UioError::NoUioDevice(dir.clone()))?;
        let config_path = function.join("config");
        let config = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&config_path)
            .map_err(io(&config_path))?;
        let node = dev.join(&name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node)
            .map_err(io(&node))?;
        Ok(Self {
            file,
            config,
            event: dir.join(&name).join("event"),
            name,
        })
    }

    /// The uio device's name (`uio0`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sysfs file with the interrupts the kernel counted for this device ([`event_count`]).
    pub fn event_path(&self) -> PathBuf {
        self.event.clone()
    }
}

/// Interrupts the kernel counted for a uio device since it was bound, from its sysfs `event`
/// file ([`UioInterrupt::event_path`]).
pub fn event_count(path: &Path) -> Result<u64, UioError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.trim()
        .parse()
        .map_err(|e| io(path)(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

impl InterruptSource for UioInterrupt {
    fn unmask(&mut self) -> std::io::Result<()> {
        let mut b = [0u8; 1];
        self.config.read_exact_at(&mut b, COMMAND_HIGH)?;
        if b[0] & INTX_DISABLE != 0 {
            self.config
                .write_all_at(&[b[0] & !INTX_DISABLE], COMMAND_HIGH)?;
        }
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        loop {
            // SAFETY: one valid pollfd for the duration of the call.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Ok(false);
            }
            break;
        }
        // The event count; reading it makes this file's count current.
        let mut count = [0u8; 4];
        self.file.read_exact(&mut count)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake sysfs: `devices/BDF` with an `irq` file and `drivers/uio_pci_generic/`.
    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("devices/0000:00:01.0");
        std::fs::create_dir_all(f.join("uio/uio3")).unwrap();
        std::fs::write(f.join("irq"), "11\n").unwrap();
        std::fs::write(f.join("config"), [0x06, 0, 0, 0, 0x06, 0x04, 0x10, 0]).unwrap();
        std::fs::write(f.join("uio/uio3/event"), "42\n").unwrap();
        std::fs::create_dir_all(t.path().join("drivers").join(UIO_DRIVER)).unwrap();
        t
    }

    #[test]
    fn bind_refuses_another_driver_and_accepts_uio() {
        let t = fake_sysfs();
        let root = t.path().join("devices");
        let f = root.join("0000:00:01.0");
        std::os::unix::fs::symlink("../../drivers/nouveau", f.join("driver")).unwrap();
        assert!(matches!(
            bind(&root, "0000:00:01.0"),
            Err(UioError::OtherDriver { driver, .. }) if driver == "nouveau"
        ));
        std::fs::remove_file(f.join("driver")).unwrap();
        std::os::unix::fs::symlink(format!("../../drivers/{UIO_DRIVER}"), f.join("driver"))
            .unwrap();
        bind(&root, "0000:00:01.0").unwrap();
    }

    #[test]
    fn bind_writes_the_ids_and_checks_the_result() {
        let t = fake_sysfs();
        let root = t.path().join("devices");
        // A plain directory does not bind anything: the write lands, the check fails.
        assert!(matches!(
            bind(&root, "0000:00:01.0"),
            Err(UioError::NotBound(_))
        ));
        let ids = std::fs::read_to_string(t.path().join("drivers").join(UIO_DRIVER).join("new_id"));
        assert_eq!(ids.unwrap(), "10de 7f61");
        std::fs::remove_dir_all(t.path().join("drivers")).unwrap();
        assert!(matches!(
            bind(&root, "0000:00:01.0"),
            Err(UioError::NoDriver(_))
        ));
    }

    #[test]
    fn open_finds_the_node_and_reads_the_event_count() {
        let t = fake_sysfs();
        let root = t.path().join("devices");
        let dev = t.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("uio3"), b"").unwrap();
        let u = UioInterrupt::open(&root, "0000:00:01.0", &dev).unwrap();
        assert_eq!(u.name(), "uio3");
        assert_eq!(event_count(&u.event_path()).unwrap(), 42);
        let mut u = u;
        u.unmask().unwrap();
        let config = std::fs::read(root.join("0000:00:01.0/config")).unwrap();
        assert_eq!(
            config,
            [0x06, 0, 0, 0, 0x06, 0x00, 0x10, 0],
            "only INTx_Disable cleared"
        );
        std::fs::write(root.join("0000:00:01.0/irq"), "0\n").unwrap();
        assert!(matches!(
            UioInterrupt::open(&root, "0000:00:01.0", &dev),
            Err(UioError::NoIrq(_))
        ));
    }
}
