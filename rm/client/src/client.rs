//! [`RmClient`]: the NVIDIA RM calls with their bare-metal shapes (escape structs from `rm-abi`,
//! request numbers `_IOWR('F', nr, size)`, embedded pointers to parameter buffers), over any
//! [`Transport`].

use rm_abi::escape::Escape;
use rm_abi::frontend::{
    NvIoctlRegisterFd, NvIoctlRmApiVersion, NvIoctlXfer, NV_RM_API_VERSION_CMD_STRICT,
};
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::*;
use rm_abi::{class, Handle, NvStatus, NV_VERSION_STRING};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::transport::{Buffer, Fd, Mapping, Node, Transport, TransportError};

/// First handle this library picks for objects (RM lets clients choose their handles).
pub const FIRST_HANDLE: Handle = 0x5c00_0001;

/// Size of the scratch buffers for arguments and parameters.
const SCRATCH: usize = 16 << 10;

/// Errors of RM calls.
#[derive(Debug, thiserror::Error)]
pub enum RmApiError {
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The ioctl failed (the driver refused the call itself).
    #[error("{call}: ioctl failed with errno {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Errno {
        /// `NV_ESC_*` name.
        call: &'static str,
        /// The errno.
        errno: i32,
    },
    /// RM ran the call and failed it.
    #[error("{call}: {status}")]
    Status {
        /// What was called.
        call: String,
        /// RM's status.
        status: NvStatus,
    },
    /// The argument does not fit an ioctl request.
    #[error("{0}: argument too large for an ioctl request")]
    TooLarge(&'static str),
    /// The driver's version is not the one this library was built for.
    #[error("driver version check failed: the driver does not accept {NV_VERSION_STRING}")]
    VersionMismatch,
}

impl RmApiError {
    /// RM's status, when RM failed the call.
    pub fn status(&self) -> Option<NvStatus> {
        match self {
            RmApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The errno, when the ioctl failed.
    pub fn errno(&self) -> Option<i32> {
        match self {
            RmApiError::Errno { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

fn check(call: impl FnOnce() -> String, status: u32) -> Result<(), RmApiError> {
    match NvStatus(status) {
        NvStatus::OK => Ok(()),
        status => Err(RmApiError::Status {
            call: call(),
            status,
        }),
    }
}

/// A CPU mapping of a memory object, with what is needed to unmap it.
pub struct MappedMemory<'t> {
    /// The mapping.
    pub mapping: Box<dyn Mapping + 't>,
    /// The device-node file the mapping is attached to.
    pub fd: Fd,
    /// `pLinearAddress` RM returned.
    pub cookie: u64,
    /// The client, device and memory handles.
    pub handles: (Handle, Handle, Handle),
}

impl<'t> std::fmt::Debug for MappedMemory<'t> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedMemory").finish_non_exhaustive()
    }
}

/// One process's connection to RM: a ctl file, scratch buffers, and handle allocation.
pub struct RmClient<'t> {
    t: &'t dyn Transport,
    ctl: Fd,
    arg: Buffer,
    params: Buffer,
    /// The outer `NV_ESC_IOCTL_XFER_CMD` argument, for [`RmClient::ioctl_xfer`].
    xfer: Buffer,
    next_handle: Handle,
    dev_fd: Option<Fd>,
}

impl std::fmt::Debug for RmClient<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RmClient")
            .field("ctl", &self.ctl)
            .finish_non_exhaustive()
    }
}

