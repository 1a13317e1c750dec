//! The vGPU reached without a VM: a host process attaches an instance through its vfio-user
//! socket, as a VMM would, and drives it with the same driver code a guest runs.
//!
//! * Config space (region 7) is read once to check the vGPU's PCI identity.
//! * BAR0 accesses are vfio-user `REGION_READ` / `REGION_WRITE` messages ([`SocketBar`]),
//!   where a guest's would trap to its VMM.
//! * BAR2, the window, is mapped from the memfd the server sends with the region, so this
//!   process shares the rings and buffers with the daemon exactly as a guest's RAM would.
//! * With [`Completion::Irq`] an eventfd of this process becomes the INTx trigger (vfio-user
//!   `SET_IRQS`); the server signals it on every change of its line ([`EventfdInterrupt`]).
//!
//! On a GPU machine whose `/dev/kvm` cannot boot Linux this exercises the whole daemon path.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
};
use vfio_user::Client;

use super::device::{DriverError, Setup, VgpuDriver};
use super::interrupt::{Completion, InterruptSource};
use super::mmio::{ByteBar, MapError, MappedFile};
use super::protocol::{BAR2, PCI_DEVICE_ID, PCI_VENDOR_ID};
use super::window::SharedWindow;

/// Errors attaching an instance through its socket.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The socket could not be connected or the vfio-user handshake failed.
    #[error("connecting to the vfio-user socket {path}: {error}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why (the `vfio_user` client's error).
        error: String,
    },
    /// A message on the socket failed.
    #[error("vfio-user {what}: {error}")]
    Message {
        /// Which message.
        what: &'static str,
        /// Why.
        error: String,
    },
    /// The function behind the socket is not a vGPU.
    #[error("the device behind the socket is {vendor:04x}:{device:04x}, not the vGPU ({PCI_VENDOR_ID:04x}:{PCI_DEVICE_ID:04x})")]
    NotVgpu {
        /// PCI vendor id read.
        vendor: u16,
        /// PCI device id read.
        device: u16,
    },
    /// The server does not offer the window as one mmap-able area.
    #[error("the server offers no mmap-able BAR{BAR2} (the window)")]
    NoWindow,
    /// The window could not be mapped.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The interrupt eventfd could not be created.
    #[error("creating the interrupt eventfd: {0}")]
    Eventfd(#[source] std::io::Error),
    /// The driver could not bring the device up.
    #[error(transparent)]
    Driver(#[from] DriverError),
}

/// A vGPU instance attached through its socket: the driver over it.
#[derive(Debug)]
pub struct SocketVgpu {
    /// The driver.
    pub driver: VgpuDriver,
    /// The socket, as `vfio-user:PATH` (where a guest names its PCI address).
    pub name: String,
}

/// Attaches the instance at `socket`: checks its identity, maps its window, and brings the
/// driver up as `setup` says; with [`Completion::Irq`] requests complete by INTx over an
/// eventfd. The server serves one client at a time, so the instance is this process's until
/// it exits (however it exits: the daemon sees the socket close).
pub fn attach(
    socket: &Path,
    setup: Setup,
    completion: Completion,
) -> Result<SocketVgpu, AttachError> {
    let mut client = Client::new(socket).map_err(|e| {
        let refused = matches!(&e, vfio_user::Error::Connect(io)
            if io.kind() == std::io::ErrorKind::ConnectionRefused);
        let hint = if refused {
            " (an instance serves one client at a time: is a VMM or another process attached?)"
        } else {
            ""
        };
        AttachError::Connect {
            path: socket.to_path_buf(),
            error: format!("{}{hint}", describe(&e)),
        }
    })?;
    let message = |what| {
        move |e: vfio_user::Error| AttachError::Message {
            what,
            error: describe(&e),
        }
    };
    let mut id = [0u8; 4];
    client
        .region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut id)
        .map_err(message("config read"))?;
    let vendor = u16::from_le_bytes([id[0], id[1]]);
    let device = u16::from_le_bytes([id[2], id[3]]);
    if (vendor, device) != (PCI_VENDOR_ID, PCI_DEVICE_ID) {
        return Err(AttachError::NotVgpu { vendor, device });
    }
    let window = {
        let region = client
            .region(u32::from(BAR2))
            .ok_or(AttachError::NoWindow)?;
        let fo = region.file_offset.as_ref().ok_or(AttachError::NoWindow)?;
        let area = region
            .sparse_areas
            .iter()
            .find(|a| a.offset == 0 && a.size == region.size && a.size > 0)
            .ok_or(AttachError::NoWindow)?;
        let len = usize::try_from(area.size).map_err(|_| AttachError::NoWindow)?;
        MappedFile::map_fd(fo.file(), fo.start(), len, "the window (BAR2)")?
    };
    let irq = match completion {
        Completion::Poll => None,
        Completion::Irq => {
            let irq = EventfdInterrupt::new().map_err(AttachError::Eventfd)?;
            client
                .set_irqs(
                    VFIO_PCI_INTX_IRQ_INDEX,
                    VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                    0,
                    1,
                    &[irq.fd.as_raw_fd()],
                )
                .map_err(message("SET_IRQS"))?;
            Some(irq)
        }
    };
    let bar = SocketBar {
        client: Mutex::new(client),
        failed: AtomicBool::new(false),
    };
    let mut driver = VgpuDriver::new(Box::new(bar), SharedWindow::from_mapping(window), setup)?;
    if let Some(irq) = irq {
        driver.use_interrupts(Box::new(irq))?;
    }
    Ok(SocketVgpu {
        driver,
        name: format!("vfio-user:{}", socket.display()),
    })
}

/// An error with its causes, `outer: inner: ...` (the client's errors keep the OS error as
/// their source).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// BAR0 as socket messages. A failed message reads as all ones and drops the write (what a
/// surprise-removed PCI function does), so the driver sees a dead device, not a panic; the
/// first failure is reported on stderr.
struct SocketBar {
    client: Mutex<Client>,
    failed: AtomicBool,
}

impl SocketBar {
    fn report(&self, what: &str, off: u32, e: &vfio_user::Error) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            let e = describe(e);
            eprintln!("vgpu: BAR0 {what} at {off:#x} over the socket failed: {e} (is vgpud gone?)");
        }
    }
}

impl ByteBar for SocketBar {
    fn read_bytes(&self, off: u32, data: &mut [u8]) {
        let r = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .region_read(VFIO_PCI_BAR0_REGION_INDEX, u64::from(off), data);
        if let Err(e) = r {
            data.fill(0xff);
            self.report("read", off, &e);
        }
    }

    fn write_bytes(&self, off: u32, data: &[u8]) {
        let r = self
            .client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .region_write(VFIO_PCI_BAR0_REGION_INDEX, u64::from(off), data);
        if let Err(e) = r {
            self.report("write", off, &e);
        }
    }
}

/// The INTx trigger eventfd. The server signals each change of its line, so a wake-up is a
/// hint to look at the used ring; there is no mask to lift (the driver acknowledges the cause
/// at the device, `INTR_STATUS`, as it does in a guest).
struct EventfdInterrupt {
    fd: OwnedFd,
}

impl EventfdInterrupt {
    fn new() -> std::io::Result<Self> {
        // SAFETY: creates a new descriptor; no pointers.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor this struct now owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

impl InterruptSource for EventfdInterrupt {
    fn unmask(&mut self) -> std::io::Result<()> {
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(false);
        }
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into `count`; the fd is non-blocking.
        unsafe { libc::read(pfd.fd, (&mut count as *mut u64).cast(), 8) };
        Ok(true)
    }
}
