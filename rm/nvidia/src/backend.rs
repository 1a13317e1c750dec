//! [`NvidiaBackend`]: the RM core's [`Backend`] over the host's NVIDIA driver, so VM guests'
//! escapes run on the real GPU. Every guest's RM tree becomes host objects that vgpud owns.
//!
//! * Files: each vGPU (GFID) gets its own `/dev/nvidiactl` and a `/dev/nvidiaN` registered to
//!   it, so closing them (instance torn down, vgpud killed) frees whatever of that guest the
//!   driver still holds.
//! * Handles: the core's host client handles (its per-GFID ranges) are not handles the driver
//!   lets a caller choose, so each guest client is a driver client the driver named, and this
//!   backend maps one to the other (top-level `hClient` fields, `hParentClient` of events and
//!   `hClientList` of `FIFO_DISABLE_CHANNELS`). Object handles are the guest's own, as on bare
//!   metal, and the driver checks them per client.
//! * Guest window pages wrapped as OS descriptors become real `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR`
//!   memory over vgpud's own mapping of the window, so the GPU reads the guest's rings and
//!   pushbuffers and writes its semaphores in place.
//! * Doorbells: the core has checked the token against the GFID's channels; this backend writes
//!   it to `NOTIFY_CHANNEL_PENDING` of a `HOPPER_USERMODE_A` page it maps for its own client.
//! * GPU mappings: the core's guests map memory straight into a VA space (`hDma` is a
//!   `FERMI_VASPACE_A`, as on the sim); the driver maps only into a virtual memory object, so
//!   the backend allocates an `NV50_MEMORY_VIRTUAL` range of that VA space per mapping (as
//!   Mesa's NVK does on the same driver), maps there, and frees it with the mapping. Those ranges
//!   take handles from `0xB0B10000` up in the guest's own client, so a guest object with such a
//!   handle collides with one (`NV_ERR_INSERT_DUPLICATE_NAME`, in that guest only).
//! * Idle waits read GP_GET and GP_PUT from the channel's USERD where that is guest memory; the
//!   backend answers `NV_ERR_BUSY_RETRY` while they differ and never waits under the core's lock.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use rm_abi::alloc_params::{
    Nv0005AllocParameters, Nv0080AllocParameters, Nv2080AllocParameters, NvChannelAllocParams,
    NvHopperUsermodeAParams, NvMemoryAllocationParams, VGPU_MEMORY_OWNER,
};
use rm_abi::class;
use rm_abi::ctrl::{
    Nv0000CtrlGpuAttachIdsParams, Nv2080CtrlFifoDisableChannelsParams,
    NV0000_CTRL_CMD_GPU_ATTACH_IDS, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
};
use rm_abi::methods::HOPPER_USERMODE_A;
use rm_abi::nvos::{
    Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters,
    NVOS46_FLAGS_DMA_OFFSET_FIXED,
};
use rm_abi::{read_struct, userd, Handle, NvStatus};
use rm_core::backend::{AllocRequest, Backend, ExternalPages, Gfid, GpuInfo};
use rm_core::vgpu::VgpuConfig;
use zerocopy::{FromBytes, IntoBytes};

use super::calls::{self, ControlError};
use super::driver::{NvDriver, SyscallDriver};
use super::gpu_info::{self, QueryError, QueryTarget};