impl<'t> RmClient<'t> {
    /// Opens `/dev/nvidiactl` and runs the driver version check, as every client does first.
    pub fn open(t: &'t dyn Transport) -> Result<Self, RmApiError> {
        let ctl = t.open(Node::Ctl)?;
        let mut c = Self {
            t,
            ctl,
            arg: t.buffer(SCRATCH, 64)?,
            params: t.buffer(SCRATCH, 64)?,
            xfer: t.buffer(size_of::<NvIoctlXfer>(), 64)?,
            next_handle: FIRST_HANDLE,
            dev_fd: None,
        };
        let mut v = NvIoctlRmApiVersion {
            cmd: NV_RM_API_VERSION_CMD_STRICT,
            ..Default::default()
        };
        v.versionString[..NV_VERSION_STRING.len()].copy_from_slice(NV_VERSION_STRING.as_bytes());
        match c.escape(ctl, Escape::CHECK_VERSION_STR, &mut v) {
            Err(RmApiError::Errno { errno, .. }) if errno == libc::EINVAL => {
                Err(RmApiError::VersionMismatch)
            }
            r => r.map(|()| c),
        }
    }

    /// A second thread's use of a ctl file another `RmClient` opened: the same fd, so the same
    /// RM clients, with scratch buffers of its own. For controls and frees; handles it makes
    /// may clash with the first one's.
    pub fn on_fd(t: &'t dyn Transport, ctl: Fd) -> Result<Self, RmApiError> {
        Ok(Self {
            t,
            ctl,
            arg: t.buffer(SCRATCH, 64)?,
            params: t.buffer(SCRATCH, 64)?,
            xfer: t.buffer(size_of::<NvIoctlXfer>(), 64)?,
            next_handle: FIRST_HANDLE,
            dev_fd: None,
        })
    }

