//! A started vGPU instance as a vfio-user server: one socket, one VMM at a time.
//!
//! Regions follow vfio-pci's numbering: BAR0 (region 0) is trapped, every access a socket
//! message to [`VgpuDevice::bar_read`] / [`VgpuDevice::bar_write`]; BAR2 (region 2) is the
//! window, mmap-able from the window's memfd (sent with the region's sparse-mmap capability), so
//! the VMM maps it into the guest and guest and daemon share those pages with no copies; the
//! configuration space (region 7) is the vGPU's [`PciConfig`]. INTx (irq index 0) is an eventfd
//! the VMM hands over with `SET_IRQS`; the daemon writes it on every change of the device's
//! interrupt line and shows the line in Status.Interrupt, where the VMM reads the level. DMA maps of guest RAM are accepted and dropped unmapped: the device touches
//! only its window.
//!
//! One VMM at a time: once the first client's first device access arrives, the listening
//! socket is shut down, so a second client's `connect` is refused (`ECONNREFUSED`), and one that
//! connected in between is disconnected unserved. When the VMM goes (it closed the socket or was
//! killed), the device is reset, which closes the guest's files and frees every RM object they
//! held, and the socket is bound again for the next VMM.
//!
//! The `vfio_user` crate's client blocks forever on an error reply to a region access, so the
//! backend never returns one: bad accesses read as all-ones and writes are dropped, as on a PCI
//! bus.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use pci::PciConfig;
use vfio_bindings::bindings::vfio::{
    vfio_region_info, vfio_region_sparse_mmap_area, VFIO_IRQ_INFO_EVENTFD,
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_BAR0_REGION_INDEX, VFIO_PCI_BAR2_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_MMAP,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{
    DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion, SparseArea,
};
use vgpu::protocol::{reg, virtio, BAR0, BAR0_SIZE, BAR2};
use vgpu::{InterruptLine, VgpuDevice};

use crate::poller::Poller;

/// Size of the configuration space region.
const CONFIG_SIZE: u64 = 256;

/// Largest trapped access served (a PCI access is at most 8 bytes; a client reading the window
/// through the socket instead of its mapping gets up to a page at a time).
const MAX_ACCESS: usize = 4096;

/// Locks the device; a panic elsewhere while it was held does not stop the instance.
pub fn lock(device: &Mutex<VgpuDevice>) -> MutexGuard<'_, VgpuDevice> {
    device.lock().unwrap_or_else(|p| p.into_inner())
}

/// The INTx eventfd the VMM gave, shared by the backend (which sets it) and the device's
/// interrupt line (which writes it), and the line's level.
#[derive(Debug, Default)]
struct Intx {
    fd: Mutex<Option<File>>,
    level: AtomicBool,
}

/// The device's interrupt line: every change writes the INTx eventfd; the VMM reads the level
/// from Status.Interrupt (level-triggered INTx, which an edge alone cannot carry).
#[derive(Debug)]
struct EventfdLine(Arc<Intx>);

impl InterruptLine for EventfdLine {
    fn set_level(&self, asserted: bool) {
        self.0.level.store(asserted, Ordering::SeqCst);
        let fd = self.0.fd.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut f) = fd.as_ref() {
            let _ = f.write_all(&1u64.to_ne_bytes());
        }
    }
}

/// Status bit 3 (Interrupt) of the config space: byte 6, bit 3.
const STATUS_INTERRUPT_BYTE: u64 = 6;

/// What an instance's server shares with the daemon.
#[derive(Debug, Default)]
pub struct ServerState {
    attached: AtomicBool,
    stop: AtomicBool,
    listener: Mutex<Option<OwnedFd>>,
    /// VMM sessions served so far.
    pub sessions: AtomicU64,
}

impl ServerState {
    /// Whether a VMM is attached now.
    pub fn attached(&self) -> bool {
        self.attached.load(Ordering::SeqCst)
    }

    /// Stops listening (pending and later connections are refused).
    fn close_listener(&self) {
        if let Some(fd) = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            // SAFETY: `fd` is an open socket owned here; shutdown does not touch memory.
            unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
        }
    }
}

/// The crate's [`ServerBackend`] over one vGPU device.
struct Backend {
    device: Arc<Mutex<VgpuDevice>>,
    config: PciConfig,
    intx: Arc<Intx>,
    state: Arc<ServerState>,
    poller: Poller,
}