/// `NVC361_NOTIFY_CHANNEL_PENDING`: the doorbell register of the usermode page.
const NOTIFY_CHANNEL_PENDING: usize = 0x90;
/// Size of the usermode page mapping (what CUDA maps).
const USERMODE_MAP_LEN: u64 = 0x1_0000;
/// `NVOS33_FLAGS_ACCESS_WRITE_ONLY | NVOS33_FLAGS_MAPPING_DIRECT`, CUDA's flags for it.
const USERMODE_MAP_FLAGS: u32 = 0x8_0002;
/// `NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS`.
const ATTACH_ALL_PROBED_IDS: u32 = 0x0000_FFFF;
/// `NV0000_CTRL_GPU_INVALID_ID`.
const INVALID_ID: u32 = 0xFFFF_FFFF;
/// Handles of the backend's own objects in its own client.
const OWN_DEVICE: Handle = 0xB0B0_0001;
const OWN_SUBDEVICE: Handle = 0xB0B0_0002;
const OWN_USERMODE: Handle = 0xB0B0_0003;
/// `NV50_MEMORY_VIRTUAL`: a range of a VA space that memory is mapped into.
const NV50_MEMORY_VIRTUAL: u32 = 0x50A0;
/// `NVOS32_ALLOC_FLAGS_VIRTUAL`.
const NVOS32_ALLOC_FLAGS_VIRTUAL: u32 = 0x0008_0000;
/// `NVOS32_ALLOC_FLAGS_FIXED_ADDRESS_ALLOCATE`.
const NVOS32_ALLOC_FLAGS_FIXED_ADDRESS_ALLOCATE: u32 = 0x0000_0010;
/// First handle of the virtual ranges the backend allocates in guests' clients.
const VIRTUAL_HANDLE_BASE: Handle = 0xB0B1_0000;

/// Opens the driver's device files (the real ones, or test files).
pub trait DeviceFiles: Send {
    /// A new open of `/dev/nvidiactl`.
    fn open_ctl(&self) -> std::io::Result<File>;
    /// A new open of the GPU's `/dev/nvidiaN`.
    fn open_gpu(&self) -> std::io::Result<File>;
}

/// The host's `/dev/nvidiactl` and `/dev/nvidia<minor>`.
#[derive(Debug, Clone, Copy)]
pub struct HostDeviceFiles {
    /// The GPU's minor number.
    pub minor: u32,
}

impl DeviceFiles for HostDeviceFiles {
    fn open_ctl(&self) -> std::io::Result<File> {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/nvidiactl")
    }