    /// The transport.
    pub fn transport(&self) -> &'t dyn Transport {
        self.t
    }

    /// The ctl file.
    pub fn ctl(&self) -> Fd {
        self.ctl
    }

    /// A fresh object handle.
    pub fn new_handle(&mut self) -> Handle {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    /// `ioctl(fd, _IOWR('F', esc, sizeof *arg), arg)`: the argument goes through the scratch
    /// buffer and comes back updated. Fails on a negative return.
    pub fn escape<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        fd: Fd,
        esc: Escape,
        arg: &mut T,
    ) -> Result<(), RmApiError> {
        let size = size_of::<T>();
        let request =
            IoctlRequest::encode(esc as u8, size as u32).ok_or(RmApiError::TooLarge(esc.name()))?;
        self.arg.put(0, arg)?;
        let ret = self.t.ioctl(fd, request, &self.arg)?;
        if ret < 0 {
            return Err(RmApiError::Errno {
                call: esc.name(),
                errno: -ret,
            });
        }
        *arg = self.arg.get(0)?;
        Ok(())
    }

    /// `ioctl(fd, request, arg)` with any request number (a wrong size, a garbage number) and
    /// argument bytes of any length, through the scratch buffer: returns what ioctl(2) returns
    /// (0 or `-errno`) and leaves in `arg` what the driver left there, even when it fails.
    pub fn ioctl_request(
        &mut self,
        fd: Fd,
        request: u32,
        arg: &mut [u8],
    ) -> Result<i32, RmApiError> {
        if arg.len() > self.arg.len() {
            return Err(RmApiError::TooLarge("ioctl"));
        }
        self.arg.write(0, arg)?;
        let ret = self.t.ioctl(fd, request, &self.arg)?;
        self.arg.read(0, arg)?;
        Ok(ret)
    }

    /// Escape `esc` with `arg` (request `_IOWR('F', esc, sizeof *arg)`), whatever its outcome:
    /// returns what ioctl(2) returns and the argument as the driver left it, also on a
    /// negative return (the version check copies the driver's version out when it fails).
    pub fn ioctl_raw<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        fd: Fd,
        esc: Escape,
        arg: &T,
    ) -> Result<(i32, T), RmApiError> {
        let request = IoctlRequest::encode(esc as u8, size_of::<T>() as u32)
            .ok_or(RmApiError::TooLarge(esc.name()))?;
        let mut out = T::new_zeroed();
        out.as_mut_bytes().copy_from_slice(arg.as_bytes());
        let ret = self.ioctl_request(fd, request, out.as_mut_bytes())?;
        Ok((ret, out))
    }

    /// [`RmClient::ioctl_raw`] through `NV_ESC_IOCTL_XFER_CMD`, as the driver's user library
    /// sends arguments too large for the request's size field: the outer argument names the
    /// escape, the size and the scratch buffer holding `arg`.
    pub fn ioctl_xfer<T: IntoBytes + FromBytes + Immutable>(
        &mut self,
        fd: Fd,
        esc: Escape,
        arg: &T,
    ) -> Result<(i32, T), RmApiError> {
        let bytes = arg.as_bytes();
        if bytes.len() > self.arg.len() {
            return Err(RmApiError::TooLarge(esc.name()));
        }
        self.arg.write(0, bytes)?;
        let x = NvIoctlXfer {
            cmd: esc as u32,
            size: bytes.len() as u32,
            ptr: self.arg.addr(),
        };
        self.xfer.put(0, &x)?;
        let request = IoctlRequest::encode(
            Escape::IOCTL_XFER_CMD as u8,
            size_of::<NvIoctlXfer>() as u32,
        )
        .ok_or(RmApiError::TooLarge(Escape::IOCTL_XFER_CMD.name()))?;
        let ret = self.t.ioctl(fd, request, &self.xfer)?;
        Ok((ret, self.arg.get(0)?))
    }

    /// Allocates the root client (`NV01_ROOT_CLIENT`, handle chosen by RM).
    pub fn alloc_root(&mut self) -> Result<Handle, RmApiError> {
        let mut a = Nvos64Parameters {
            hClass: class::NV01_ROOT_CLIENT,
            ..Default::default()
        };
        self.alloc_with(&mut a, &mut [])?;
        Ok(a.hObjectNew)
    }

    /// `RM_ALLOC` of `class` under `parent` with `params` (NVOS64, params by pointer); returns
    /// the new object's handle.
    pub fn alloc<P: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: Handle,
        parent: Handle,
        class_id: u32,
        params: &mut P,
    ) -> Result<Handle, RmApiError> {
        let new = self.new_handle();
        let mut a = Nvos64Parameters {
            hRoot: client,
            hObjectParent: parent,
            hObjectNew: new,
            hClass: class_id,
            ..Default::default()
        };
        self.alloc_with(&mut a, params.as_mut_bytes())?;
        Ok(new)
    }

    /// `RM_ALLOC` (NVOS64) of `class_id` as `new` (0: RM picks) under `parent`, with `params`
    /// in place (RM's output params come back in it; none when it is empty, with a NULL
    /// pointer): returns RM's status and the new object's handle instead of failing on a
    /// status. Fails only when the ioctl does.
    pub fn alloc_status(
        &mut self,
        client: Handle,
        parent: Handle,
        new: Handle,
        class_id: u32,
        params: &mut [u8],
    ) -> Result<(NvStatus, Handle), RmApiError> {
        let mut a = Nvos64Parameters {
            hRoot: client,
            hObjectParent: parent,
            hObjectNew: new,
            hClass: class_id,
            ..Default::default()
        };
        self.alloc_params_in(&mut a, params)?;
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_ALLOC, &mut a)?;
        self.params.read(0, params)?;
        Ok((NvStatus(a.status), a.hObjectNew))
    }

    fn alloc_params_in(
        &mut self,
        a: &mut Nvos64Parameters,
        params: &[u8],
    ) -> Result<(), RmApiError> {
        if params.len() > self.params.len() {
            return Err(RmApiError::TooLarge("NV_ESC_RM_ALLOC"));
        }
        self.params.write(0, params)?;
        a.pAllocParms = if params.is_empty() {
            0
        } else {
            self.params.addr()
        };
        a.paramsSize = params.len() as u32;
        Ok(())
    }

    fn alloc_with(
        &mut self,
        a: &mut Nvos64Parameters,
        params: &mut [u8],
    ) -> Result<(), RmApiError> {
        self.alloc_params_in(a, params)?;
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_ALLOC, a)?;
        check(|| format!("RM_ALLOC class {:#06x}", a.hClass), a.status)?;
        self.params.read(0, params)?;
        Ok(())
    }

    /// A `/dev/nvidia0` file registered to the ctl file (`NV_ESC_REGISTER_FD`), opened once.
    pub fn device_file(&mut self) -> Result<Fd, RmApiError> {
        if let Some(fd) = self.dev_fd {
            return Ok(fd);
        }
        let fd = self.t.open(Node::Device(0))?;
        let mut r = NvIoctlRegisterFd { ctl_fd: self.ctl };
        self.escape(fd, Escape::REGISTER_FD, &mut r)?;
        self.dev_fd = Some(fd);
        Ok(fd)
    }

    /// `RM_ALLOC_MEMORY` of an `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` over `buf` (user memory the
    /// GPU then uses in place); returns the memory object's handle.
    pub fn alloc_os_descriptor(
        &mut self,
        client: Handle,
        device: Handle,
        buf: &Buffer,
    ) -> Result<Handle, RmApiError> {
        let new = self.new_handle();
        let mut a = Nvos02ParametersWithFd {
            params: Nvos02Parameters {
                hRoot: client,
                hObjectParent: device,
                hObjectNew: new,
                hClass: class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
                pMemory: buf.addr(),
                limit: (buf.len() as u64).saturating_sub(1),
                ..Default::default()
            },
            fd: -1,
            _pad: 0,
        };
        let fd = self.device_file()?;
        self.escape(fd, Escape::RM_ALLOC_MEMORY, &mut a)?;
        check(|| "RM_ALLOC_MEMORY (OS descriptor)".into(), a.params.status)?;
        Ok(new)
    }

    /// `RM_CONTROL` `cmd` on `object` with `params` (NVOS54, params by pointer).
    pub fn control<P: IntoBytes + FromBytes + Immutable>(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut P,
    ) -> Result<(), RmApiError> {
        let bytes = params.as_mut_bytes();
        if bytes.len() > self.params.len() {
            return Err(RmApiError::TooLarge("NV_ESC_RM_CONTROL"));
        }
        self.params.write(0, bytes)?;
        let mut a = Nvos54Parameters {
            hClient: client,
            hObject: object,
            cmd,
            params: self.params.addr(),
            paramsSize: bytes.len() as u32,
            ..Default::default()
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_CONTROL, &mut a)?;
        check(|| format!("RM_CONTROL {cmd:#010x}"), a.status)?;
        self.params.read(0, bytes)?;
        Ok(())
    }

    /// `RM_CONTROL` `cmd` on `object` with param bytes of any size in place (a NULL pointer
    /// when empty): returns RM's status instead of failing on it. Fails only when the ioctl
    /// does.
    pub fn control_status(
        &mut self,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> Result<NvStatus, RmApiError> {
        if params.len() > self.params.len() {
            return Err(RmApiError::TooLarge("NV_ESC_RM_CONTROL"));
        }
        self.params.write(0, params)?;
        let mut a = Nvos54Parameters {
            hClient: client,
            hObject: object,
            cmd,
            params: if params.is_empty() {
                0
            } else {
                self.params.addr()
            },
            paramsSize: params.len() as u32,
            ..Default::default()
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_CONTROL, &mut a)?;
        self.params.read(0, params)?;
        Ok(NvStatus(a.status))
    }

    /// `RM_FREE` of `object`, returning RM's status instead of failing on it. Fails only when
    /// the ioctl does.
    pub fn free_status(
        &mut self,
        client: Handle,
        parent: Handle,
        object: Handle,
    ) -> Result<NvStatus, RmApiError> {
        let mut a = Nvos00Parameters {
            hRoot: client,
            hObjectParent: parent,
            hObjectOld: object,
            status: 0,
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_FREE, &mut a)?;
        Ok(NvStatus(a.status))
    }

    /// `RM_FREE` of `object` (and its subtree); freeing the client frees everything.
    pub fn free(
        &mut self,
        client: Handle,
        parent: Handle,
        object: Handle,
    ) -> Result<(), RmApiError> {
        let status = self.free_status(client, parent, object)?;
        check(|| format!("RM_FREE {object:#x}"), status.0)
    }

    /// `RM_MAP_MEMORY_DMA`: maps `memory` into the VA space `vaspace`; returns the GPU VA.
    pub fn map_dma(
        &mut self,
        client: Handle,
        device: Handle,
        vaspace: Handle,
        memory: Handle,
        length: u64,
    ) -> Result<u64, RmApiError> {
        let mut a = Nvos46Parameters {
            hClient: client,
            hDevice: device,
            hDma: vaspace,
            hMemory: memory,
            length,
            ..Default::default()
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_MAP_MEMORY_DMA, &mut a)?;
        check(|| "RM_MAP_MEMORY_DMA".into(), a.status)?;
        Ok(a.dmaOffset)
    }

    /// `RM_MAP_MEMORY` on a fresh `/dev/nvidia0` file, then `mmap` of that file: a CPU
    /// mapping of `length` bytes of `memory`.
    pub fn map_memory(
        &mut self,
        client: Handle,
        device: Handle,
        memory: Handle,
        length: u64,
    ) -> Result<MappedMemory<'t>, RmApiError> {
        let fd = self.t.open(Node::Device(0))?;
        let mut a = Nvos33ParametersWithFd {
            params: Nvos33Parameters {
                hClient: client,
                hDevice: device,
                hMemory: memory,
                length,
                ..Default::default()
            },
            fd,
            _pad: 0,
        };
        let ctl = self.ctl;
        let mapped = self
            .escape(ctl, Escape::RM_MAP_MEMORY, &mut a)
            .and_then(|()| check(|| "RM_MAP_MEMORY".into(), a.params.status));
        if let Err(e) = mapped {
            let _ = self.t.close(fd);
            return Err(e);
        }
        let t = self.t;
        Ok(MappedMemory {
            mapping: t.map(fd, length)?,
            fd,
            cookie: a.params.pLinearAddress,
            handles: (client, device, memory),
        })
    }

    /// `RM_UNMAP_MEMORY` and `close` of a mapping's file.
    pub fn unmap_memory(&mut self, m: MappedMemory<'_>) -> Result<(), RmApiError> {
        let (client, device, memory) = m.handles;
        let mut a = Nvos34Parameters {
            hClient: client,
            hDevice: device,
            hMemory: memory,
            pLinearAddress: m.cookie,
            ..Default::default()
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_UNMAP_MEMORY, &mut a)?;
        check(|| "RM_UNMAP_MEMORY".into(), a.status)?;
        self.t.close(m.fd)?;
        Ok(())
    }

    /// `RM_IDLE_CHANNELS` for one channel: waits until it has no work left.
    pub fn idle_channel(
        &mut self,
        client: Handle,
        device: Handle,
        channel: Handle,
        timeout_us: u32,
    ) -> Result<(), RmApiError> {
        let mut a = Nvos30Parameters {
            hClient: client,
            hDevice: device,
            hChannel: channel,
            timeout: timeout_us,
            ..Default::default()
        };
        let ctl = self.ctl;
        self.escape(ctl, Escape::RM_IDLE_CHANNELS, &mut a)?;
        check(|| "RM_IDLE_CHANNELS".into(), a.status)
    }

    /// Closes the ctl file (RM frees every client allocated through it).
    pub fn close(self) -> Result<(), RmApiError> {
        if let Some(fd) = self.dev_fd {
            self.t.close(fd)?;
        }
        self.t.close(self.ctl)?;
        Ok(())
    }
}
