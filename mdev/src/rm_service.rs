//! [`EscapeService`] over the in-process RM core (`rm_core::Rm`).
//!
//! Several vGPUs can share one core: each device holds an [`RmService`] over the same
//! `Arc<Mutex<Rm<B>>>` and names its own GFID. The window reaches the core's dispatcher as its
//! `GuestMemory`, so every pointer the dispatcher follows is a bounds-checked window offset.

use std::sync::{Arc, Mutex, MutexGuard};

use rm_abi::NvStatus;
use rm_core::backend::{Backend, ExternalPages};
use rm_core::{GuestMemory, GuestMemoryFault, Node, Rm, RmError};

use vgpu::window::HostWindow;
use vgpu::{DoorbellError, Errno, EscapeService, FdId, Gfid, IoctlOutcome};

/// The window as the RM dispatcher's guest memory.
struct WindowMemory<'a>(&'a HostWindow);

impl GuestMemory for WindowMemory<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        self.0.read(addr, buf).map_err(|f| GuestMemoryFault {
            addr: f.addr,
            len: f.len,
        })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        self.0.write(addr, data).map_err(|f| GuestMemoryFault {
            addr: f.addr,
            len: f.len,
        })
    }

    /// OS descriptors wrap window pages: the backend uses them in place (zero copy).
    fn external_pages(
        &self,
        addr: u64,
        len: u64,
    ) -> Option<Result<ExternalPages, GuestMemoryFault>> {
        Some(
            self.0
                .external_pages(addr, len)
                .map_err(|f| GuestMemoryFault {
                    addr: f.addr,
                    len: f.len,
                }),
        )
    }
}

/// One vGPU's handle on a shared in-process RM core.
pub struct RmService<B: Backend> {
    rm: Arc<Mutex<Rm<B>>>,
    after_doorbell: Option<Box<dyn Fn() + Send>>,
}

impl<B: Backend> std::fmt::Debug for RmService<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmService").finish_non_exhaustive()
    }
}

impl<B: Backend> RmService<B> {
    /// Creates vGPU `gfid` in the core with `config` and returns the service for its device.
    /// The vGPU is destroyed again when the device tears down.
    pub fn attach(
        rm: Arc<Mutex<Rm<B>>>,
        gfid: Gfid,
        config: rm_core::VgpuConfig,
    ) -> Result<Self, RmError> {
        lock(&rm).create_vgpu(gfid, config)?;
        Ok(Self {
            rm,
            after_doorbell: None,
        })
    }

    /// Runs `f` after every accepted doorbell, with the core unlocked (the sim host uses it to
    /// bring the GPU's clock up to host time at once, so the work just submitted starts
    /// without waiting for the driver thread's next tick).
    pub fn on_doorbell(mut self, f: impl Fn() + Send + 'static) -> Self {
        self.after_doorbell = Some(Box::new(f));
        self
    }

    fn rm(&self) -> MutexGuard<'_, Rm<B>> {
        lock(&self.rm)
    }
}

/// Locks the core; a panic elsewhere while it was held does not stop this vGPU.
fn lock<B: Backend>(rm: &Mutex<Rm<B>>) -> MutexGuard<'_, Rm<B>> {
    rm.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn file_error(e: RmError) -> Errno {
    match e {
        RmError::TooManyFds(_) => Errno::NoMem,
        RmError::NoSuchDevice(..) => Errno::NoDev,
        RmError::NoSuchFd(..)
        | RmError::BadGfid(_)
        | RmError::GfidInUse(_)
        | RmError::NoSuchVgpu(_) => Errno::BadFd,
    }
}

impl<B: Backend> RmService<B> {
    /// The object a file's mapping names, with the object offset of `offset`, after checking
    /// that `offset..offset + len` lies inside the mapping.
    fn mapping_target(
        &self,
        gfid: Gfid,
        file: FdId,
        offset: u64,
        len: usize,
    ) -> Result<(u32, u32, u64), Errno> {
        let ctx = self.rm().mmap_context(gfid, file).ok_or(Errno::Inval)?;
        let end = offset.checked_add(len as u64).ok_or(Errno::Fault)?;
        if end > ctx.length {
            return Err(Errno::Fault);
        }
        let at = ctx.offset.checked_add(offset).ok_or(Errno::Fault)?;
        Ok((ctx.client, ctx.memory, at))
    }
}

/// A mapping copy's errno: `ENOMEM` when the host memory for written pages is spent, else
/// `EFAULT` (what a fault on the mapping is).
fn mapping_ret(s: NvStatus) -> Result<(), Errno> {
    match s {
        NvStatus::OK => Ok(()),
        NvStatus::ERR_NO_MEMORY => Err(Errno::NoMem),
        _ => Err(Errno::Fault),
    }
}

impl<B: Backend + Send> EscapeService for RmService<B> {
    fn open(&mut self, gfid: Gfid, node: Node) -> Result<FdId, Errno> {
        self.rm().open(gfid, node).map_err(file_error)
    }

    fn close(&mut self, gfid: Gfid, file: FdId) -> Result<(), Errno> {
        self.rm().close(gfid, file).map_err(file_error)
    }

    fn ioctl(
        &mut self,
        gfid: Gfid,
        file: FdId,
        request: u32,
        arg: u64,
        window: &HostWindow,
    ) -> IoctlOutcome {
        let mut rm = self.rm();
        let ret = rm.ioctl(gfid, file, request, arg, &mut WindowMemory(window));
        if rm.take_retry() {
            IoctlOutcome::Again
        } else {
            IoctlOutcome::Done(ret)
        }
    }

    fn read_mapping(
        &mut self,
        gfid: Gfid,
        file: FdId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), Errno> {
        let (client, memory, at) = self.mapping_target(gfid, file, offset, buf.len())?;
        mapping_ret(self.rm().read_memory(gfid, client, memory, at, buf))
    }

    fn write_mapping(
        &mut self,
        gfid: Gfid,
        file: FdId,
        offset: u64,
        data: &[u8],
    ) -> Result<(), Errno> {
        let (client, memory, at) = self.mapping_target(gfid, file, offset, data.len())?;
        mapping_ret(self.rm().write_memory(gfid, client, memory, at, data))
    }

    fn doorbell(&mut self, gfid: Gfid, token: u32) -> Result<(), DoorbellError> {
        let status = self.rm().doorbell(gfid, token);
        match status {
            NvStatus::OK => {
                if let Some(f) = &self.after_doorbell {
                    f();
                }
                Ok(())
            }
            NvStatus::ERR_INVALID_CHANNEL => Err(DoorbellError::NotOwned(token)),
            s => Err(DoorbellError::Backend(s.0)),
        }
    }

    fn teardown(&mut self, gfid: Gfid) {
        if let Err(e) = self.rm().destroy_vgpu(gfid) {
            tracing::debug!(gfid, "teardown: {e}");
        }
    }
}