impl Backend {
    /// The first device access of a session: from now on the socket refuses other VMMs.
    fn note_access(&self) {
        if !self.state.attached.swap(true, Ordering::SeqCst) {
            self.state.close_listener();
        }
    }
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        self.note_access();
        if data.len() > MAX_ACCESS {
            data.fill(0xff);
            return Ok(());
        }
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                self.config.read_bytes(offset, data);
                let at = STATUS_INTERRUPT_BYTE.wrapping_sub(offset);
                if at < data.len() as u64 && self.intx.level.load(Ordering::SeqCst) {
                    data[at as usize] |= 0x08;
                }
            }
            r if r == u32::from(BAR0) && inside(offset, data.len(), BAR0_SIZE) => {
                lock(&self.device).bar_read(BAR0, offset, data)
            }
            r if r == u32::from(BAR2) => lock(&self.device).bar_read(BAR2, offset, data),
            _ => data.fill(0xff),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.note_access();
        if data.len() > MAX_ACCESS {
            return Ok(());
        }
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => self.config.write_bytes(offset, data),
            r if r == u32::from(BAR0) && inside(offset, data.len(), BAR0_SIZE) => {
                lock(&self.device).bar_write(BAR0, offset, data);
                if offset == u64::from(virtio::NOTIFY) || offset == u64::from(reg::DOORBELL) {
                    // The driver notified or rang: it is active, so poll it again (and let it
                    // post its doorbells in the mailbox).
                    self.poller.kick();
                }
            }
            r if r == u32::from(BAR2) => lock(&self.device).bar_write(BAR2, offset, data),
            _ => {}
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        _offset: u64,
        _address: u64,
        _size: u64,
        _fd: Option<File>,
    ) -> std::io::Result<()> {
        // Guest RAM is never mapped into the daemon: the device reaches only its window. The fd
        // closes when it drops here.
        Ok(())
    }

    fn dma_unmap(
        &mut self,
        _flags: DmaUnmapFlags,
        _address: u64,
        _size: u64,
    ) -> std::io::Result<()> {
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        self.note_access();
        lock(&self.device).reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        self.note_access();
        let refuse = || std::io::Error::from_raw_os_error(libc::EINVAL);
        if index != VFIO_PCI_INTX_IRQ_INDEX || start != 0 || count > 1 {
            return Err(refuse());
        }
        let mut slot = self.intx.fd.lock().unwrap_or_else(|p| p.into_inner());
        if flags & VFIO_IRQ_SET_ACTION_TRIGGER == 0 {
            // Mask/unmask: the line is edge-signalled through the eventfd; nothing to do.
            return Ok(());
        }
        if flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 && count == 1 && fds.len() == 1 {
            *slot = fds.into_iter().next();
        } else if flags & VFIO_IRQ_SET_DATA_NONE != 0 && count == 0 {
            *slot = None;
        } else {
            return Err(refuse());
        }
        Ok(())
    }
}

/// Whether `offset..offset + len` lies inside `0..size`.
fn inside(offset: u64, len: usize, size: u64) -> bool {
    offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= size)
}

fn region(index: u32, size: u64, flags: u32) -> ServerRegion {
    ServerRegion {
        region_info: vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            flags,
            index,
            cap_offset: 0,
            size,
            offset: 0,
        },
        sparse_areas: Vec::new(),
        mmap_fd: None,
    }
}

/// The nine vfio-pci regions of a vGPU whose window is `window` (`window_fd` backs it).
fn regions(window_size: u64, window_fd: i32) -> Vec<ServerRegion> {
    let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    (0..VFIO_PCI_NUM_REGIONS)
        .map(|i| match i {
            VFIO_PCI_BAR0_REGION_INDEX => region(i, BAR0_SIZE, rw),
            VFIO_PCI_BAR2_REGION_INDEX => ServerRegion {
                sparse_areas: vec![SparseArea {
                    area: vfio_region_sparse_mmap_area {
                        offset: 0,
                        size: window_size,
                    },
                }],
                mmap_fd: Some(window_fd),
                ..region(i, window_size, rw | VFIO_REGION_INFO_FLAG_MMAP)
            },
            VFIO_PCI_CONFIG_REGION_INDEX => region(i, CONFIG_SIZE, rw),
            _ => region(i, 0, 0),
        })
        .collect()
}

fn irqs() -> Vec<IrqInfo> {
    (0..VFIO_PCI_NUM_IRQS)
        .map(|index| IrqInfo {
            index,
            flags: if index == VFIO_PCI_INTX_IRQ_INDEX {
                VFIO_IRQ_INFO_EVENTFD
            } else {
                0
            },
            count: u32::from(index == VFIO_PCI_INTX_IRQ_INDEX),
        })
        .collect()
}

/// A running instance server: the thread that serves VMMs on `path` one after another.
#[derive(Debug)]
pub struct InstanceServer {
    path: PathBuf,
    state: Arc<ServerState>,
    thread: Option<JoinHandle<()>>,
}