    fn open_gpu(&self) -> std::io::Result<File> {
        File::options()
            .read(true)
            .write(true)
            .open(format!("/dev/nvidia{}", self.minor))
    }
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A device file could not be opened.
    #[error("opening the NVIDIA device files (/dev/nvidiactl, /dev/nvidiaN)")]
    Open(#[source] std::io::Error),
    /// The backend's own client could not be set up.
    #[error("setting up vgpud's own RM client: {what}: {why}")]
    Setup {
        /// What was being done.
        what: &'static str,
        /// errno or RM status.
        why: ControlError,
    },
    /// The GPU did not answer what the core needs.
    #[error("asking the GPU about itself")]
    Query(#[from] QueryError),
    /// The usermode page could not be mapped.
    #[error("mapping the usermode doorbell page")]
    Mmap(#[source] std::io::Error),
}

/// A shared mapping made by `mmap` of a device file, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is device memory or pinned system memory; it is only reached through
// bounds-checked volatile accesses made under the backend's `&mut self`.
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` at offset 0 (the driver's mapping context on that file).
    fn new(file: &File, len: u64) -> std::io::Result<Self> {
        let len =
            usize::try_from(len).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh shared mapping of an open file; the kernel checks the length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn range(&self, offset: u64, n: usize) -> Option<*mut u8> {
        let start = usize::try_from(offset).ok()?;
        (start.checked_add(n)? <= self.len).then(|| self.ptr.wrapping_add(start))
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Some(p) = self.range(offset, buf.len()) else {
            return false;
        };
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `p + i` lies inside the live mapping (checked above).
            *b = unsafe { p.add(i).read_volatile() };
        }
        true
    }

    fn write(&self, offset: u64, data: &[u8]) -> bool {
        let Some(p) = self.range(offset, data.len()) else {
            return false;
        };
        for (i, &b) in data.iter().enumerate() {
            // SAFETY: `p + i` lies inside the live mapping (checked above).
            unsafe { p.add(i).write_volatile(b) };
        }
        true
    }

    fn write32(&self, offset: usize, v: u32) {
        if offset.is_multiple_of(4) && offset + 4 <= self.len {
            // SAFETY: an aligned u32 inside the live mapping.
            unsafe { self.ptr.add(offset).cast::<u32>().write_volatile(v) };
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; nothing uses it afterwards.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// One vGPU's device files.
#[derive(Debug)]
struct VgpuFiles {
    ctl: File,
    gpu: File,
}

/// A guest client: the driver's handle for it and the vGPU it belongs to.
#[derive(Debug, Clone, Copy)]
struct ClientEntry {
    gfid: Gfid,
    driver: Handle,
}

/// A CPU mapping made for the core (`map_memory`).
#[derive(Debug)]
struct CpuMapping {
    client: Handle,
    memory: Handle,
    offset: u64,
    map: Mapping,
    /// `hDevice` and the driver's own cookie, which unmapping needs.
    device: Handle,
    linear: u64,
}

/// A GPU mapping made for the core: the virtual range it lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct DmaKey {
    client: Handle,
    vaspace: Handle,
    gpu_va: u64,
}

/// Where a channel's USERD is, when it is guest memory the backend can read.
#[derive(Debug, Clone)]
struct Userd {
    pages: ExternalPages,
    offset: u64,
}

/// The backend's own client on its own ctl fd: GPU identity queries and the doorbell page.
#[derive(Debug)]
struct OwnClient {
    ctl: File,
    _gpu: File,
    client: Handle,
    doorbell: Mapping,
}

/// The real GPU behind the RM core (see the module docs).
pub struct NvidiaBackend<D: NvDriver = SyscallDriver> {
    driver: D,
    files: Box<dyn DeviceFiles>,
    info: GpuInfo,
    own: OwnClient,
    vgpus: HashMap<Gfid, VgpuFiles>,
    clients: HashMap<Handle, ClientEntry>,
    os_descriptors: HashMap<(Handle, Handle), ExternalPages>,
    cpu_maps: HashMap<u64, CpuMapping>,
    next_cookie: u64,
    userd: HashMap<(Handle, Handle), Userd>,
    virtual_ranges: HashMap<DmaKey, Handle>,
    next_virtual: Handle,
}

impl<D: NvDriver> std::fmt::Debug for NvidiaBackend<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvidiaBackend")
            .field("gpu", &self.info.name)
            .field("vgpus", &self.vgpus.len())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl NvidiaBackend<SyscallDriver> {
    /// The backend on the host's GPU `minor`.
    pub fn open(minor: u32) -> Result<Self, OpenError> {
        Self::with_driver(SyscallDriver, Box::new(HostDeviceFiles { minor }))
    }
}

impl<D: NvDriver> NvidiaBackend<D> {
    /// The backend over `driver` and `files`: sets up its own client (device, subdevice,
    /// usermode page) and asks the GPU what it is.
    pub fn with_driver(driver: D, files: Box<dyn DeviceFiles>) -> Result<Self, OpenError> {
        let ctl = files.open_ctl().map_err(OpenError::Open)?;
        // The driver lets a client allocate a device only while the GPU's own file is open
        // (NV_ERR_INSUFFICIENT_PERMISSIONS otherwise), and frees nothing when it closes; so it
        // stays open, registered to the ctl fd as CUDA does.
        let gpu = files.open_gpu().map_err(OpenError::Open)?;
        let fd = ctl.as_raw_fd();
        calls::register_fd(&driver, gpu.as_raw_fd(), fd).map_err(|why| OpenError::Setup {
            what: "REGISTER_FD",
            why,
        })?;
        let setup = |what| move |why| OpenError::Setup { what, why };
        let client = calls::alloc(&driver, fd, 0, 0, 0, class::NV01_ROOT_CLIENT, &mut [0u8; 4])
            .map_err(setup("root client"))?;
        attach_gpus(&driver, fd, client).map_err(setup("GPU_ATTACH_IDS"))?;
        let mut dev = Nv0080AllocParameters {
            hClientShare: client,
            ..Default::default()
        };
        calls::alloc(
            &driver,
            fd,
            client,
            client,
            OWN_DEVICE,
            class::NV01_DEVICE_0,
            dev.as_mut_bytes(),
        )
        .map_err(setup("device"))?;
        let mut sub = Nv2080AllocParameters::default();
        calls::alloc(
            &driver,
            fd,
            client,
            OWN_DEVICE,
            OWN_SUBDEVICE,
            class::NV20_SUBDEVICE_0,
            sub.as_mut_bytes(),
        )
        .map_err(setup("subdevice"))?;
        let mut um = NvHopperUsermodeAParams::default();
        calls::alloc(
            &driver,
            fd,
            client,
            OWN_SUBDEVICE,
            OWN_USERMODE,
            HOPPER_USERMODE_A,
            um.as_mut_bytes(),
        )
        .map_err(setup("HOPPER_USERMODE_A"))?;
        let map_file = files.open_gpu().map_err(OpenError::Open)?;
        let mut p = Nvos33Parameters {
            hClient: client,
            hDevice: OWN_SUBDEVICE,
            hMemory: OWN_USERMODE,
            length: USERMODE_MAP_LEN,
            flags: USERMODE_MAP_FLAGS,
            ..Default::default()
        };
        calls::map_memory(&driver, fd, map_file.as_raw_fd(), &mut p)
            .map_err(setup("mapping HOPPER_USERMODE_A"))?;
        let doorbell = Mapping::new(&map_file, USERMODE_MAP_LEN).map_err(OpenError::Mmap)?;
        let info = gpu_info::query(
            &driver,
            QueryTarget {
                fd,
                client,
                device: OWN_DEVICE,
                subdevice: OWN_SUBDEVICE,
            },
        )?;
        Ok(Self {
            driver,
            files,
            info,
            own: OwnClient {
                ctl,
                _gpu: gpu,
                client,
                doorbell,
            },
            vgpus: HashMap::new(),
            clients: HashMap::new(),
            os_descriptors: HashMap::new(),
            cpu_maps: HashMap::new(),
            next_cookie: 1,
            userd: HashMap::new(),
            virtual_ranges: HashMap::new(),
            next_virtual: VIRTUAL_HANDLE_BASE,
        })
    }

    /// Guest clients the driver holds for vGPU `gfid` now (for leak checks).
    pub fn client_count(&self, gfid: Gfid) -> usize {
        self.clients.values().filter(|c| c.gfid == gfid).count()
    }

    /// The driver (tests look at what it was asked).
    pub fn driver(&self) -> &D {
        &self.driver
    }

    /// The vGPU's files, opened on first use.
    fn files(&mut self, gfid: Gfid) -> Result<&VgpuFiles, NvStatus> {
        if !self.vgpus.contains_key(&gfid) {
            let open = || -> Result<VgpuFiles, String> {
                let ctl = self.files.open_ctl().map_err(|e| e.to_string())?;
                let gpu = self.files.open_gpu().map_err(|e| e.to_string())?;
                calls::register_fd(&self.driver, gpu.as_raw_fd(), ctl.as_raw_fd())
                    .map_err(|e| e.to_string())?;
                Ok(VgpuFiles { ctl, gpu })
            };
            match open() {
                Ok(f) => {
                    self.vgpus.insert(gfid, f);
                }
                Err(e) => {
                    tracing::error!(gfid, "opening the NVIDIA device files: {e}");
                    return Err(NvStatus::ERR_OPERATING_SYSTEM);
                }
            }
        }
        Ok(&self.vgpus[&gfid])
    }

    fn ctl(&mut self, gfid: Gfid) -> Result<RawFd, NvStatus> {
        self.files(gfid).map(|f| f.ctl.as_raw_fd())
    }

    /// What every call on a guest client needs: the driver's handle of `client` (checked to be
    /// `gfid`'s) and the ctl fd of `gfid`.
    fn target(&mut self, gfid: Gfid, client: Handle) -> Result<(Handle, RawFd), NvStatus> {
        let driver = self.driver_client(gfid, client)?;
        Ok((driver, self.ctl(gfid)?))
    }

    /// The driver's handle of guest client `client` (a host handle of the core) of `gfid`.
    fn driver_client(&self, gfid: Gfid, client: Handle) -> Result<Handle, NvStatus> {
        match self.clients.get(&client) {
            Some(c) if c.gfid == gfid => Ok(c.driver),
            _ => Err(NvStatus::ERR_INVALID_CLIENT),
        }
    }

    fn alloc_client(&mut self, gfid: Gfid, object: Handle) -> NvStatus {
        let fd = match self.ctl(gfid) {
            Ok(fd) => fd,
            Err(s) => return s,
        };
        let handle = match calls::alloc(
            &self.driver,
            fd,
            0,
            0,
            0,
            class::NV01_ROOT_CLIENT,
            &mut [0u8; 4],
        ) {
            Ok(h) => h,
            Err(e) => return e.status(),
        };
        if let Err(e) = attach_gpus(&self.driver, fd, handle) {
            let _ = calls::free(&self.driver, fd, handle, handle);
            return e.status();
        }
        self.clients.insert(
            object,
            ClientEntry {
                gfid,
                driver: handle,
            },
        );
        NvStatus::OK
    }

    /// Forgets what the backend kept for `object` of `client` (after the driver freed it).
    fn forget(&mut self, client: Handle, object: Handle) {
        self.os_descriptors.remove(&(client, object));
        self.userd.remove(&(client, object));
        self.cpu_maps
            .retain(|_, m| !(m.client == client && (m.memory == object || object == client)));
        if object == client {
            self.os_descriptors.retain(|k, _| k.0 != client);
            self.userd.retain(|k, _| k.0 != client);
            self.virtual_ranges.retain(|k, _| k.client != client);
        }
    }

    fn cpu_mapping(
        &self,
        client: Handle,
        memory: Handle,
        offset: u64,
        n: usize,
    ) -> Option<(&CpuMapping, u64)> {
        self.cpu_maps.values().find_map(|m| {
            let rel = offset.checked_sub(m.offset)?;
            (m.client == client && m.memory == memory && m.map.range(rel, n).is_some())
                .then_some((m, rel))
        })
    }
}

/// Attaches every probed GPU to `client` (idempotent; what a client does before a device).
fn attach_gpus<D: NvDriver + ?Sized>(
    driver: &D,
    fd: RawFd,
    client: Handle,
) -> Result<(), ControlError> {
    let mut p = Nv0000CtrlGpuAttachIdsParams {
        gpuIds: [INVALID_ID; 32],
        failedId: 0,
    };
    p.gpuIds[0] = ATTACH_ALL_PROBED_IDS;
    calls::control(
        driver,
        fd,
        client,
        client,
        NV0000_CTRL_CMD_GPU_ATTACH_IDS,
        p.as_mut_bytes(),
    )
}

fn status(r: Result<(), ControlError>) -> NvStatus {
    match r {
        Ok(()) => NvStatus::OK,
        Err(e) => e.status(),
    }
}

impl<D: NvDriver> Backend for NvidiaBackend<D> {
    fn gpu_info(&self) -> GpuInfo {
        self.info.clone()
    }

    fn create_vgpu(&mut self, gfid: Gfid, _config: &VgpuConfig) {
        // Opened now so a guest's first call does not pay for it; a failure is reported then.
        let _ = self.files(gfid);
    }

    fn destroy_vgpu(&mut self, gfid: Gfid) {
        let gone: Vec<Handle> = self
            .clients
            .iter()
            .filter(|(_, c)| c.gfid == gfid)
            .map(|(&h, _)| h)
            .collect();
        for h in gone {
            if let Some(c) = self.clients.remove(&h) {
                if let Some(f) = self.vgpus.get(&gfid) {
                    let _ = calls::free(&self.driver, f.ctl.as_raw_fd(), c.driver, c.driver);
                }
            }
            self.forget(h, h);
        }
        // Closing the files frees anything of this guest the driver still holds.
        self.vgpus.remove(&gfid);
    }

    fn alloc(&mut self, req: &AllocRequest, params: &mut [u8]) -> NvStatus {
        if req.class == class::NV01_ROOT_CLIENT {
            return self.alloc_client(req.gfid, req.object);
        }
        let (client, fd) = match self.target(req.gfid, req.client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        if class::is_event_class(req.class) {
            if let Some(p) = params.get_mut(..size_of::<Nv0005AllocParameters>()) {
                let mut e = read_struct::<Nv0005AllocParameters>(p).unwrap_or_default();
                e.hParentClient = match self.driver_client(req.gfid, e.hParentClient) {
                    Ok(c) => c,
                    Err(s) => return s,
                };
                p.copy_from_slice(e.as_bytes());
            }
        }
        if req.class == class::NV01_DEVICE_0 {
            // `hClientShare` 0 would put the device in the GPU's global VA space, shared with
            // every other such client (the driver's `deviceInitClientShare`); naming the
            // device's own client gives it a private one. The core allows only those two.
            if let Some(p) = params.get_mut(..size_of::<Nv0080AllocParameters>()) {
                let mut d = read_struct::<Nv0080AllocParameters>(p).unwrap_or_default();
                d.hClientShare = client;
                p.copy_from_slice(d.as_bytes());
            }
        }
        let parent = if req.parent == req.client {
            client
        } else {
            req.parent
        };
        let r = calls::alloc(
            &self.driver,
            fd,
            client,
            parent,
            req.object,
            req.class,
            params,
        );
        if r.is_ok() && req.class == rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A {
            if let Ok(p) = NvChannelAllocParams::read_from_prefix(params).map(|(p, _)| p) {
                if let Some(pages) = self.os_descriptors.get(&(req.client, p.hUserdMemory[0])) {
                    let userd = Userd {
                        pages: pages.clone(),
                        offset: p.userdOffset[0],
                    };
                    self.userd.insert((req.client, req.object), userd);
                }
            }
        }
        status(r.map(|_| ()))
    }

    fn alloc_os_descriptor(&mut self, req: &AllocRequest, pages: ExternalPages) -> NvStatus {
        let Some(address) = pages.host_address() else {
            return NvStatus::ERR_NOT_SUPPORTED;
        };
        let client = match self.driver_client(req.gfid, req.client) {
            Ok(c) => c,
            Err(s) => return s,
        };
        let gpu_fd = match self.files(req.gfid) {
            Ok(f) => f.gpu.as_raw_fd(),
            Err(s) => return s,
        };
        // SAFETY: `pages` is kept in `os_descriptors` until the object is freed, and its source
        // keeps the range mapped while any clone lives.
        let r = unsafe {
            calls::alloc_os_descriptor(
                &self.driver,
                gpu_fd,
                client,
                req.parent,
                req.object,
                req.class,
                address,
                pages.len(),
            )
        };
        if r.is_ok() {
            self.os_descriptors.insert((req.client, req.object), pages);
        }
        status(r)
    }

    fn free(&mut self, gfid: Gfid, client: Handle, object: Handle) -> NvStatus {
        let (driver_client, fd) = match self.target(gfid, client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let target = if object == client {
            driver_client
        } else {
            object
        };
        let r = calls::free(&self.driver, fd, driver_client, target);
        if r.is_ok() || object == client {
            self.forget(client, object);
        }
        if object == client {
            self.clients.remove(&client);
        }
        status(r)
    }

    fn control(
        &mut self,
        gfid: Gfid,
        client: Handle,
        object: Handle,
        cmd: u32,
        params: &mut [u8],
    ) -> NvStatus {
        let (driver_client, fd) = match self.target(gfid, client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let object = if object == client {
            driver_client
        } else {
            object
        };
        if cmd == NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS {
            let Ok((mut p, _)) = Nv2080CtrlFifoDisableChannelsParams::read_from_prefix(params)
            else {
                return NvStatus::ERR_INVALID_PARAM_STRUCT;
            };
            let n = (p.numChannels as usize).min(p.hClientList.len());
            for h in &mut p.hClientList[..n] {
                *h = match self.driver_client(gfid, *h) {
                    Ok(c) => c,
                    Err(s) => return s,
                };
            }
            let mut buf = p.as_bytes().to_vec();
            let r = calls::control(&self.driver, fd, driver_client, object, cmd, &mut buf);
            return status(r);
        }
        status(calls::control(
            &self.driver,
            fd,
            driver_client,
            object,
            cmd,
            params,
        ))
    }

    fn map_memory(&mut self, gfid: Gfid, params: &mut Nvos33Parameters) -> NvStatus {
        let (client, memory, offset) = (params.hClient, params.hMemory, params.offset);
        let (driver_client, fd) = match self.target(gfid, client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let map_file = match self.files.open_gpu() {
            Ok(f) => f,
            Err(_) => return NvStatus::ERR_OPERATING_SYSTEM,
        };
        let mut p = Nvos33Parameters {
            hClient: driver_client,
            hDevice: if params.hDevice == client {
                driver_client
            } else {
                params.hDevice
            },
            ..*params
        };
        if let Err(e) = calls::map_memory(&self.driver, fd, map_file.as_raw_fd(), &mut p) {
            return e.status();
        }
        let map = match Mapping::new(&map_file, p.length) {
            Ok(m) => m,
            Err(_) => {
                let mut u = Nvos34Parameters {
                    hClient: driver_client,
                    hDevice: p.hDevice,
                    hMemory: memory,
                    pLinearAddress: p.pLinearAddress,
                    ..Default::default()
                };
                let _ = calls::unmap_memory(&self.driver, fd, &mut u);
                return NvStatus::ERR_OPERATING_SYSTEM;
            }
        };
        let cookie = self.next_cookie << 12;
        self.next_cookie += 1;
        self.cpu_maps.insert(
            cookie,
            CpuMapping {
                client,
                memory,
                offset,
                map,
                device: p.hDevice,
                linear: p.pLinearAddress,
            },
        );
        params.pLinearAddress = cookie;
        params.status = 0;
        NvStatus::OK
    }

    fn unmap_memory(&mut self, gfid: Gfid, params: &mut Nvos34Parameters) -> NvStatus {
        let (driver_client, fd) = match self.target(gfid, params.hClient) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let cookie = params.pLinearAddress;
        let (device, linear) = match self.cpu_maps.get(&cookie) {
            Some(m) if m.client == params.hClient && m.memory == params.hMemory => {
                (m.device, m.linear)
            }
            _ => return NvStatus::ERR_INVALID_ARGUMENT,
        };
        // The CPU mapping goes first: the driver tears down what it backs.
        self.cpu_maps.remove(&cookie);
        let mut p = Nvos34Parameters {
            hClient: driver_client,
            hDevice: device,
            pLinearAddress: linear,
            ..*params
        };
        status(calls::unmap_memory(&self.driver, fd, &mut p))
    }

    fn map_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos46Parameters) -> NvStatus {
        let client = params.hClient;
        let (driver_client, fd) = match self.target(gfid, client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let fixed = params.flags & NVOS46_FLAGS_DMA_OFFSET_FIXED != 0;
        let mut range = NvMemoryAllocationParams {
            owner: VGPU_MEMORY_OWNER,
            flags: NVOS32_ALLOC_FLAGS_VIRTUAL
                | if fixed {
                    NVOS32_ALLOC_FLAGS_FIXED_ADDRESS_ALLOCATE
                } else {
                    0
                },
            size: params.length,
            offset: if fixed { params.dmaOffset } else { 0 },
            hVASpace: params.hDma,
            ..Default::default()
        };
        let virt = self.next_virtual;
        self.next_virtual = self.next_virtual.wrapping_add(1).max(VIRTUAL_HANDLE_BASE);
        let device = params.hDevice;
        if let Err(e) = calls::alloc(
            &self.driver,
            fd,
            driver_client,
            device,
            virt,
            NV50_MEMORY_VIRTUAL,
            range.as_mut_bytes(),
        ) {
            return e.status();
        }
        let mut p = Nvos46Parameters {
            hClient: driver_client,
            hDma: virt,
            flags: params.flags & !NVOS46_FLAGS_DMA_OFFSET_FIXED,
            dmaOffset: 0,
            ..*params
        };
        if let Err(e) = calls::map_memory_dma(&self.driver, fd, &mut p) {
            let _ = calls::free(&self.driver, fd, driver_client, virt);
            return e.status();
        }
        // The driver answers the VA inside the range (the range's base: the mapping starts at
        // its first byte).
        let end = range.offset.saturating_add(range.size);
        let gpu_va = if (range.offset..end).contains(&p.dmaOffset) {
            p.dmaOffset
        } else {
            range.offset
        };
        self.virtual_ranges.insert(
            DmaKey {
                client,
                vaspace: params.hDma,
                gpu_va,
            },
            virt,
        );
        params.dmaOffset = gpu_va;
        NvStatus::OK
    }

    fn unmap_memory_dma(&mut self, gfid: Gfid, params: &mut Nvos47Parameters) -> NvStatus {
        let client = params.hClient;
        let (driver_client, fd) = match self.target(gfid, client) {
            Ok(t) => t,
            Err(s) => return s,
        };
        let key = DmaKey {
            client,
            vaspace: params.hDma,
            gpu_va: params.dmaOffset,
        };
        let Some(&virt) = self.virtual_ranges.get(&key) else {
            return NvStatus::ERR_INVALID_ARGUMENT;
        };
        let mut p = Nvos47Parameters {
            hClient: driver_client,
            hDma: virt,
            ..*params
        };
        let unmapped = calls::unmap_memory_dma(&self.driver, fd, &mut p);
        // Freeing the range unmaps whatever is still mapped in it, so it goes either way.
        let freed = calls::free(&self.driver, fd, driver_client, virt);
        if freed.is_ok() {
            self.virtual_ranges.remove(&key);
        }
        status(unmapped.and(freed))
    }

    fn read_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        if self.driver_client(gfid, client).is_err() {
            return NvStatus::ERR_INVALID_CLIENT;
        }
        if let Some(pages) = self.os_descriptors.get(&(client, memory)) {
            return if pages.read(offset, buf) {
                NvStatus::OK
            } else {
                NvStatus::ERR_INVALID_OFFSET
            };
        }
        match self.cpu_mapping(client, memory, offset, buf.len()) {
            Some((m, rel)) if m.map.read(rel, buf) => NvStatus::OK,
            _ => NvStatus::ERR_INVALID_OFFSET,
        }
    }

    fn write_memory(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        if self.driver_client(gfid, client).is_err() {
            return NvStatus::ERR_INVALID_CLIENT;
        }
        if let Some(pages) = self.os_descriptors.get(&(client, memory)) {
            return if pages.write(offset, data) {
                NvStatus::OK
            } else {
                NvStatus::ERR_INVALID_OFFSET
            };
        }
        match self.cpu_mapping(client, memory, offset, data.len()) {
            Some((m, rel)) if m.map.write(rel, data) => NvStatus::OK,
            _ => NvStatus::ERR_INVALID_OFFSET,
        }
    }

    fn doorbell(&mut self, _gfid: Gfid, token: u32) -> NvStatus {
        self.own.doorbell.write32(NOTIFY_CHANNEL_PENDING, token);
        NvStatus::OK
    }

    fn idle_channel(
        &mut self,
        gfid: Gfid,
        client: Handle,
        channel: Handle,
        _timeout_us: u32,
    ) -> NvStatus {
        if self.driver_client(gfid, client).is_err() {
            return NvStatus::ERR_INVALID_CLIENT;
        }
        let Some(u) = self.userd.get(&(client, channel)) else {
            // USERD the driver allocated or video memory: nothing this backend can watch.
            return NvStatus::ERR_NOT_SUPPORTED;
        };
        let (mut get, mut put) = ([0u8; 4], [0u8; 4]);
        let (Some(at_get), Some(at_put)) = (
            u.offset.checked_add(userd::GP_GET),
            u.offset.checked_add(userd::GP_PUT),
        ) else {
            return NvStatus::ERR_INVALID_OFFSET;
        };
        if !(u.pages.read(at_get, &mut get) && u.pages.read(at_put, &mut put)) {
            return NvStatus::ERR_INVALID_OFFSET;
        }
        if get == put {
            NvStatus::OK
        } else {
            NvStatus::ERR_BUSY_RETRY
        }
    }
}

impl<D: NvDriver> Drop for NvidiaBackend<D> {
    fn drop(&mut self) {
        let gfids: Vec<Gfid> = self.vgpus.keys().copied().collect();
        for g in gfids {
            self.destroy_vgpu(g);
        }
        let fd = self.own.ctl.as_raw_fd();
        let _ = calls::free(&self.driver, fd, self.own.client, self.own.client);
    }
}