/// Why a server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the socket failed.
    #[error("binding {path}: {source}")]
    Bind {
        /// The socket path.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The configuration space could not be built.
    #[error("building the configuration space: {0}")]
    Config(#[from] pci::PciError),
    /// The server thread could not start.
    #[error("starting the server thread: {0}")]
    Thread(std::io::Error),
}

fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let _ = std::fs::remove_file(path);
    let err = |source| ServerError::Bind {
        path: path.display().to_string(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(err)?;
    // Only the daemon's user (the one that runs the VMMs) may attach.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

impl InstanceServer {
    /// Serves `device` on a socket at `path` until [`InstanceServer::stop`]. The socket exists
    /// when this returns.
    pub fn start(
        name: &str,
        path: &Path,
        device: Arc<Mutex<VgpuDevice>>,
        poller: Poller,
    ) -> Result<Self, ServerError> {
        let window_size = lock(&device).window().size();
        let config = vgpu::pci::config_space(window_size, true)?;
        let intx = Arc::new(Intx::default());
        lock(&device).set_interrupt_line(Box::new(EventfdLine(intx.clone())));
        let state = Arc::new(ServerState::default());
        let first = bind(path)?;
        let mut backend = Backend {
            device,
            config,
            intx,
            state: state.clone(),
            poller,
        };
        let thread_path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name(format!("vfio-user {name}"))
            .spawn(move || serve(&thread_path, first, &mut backend))
            .map_err(ServerError::Thread)?;
        Ok(Self {
            path: path.to_path_buf(),
            state,
            thread: Some(thread),
        })
    }

    /// The socket.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the server shares (attached, sessions).
    pub fn state(&self) -> &ServerState {
        &self.state
    }

    /// Stops serving; refused (false) while a VMM is attached, since the VMM owns the session.
    pub fn stop(&mut self) -> bool {
        if self.state.attached() {
            return false;
        }
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.close_listener();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
        true
    }
}

/// The server thread: one VMM session after another, each on a fresh listening socket.
fn serve(path: &Path, first: UnixListener, backend: &mut Backend) {
    let mut listener = Some(first);
    while !backend.state.stop.load(Ordering::SeqCst) {
        let Some(l) = listener.take() else {
            return;
        };
        let window_fd = lock(&backend.device).window().fd().as_raw_fd();
        let window_size = lock(&backend.device).window().size();
        match l.try_clone() {
            Ok(dup) => {
                *backend
                    .state
                    .listener
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(dup.into())
            }
            Err(e) => {
                tracing::error!("duplicating the listening socket: {e}");
                return;
            }
        }
        if backend.state.stop.load(Ordering::SeqCst) {
            break;
        }
        let server = Server::from_owned_fd(l.into(), true, irqs(), regions(window_size, window_fd));
        // The `vfio_user` crate (0.1.7) panics on some malformed messages (a VERSION shorter
        // than its fixed part, a capability string without its NUL; tests/fuzz found them):
        // such a panic ends this VMM's session like a closed socket, and the instance resets
        // and serves the next VMM. The panic is the crate's, in its message parsing, so none of
        // our locks is held across it.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| server.run(backend)))
            .unwrap_or_else(|_| {
                tracing::warn!(path = %path.display(), "a VMM's message made the vfio-user parser panic; session ended");
                Err(vfio_user::Error::InvalidInput)
            });
        drop(server);
        backend.state.close_listener();
        if backend.state.attached() {
            backend.state.sessions.fetch_add(1, Ordering::Relaxed);
            // The VMM is gone: its guest's files close and their RM objects are freed.
            lock(&backend.device).reset();
            *backend.intx.fd.lock().unwrap_or_else(|p| p.into_inner()) = None;
            backend.config = vgpu::pci::config_space(window_size, true)
                .expect("the configuration space was built before");
            tracing::info!(path = %path.display(), "VMM detached; device reset");
        }
        // Listening again before the instance shows as detached, so a VMM that waits for that
        // finds the socket ready.
        if !backend.state.stop.load(Ordering::SeqCst) {
            match bind(path) {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::error!("{e}; the instance no longer accepts VMMs");
                    backend.state.attached.store(false, Ordering::SeqCst);
                    return;
                }
            }
        }
        backend.state.attached.store(false, Ordering::SeqCst);
        match result {
            Ok(()) => {}
            Err(e) if backend.state.stop.load(Ordering::SeqCst) => {
                tracing::debug!("server stopped: {e}")
            }
            Err(e) => tracing::info!(path = %path.display(), "session ended: {e}"),
        }
    }
}
