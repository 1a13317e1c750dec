//! The tenant path: every ioctl a host process makes on an NVIDIA device file, decoded,
//! validated, sanitised, accounted and forwarded to the host driver.
//!
//! This is what `librmshim.so` runs inside an unmodified CUDA process. The process talks to the
//! real driver through its own fds, so the driver's handles are the ones it sees (and the ones its
//! `/dev/nvidia-uvm` calls carry); there is no renaming. Isolation is enforced instead:
//! * every RM escape must name a client this process allocated (`NV_ERR_INVALID_CLIENT`
//!   otherwise), including the source client of `RM_DUP_OBJECT`;
//! * client handle lists (`FIFO_DISABLE_CHANNELS`) may hold only the process's own clients, and
//!   `IDLE_CHANNELS` with handle lists behind pointers is refused;
//! * the escape struct and every embedded parameter buffer are copied into the forwarder's own
//!   memory (at most [`RMAPI_PARAM_COPY_MAX_PARAMS_SIZE`] bytes), checked and sanitised there, and
//!   the driver is given the copy, so the process cannot change them after the check;
//! * pointers inside parameter buffers are never followed by the forwarder; the driver follows
//!   them within the calling process's own address space, as it would without the forwarder.
//!
//! `/dev/nvidia-uvm` ioctls are forwarded unchanged (counted): their handles are the driver's own,
//! and UVM resolves them through the RM client of the `rmCtrlFd` passed with them, which RM checks
//! against that fd. Escapes this ABI does not decode are forwarded unchanged too: the driver
//! rejects what it does not know with `-EINVAL`, exactly as without the forwarder.

use super::driver::{NvDriver, EFAULT, EINVAL};
use super::sanitize;
use core::mem::{offset_of, size_of};
use rm_abi::class::{self, class_info, AllocParams};
use rm_abi::ctrl::NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS;
use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlXfer;
use rm_abi::ioctl::{IoctlRequest, RMAPI_PARAM_COPY_MAX_PARAMS_SIZE};
use rm_abi::nvos::{self, Nvos30Parameters, Nvos54Parameters, NVOS64_FLAGS_FINN_SERIALIZED};
use rm_abi::{read_struct, Handle, NvStatus};
use rm_core::{Errno, GuestMemory, IoctlFrame};
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use zerocopy::IntoBytes;

/// What kind of NVIDIA device file an fd is open on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostNode {
    /// `/dev/nvidiactl`.
    Ctl,
    /// `/dev/nvidiaN`.
    Device(u32),
    /// `/dev/nvidia-uvm` or `/dev/nvidia-uvm-tools`.
    Uvm,
    /// Another `/dev/nvidia*` file (modeset, caps, nvswitch): forwarded unchanged.
    Other,
}

impl HostNode {
    /// Classifies a path; `None` for anything that is not an NVIDIA device file.
    pub fn from_path(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/dev/nvidia")?;
        Some(match rest {
            "ctl" => HostNode::Ctl,
            "-uvm" | "-uvm-tools" => HostNode::Uvm,
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => match n.parse() {
                Ok(minor) => HostNode::Device(minor),
                Err(_) => HostNode::Other,
            },
            _ => HostNode::Other,
        })
    }

    /// Whether RM escapes arrive on this node (and are decoded).
    pub fn is_rm(self) -> bool {
        matches!(self, HostNode::Ctl | HostNode::Device(_))
    }
}

/// An object the forwarder keeps track of, for the gating daemon and for cleanup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tracked {
    Device,
    Subdevice,
    ChannelGroup { engine: u32 },
    Channel,
}

#[derive(Debug, Clone, Copy)]
struct Obj {
    parent: Handle,
    kind: Tracked,
}

#[derive(Debug, Default)]
struct ClientState {
    /// The ctl fd the client was allocated on (RM frees the client when it is closed).
    ctl_fd: RawFd,
    objects: HashMap<Handle, Obj>,
}

impl ClientState {
    /// Removes `h` and everything tracked below it; whether a channel went away.
    fn remove_subtree(&mut self, h: Handle) -> bool {
        let mut gone = vec![h];
        let mut channel_removed = false;
        while let Some(x) = gone.pop() {
            if let Some(o) = self.objects.remove(&x) {
                channel_removed |= o.kind == Tracked::Channel;
            }
            gone.extend(
                self.objects
                    .iter()
                    .filter(|(_, o)| o.parent == x)
                    .map(|(&k, _)| k),
            );
        }
        channel_removed
    }

    fn has_channels(&self) -> bool {
        self.objects.values().any(|o| o.kind == Tracked::Channel)
    }
}

#[derive(Debug, Default)]
struct State {
    clients: HashMap<Handle, ClientState>,
    /// fd -> (client, memory) of the mapping context `RM_MAP_MEMORY` attached to it.
    mmap: HashMap<RawFd, (Handle, Handle)>,
}

/// Per-escape counters.
#[derive(Debug)]
pub struct Stats {
    by_nr: [AtomicU64; 256],
    uvm: AtomicU64,
    refused: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            by_nr: std::array::from_fn(|_| AtomicU64::new(0)),
            uvm: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// RM and frontend escapes by number (`_IOC_NR`, XFER unwrapped), nonzero entries only.
    pub escapes: Vec<(u8, u64)>,
    /// ioctls on `/dev/nvidia-uvm` and other non-RM NVIDIA files.
    pub uvm: u64,
    /// Escapes refused by the forwarder (answered without reaching the driver).
    pub refused: u64,
}

/// A channel of the tenant: the pair `FIFO_DISABLE_CHANNELS` names it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelRef {
    /// The driver's client handle.
    pub client: Handle,
    /// The channel handle.
    pub channel: Handle,
}

/// The forwarder for one tenant process.
pub struct Forwarder<D: NvDriver> {
    driver: D,
    state: Mutex<State>,
    stats: Stats,
    notify: Mutex<Option<Sender<()>>>,
}

impl<D: NvDriver> std::fmt::Debug for Forwarder<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

/// How an escape's own struct names its client(s) and where its status goes.
struct Layout {
    clients: &'static [usize],
    status: usize,
}

const fn layout(clients: &'static [usize], status: usize) -> Layout {
    Layout { clients, status }
}

/// Client fields and status offset of the RM escapes checked by ownership only.
fn simple_layout(esc: Escape) -> Option<Layout> {
    use nvos::*;
    use rm_abi::frontend::{NvIoctlAllocOsEvent, NvIoctlFreeOsEvent};
    Some(match esc {
        Escape::RM_ALLOC_MEMORY => layout(&[0], offset_of!(Nvos02Parameters, status)),
        Escape::RM_ALLOC_OBJECT => layout(&[0], offset_of!(Nvos05Parameters, status)),
        Escape::RM_DUP_OBJECT => layout(
            &[0, offset_of!(Nvos55Parameters, hClientSrc)],
            offset_of!(Nvos55Parameters, status),
        ),
        Escape::RM_SHARE => layout(&[0], offset_of!(Nvos57Parameters, status)),
        Escape::RM_VID_HEAP_CONTROL => layout(&[0], offset_of!(Nvos32Parameters, status)),
        Escape::RM_UNMAP_MEMORY => layout(&[0], offset_of!(Nvos34Parameters, status)),
        Escape::RM_ALLOC_CONTEXT_DMA2 => layout(&[0], offset_of!(Nvos39Parameters, status)),
        Escape::RM_MAP_MEMORY_DMA => layout(&[0], offset_of!(Nvos46Parameters, status)),
        Escape::RM_UNMAP_MEMORY_DMA => layout(&[0], offset_of!(Nvos47Parameters, status)),
        Escape::RM_BIND_CONTEXT_DMA => layout(&[0], offset_of!(Nvos49Parameters, status)),
        Escape::RM_UPDATE_DEVICE_MAPPING_INFO => layout(&[0], offset_of!(Nvos56Parameters, status)),
        Escape::ALLOC_OS_EVENT => layout(&[0], offset_of!(NvIoctlAllocOsEvent, Status)),
        Escape::FREE_OS_EVENT => layout(&[0], offset_of!(NvIoctlFreeOsEvent, Status)),
        _ => return None,
    })
}

fn u32_at(buf: &[u8], off: usize) -> u32 {
    buf.get(off..off + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn set_u32(buf: &mut [u8], off: usize, v: u32) {
    if let Some(b) = buf.get_mut(off..off + 4) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

fn u64_at(buf: &[u8], off: usize) -> u64 {
    buf.get(off..off + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

fn set_u64(buf: &mut [u8], off: usize, v: u64) {
    if let Some(b) = buf.get_mut(off..off + 8) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// An embedded buffer the forwarder copied in and points the driver at.
struct Bounce {
    /// Offset of the pointer field in the escape struct.
    field: usize,
    /// The tenant's pointer.
    orig: u64,
    data: Vec<u8>,
}

impl Bounce {
    /// Copies `len` bytes at `orig` and points the struct's field at the copy.
    fn new(
        buf: &mut [u8],
        field: usize,
        orig: u64,
        len: usize,
        mem: &dyn GuestMemory,
    ) -> Option<Self> {
        let mut data = vec![0u8; len];
        mem.read(orig, &mut data).ok()?;
        let b = Self { field, orig, data };
        set_u64(buf, field, b.data.as_ptr() as u64);
        Some(b)
    }

    /// Puts the tenant's pointer back and copies the driver's output to the tenant.
    fn finish(self, buf: &mut [u8], mem: &mut dyn GuestMemory) -> Result<(), ()> {
        set_u64(buf, self.field, self.orig);
        mem.write(self.orig, &self.data).map_err(|_| ())
    }
}

impl<D: NvDriver> Forwarder<D> {
    /// A forwarder issuing on `driver`, with no clients yet.
    pub fn new(driver: D) -> Self {
        Self {
            driver,
            state: Mutex::new(State::default()),
            stats: Stats::default(),
            notify: Mutex::new(None),
        }
    }

    /// Sends `()` on `tx` whenever the set of the tenant's channels changes.
    pub fn set_channel_listener(&self, tx: Sender<()>) {
        *self.notify.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn owns(&self, client: Handle) -> bool {
        self.state().clients.contains_key(&client)
    }

    fn channels_changed(&self) {
        if let Some(tx) = self
            .notify
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            let _ = tx.send(());
        }
    }

    /// Runs one ioctl of the tenant on `fd` (open on `node`); `arg` is the address of its argument
    /// in `mem`. Returns the ioctl's return value or an errno, as the driver would. RM escapes run
    /// in the driver's [`IoctlFrame`]; the driver is given the forwarder's copy of the argument
    /// (inside a fresh `nv_ioctl_xfer_t` when the tenant used XFER).
    pub fn ioctl(
        &self,
        fd: RawFd,
        node: HostNode,
        request: u64,
        arg: u64,
        mem: &mut dyn GuestMemory,
    ) -> Result<i32, i32> {
        if !node.is_rm() {
            self.stats.uvm.fetch_add(1, Ordering::Relaxed);
            // SAFETY: not decoded; the tenant's own argument goes to the driver as the tenant
            // passed it, exactly as without the forwarder.
            return unsafe { self.driver.ioctl(fd, request, arg as *mut u8) };
        }
        let frame = IoctlFrame::locate(request as u32, arg, mem).map_err(Errno::code)?;
        // The forwarder counts by and forwards byte-sized escape numbers: an unwrapped command
        // above 255, or a nested XFER, is refused before anything is copied in.
        let nr = u8::try_from(frame.nr).map_err(|_| EINVAL)?;
        if nr == Escape::IOCTL_XFER_CMD as u8 {
            return Err(EINVAL);
        }
        frame.run(mem, Errno::code, |buf, mem| {
            self.escape(fd, node, nr, buf, mem, |b| {
                if !frame.xfer {
                    // SAFETY: `b` is the forwarder's copy of exactly `_IOC_SIZE(request)` bytes.
                    return unsafe { self.driver.ioctl(fd, request, b.as_mut_ptr()) };
                }
                let mut ours = NvIoctlXfer {
                    cmd: frame.nr,
                    size: frame.size,
                    ptr: b.as_mut_ptr() as u64,
                };
                // SAFETY: `ours` points at the forwarder's copy of exactly `frame.size` bytes.
                unsafe {
                    self.driver
                        .ioctl(fd, request, ours.as_mut_bytes().as_mut_ptr())
                }
            })
        })
    }

    /// Answers an escape without the driver: `status` in the struct, ioctl return 0.
    fn refuse(&self, buf: &mut [u8], status_off: usize, status: NvStatus) -> Result<i32, i32> {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("escape refused with {status}");
        set_u32(buf, status_off, status.0);
        Ok(0)
    }

    fn escape(
        &self,
        fd: RawFd,
        node: HostNode,
        nr: u8,
        buf: &mut [u8],
        mem: &mut dyn GuestMemory,
        issue: impl FnOnce(&mut [u8]) -> Result<i32, i32>,
    ) -> Result<i32, i32> {
        self.stats.by_nr[nr as usize].fetch_add(1, Ordering::Relaxed);
        let Some(esc) = Escape::from_nr(nr) else {
            return issue(buf);
        };
        if !esc.arg_size().accepts(buf.len() as u32) {
            return Err(EINVAL);
        }
        match esc {
            Escape::RM_CONTROL => self.rm_control(buf, mem, issue),
            Escape::RM_ALLOC => self.rm_alloc(fd, node, buf, mem, issue),
            Escape::RM_FREE => self.rm_free(buf, issue),
            Escape::RM_MAP_MEMORY => self.rm_map_memory(buf, issue),
            Escape::RM_IDLE_CHANNELS => {
                let p: Nvos30Parameters = read_struct(buf).ok_or(EINVAL)?;
                let st = offset_of!(Nvos30Parameters, status);
                if !self.owns(p.hClient) {
                    self.refuse(buf, st, NvStatus::ERR_INVALID_CLIENT)
                } else if p.numChannels != 0 {
                    // The lists sit behind three pointers and would name clients unchecked.
                    self.refuse(buf, st, NvStatus::ERR_NOT_SUPPORTED)
                } else {
                    issue(buf)
                }
            }
            _ => match simple_layout(esc) {
                Some(l) => match l.clients.iter().find(|&&o| !self.owns(u32_at(buf, o))) {
                    Some(_) => self.refuse(buf, l.status, NvStatus::ERR_INVALID_CLIENT),
                    None => issue(buf),
                },
                None => issue(buf),
            },
        }
    }

    fn rm_control(
        &self,
        buf: &mut [u8],
        mem: &mut dyn GuestMemory,
        issue: impl FnOnce(&mut [u8]) -> Result<i32, i32>,
    ) -> Result<i32, i32> {
        let p: Nvos54Parameters = read_struct(buf).ok_or(EINVAL)?;
        let st = offset_of!(Nvos54Parameters, status);
        if !self.owns(p.hClient) {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_CLIENT);
        }
        if (p.params == 0) != (p.paramsSize == 0) || p.paramsSize > RMAPI_PARAM_COPY_MAX_PARAMS_SIZE
        {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_ARGUMENT);
        }
        if p.paramsSize == 0 {
            return issue(buf);
        }
        let field = offset_of!(Nvos54Parameters, params);
        let Some(bounce) = Bounce::new(buf, field, p.params, p.paramsSize as usize, mem) else {
            set_u64(buf, field, p.params);
            return self.refuse(buf, st, NvStatus::ERR_INVALID_ADDRESS);
        };
        if p.cmd == NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS {
            let state = self.state();
            let check =
                sanitize::check_disable_channels(&bounce.data, |c| state.clients.contains_key(&c));
            drop(state);
            if let Err(s) = check {
                set_u64(buf, field, p.params);
                return self.refuse(buf, st, s);
            }
        }
        let r = issue(buf);
        if r != Err(EFAULT) && bounce.finish(buf, mem).is_err() {
            set_u32(buf, st, NvStatus::ERR_INVALID_ADDRESS.0);
        } else if r == Err(EFAULT) {
            set_u64(buf, field, p.params);
        }
        r
    }

    fn rm_alloc(
        &self,
        fd: RawFd,
        node: HostNode,
        buf: &mut [u8],
        mem: &mut dyn GuestMemory,
        issue: impl FnOnce(&mut [u8]) -> Result<i32, i32>,
    ) -> Result<i32, i32> {
        let wide = buf.len() == size_of::<nvos::Nvos64Parameters>();
        let st = if wide {
            offset_of!(nvos::Nvos64Parameters, status)
        } else {
            offset_of!(nvos::Nvos21Parameters, status)
        };
        let (h_root, h_parent, class_id) = (u32_at(buf, 0), u32_at(buf, 4), u32_at(buf, 12));
        let is_root = matches!(
            class_id,
            class::NV01_ROOT | class::NV01_ROOT_NON_PRIV | class::NV01_ROOT_CLIENT
        );
        if !is_root && !self.owns(h_root) {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_CLIENT);
        }
        let serialized = wide
            && u32_at(buf, offset_of!(nvos::Nvos64Parameters, flags))
                & NVOS64_FLAGS_FINN_SERIALIZED
                != 0;
        let needs_sanitising =
            class_id == class::KEPLER_CHANNEL_GROUP_A || sanitize::is_channel_class(class_id);
        if needs_sanitising
            && (serialized
                || !sanitize::is_known_channel_class(class_id)
                    && class_id != class::KEPLER_CHANNEL_GROUP_A)
        {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_CLASS);
        }
        let field = offset_of!(nvos::Nvos21Parameters, pAllocParms);
        let p_alloc = u64_at(buf, field);
        let size = match class_info(class_id).map(|c| c.params) {
            Some(AllocParams::Optional(n) | AllocParams::Required(n)) if !serialized => {
                Some(n as usize)
            }
            _ => None,
        };
        let mut bounce = None;
        if let (Some(n), true) = (size, p_alloc != 0) {
            let Some(mut b) = Bounce::new(buf, field, p_alloc, n, mem) else {
                set_u64(buf, field, p_alloc);
                return self.refuse(buf, st, NvStatus::ERR_INVALID_ADDRESS);
            };
            if let Err(s) = sanitize::sanitize_alloc(class_id, &mut b.data) {
                set_u64(buf, field, p_alloc);
                return self.refuse(buf, st, s);
            }
            bounce = Some(b);
        } else if needs_sanitising {
            // TSGs and channels require their params; RM refuses a NULL pointer too.
            return self.refuse(buf, st, NvStatus::ERR_INVALID_ARGUMENT);
        }
        let r = issue(buf);
        let engine = bounce.as_ref().and_then(|b| sanitize::tsg_engine(&b.data));
        if let Some(b) = bounce {
            if r == Err(EFAULT) {
                set_u64(buf, field, p_alloc);
            } else if b.finish(buf, mem).is_err() {
                set_u32(buf, st, NvStatus::ERR_INVALID_ADDRESS.0);
            }
        }
        if r.is_ok() && u32_at(buf, st) == 0 {
            let h_new = u32_at(buf, 8);
            let kind = match class_id {
                _ if is_root => None,
                class::NV01_DEVICE_0 => Some(Tracked::Device),
                class::NV20_SUBDEVICE_0 => Some(Tracked::Subdevice),
                class::KEPLER_CHANNEL_GROUP_A => Some(Tracked::ChannelGroup {
                    engine: engine.unwrap_or(0),
                }),
                c if sanitize::is_channel_class(c) => Some(Tracked::Channel),
                _ => None,
            };
            let mut state = self.state();
            if is_root {
                let ctl_fd = if node == HostNode::Ctl { fd } else { -1 };
                state.clients.insert(
                    h_new,
                    ClientState {
                        ctl_fd,
                        objects: HashMap::new(),
                    },
                );
            } else if let (Some(kind), Some(c)) = (kind, state.clients.get_mut(&h_root)) {
                c.objects.insert(
                    h_new,
                    Obj {
                        parent: h_parent,
                        kind,
                    },
                );
            }
            drop(state);
            if kind == Some(Tracked::Channel) {
                self.channels_changed();
            }
        }
        r
    }

    fn rm_free(
        &self,
        buf: &mut [u8],
        issue: impl FnOnce(&mut [u8]) -> Result<i32, i32>,
    ) -> Result<i32, i32> {
        let p: nvos::Nvos00Parameters = read_struct(buf).ok_or(EINVAL)?;
        let st = offset_of!(nvos::Nvos00Parameters, status);
        if !self.owns(p.hRoot) {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_CLIENT);
        }
        let r = issue(buf);
        if r.is_ok() && u32_at(buf, st) == 0 {
            let mut state = self.state();
            let changed = if p.hObjectOld == p.hRoot {
                state
                    .clients
                    .remove(&p.hRoot)
                    .is_some_and(|c| c.has_channels())
            } else {
                state
                    .clients
                    .get_mut(&p.hRoot)
                    .is_some_and(|c| c.remove_subtree(p.hObjectOld))
            };
            drop(state);
            if changed {
                self.channels_changed();
            }
        }
        r
    }

    fn rm_map_memory(
        &self,
        buf: &mut [u8],
        issue: impl FnOnce(&mut [u8]) -> Result<i32, i32>,
    ) -> Result<i32, i32> {
        let p: nvos::Nvos33ParametersWithFd = read_struct(buf).ok_or(EINVAL)?;
        let st = offset_of!(nvos::Nvos33Parameters, status);
        if !self.owns(p.params.hClient) {
            return self.refuse(buf, st, NvStatus::ERR_INVALID_CLIENT);
        }
        let r = issue(buf);
        if r.is_ok() && u32_at(buf, st) == 0 {
            self.state()
                .mmap
                .insert(p.fd, (p.params.hClient, p.params.hMemory));
        }
        r
    }

    /// The tenant closed `fd`: RM frees the clients allocated on it and its mapping context goes.
    pub fn on_close(&self, fd: RawFd) {
        let mut state = self.state();
        state.mmap.remove(&fd);
        let before = state.clients.len();
        let had_channels = state
            .clients
            .values()
            .any(|c| c.ctl_fd == fd && c.has_channels());
        state.clients.retain(|_, c| c.ctl_fd != fd);
        let changed = had_channels && state.clients.len() != before;
        drop(state);
        if changed {
            self.channels_changed();
        }
    }

    /// Whether `fd` carries a mapping context from `RM_MAP_MEMORY` (client, memory).
    pub fn mmap_context(&self, fd: RawFd) -> Option<(Handle, Handle)> {
        self.state().mmap.get(&fd).copied()
    }

    /// Whether the tenant allocated client `h`.
    pub fn owns_client(&self, h: Handle) -> bool {
        self.owns(h)
    }

    /// Every channel the tenant has now, sorted.
    pub fn channels(&self) -> Vec<ChannelRef> {
        let state = self.state();
        let mut v: Vec<ChannelRef> = state
            .clients
            .iter()
            .flat_map(|(&client, c)| {
                c.objects
                    .iter()
                    .filter(|(_, o)| o.kind == Tracked::Channel)
                    .map(move |(&channel, _)| ChannelRef { client, channel })
            })
            .collect();
        v.sort();
        v
    }

    /// The clients with channels and the `/dev/nvidiactl` file each was allocated on, sorted.
    pub fn client_files(&self) -> Vec<(Handle, RawFd)> {
        let state = self.state();
        let mut v: Vec<_> = state
            .clients
            .iter()
            .filter(|(_, c)| c.ctl_fd >= 0 && c.has_channels())
            .map(|(&client, c)| (client, c.ctl_fd))
            .collect();
        v.sort();
        v
    }

    /// The tenant's channel groups with their engine types, sorted: `(client, tsg, engine)`.
    pub fn channel_groups(&self) -> Vec<(Handle, Handle, u32)> {
        let state = self.state();
        let mut v: Vec<_> = state
            .clients
            .iter()
            .flat_map(|(&client, c)| {
                c.objects.iter().filter_map(move |(&h, o)| match o.kind {
                    Tracked::ChannelGroup { engine } => Some((client, h, engine)),
                    _ => None,
                })
            })
            .collect();
        v.sort();
        v
    }

    /// Re-enables all of the tenant's channels with its own clients (the way back when the gating
    /// daemon is gone). Returns how many channels were enabled.
    pub fn enable_own_channels(&self) -> usize {
        let plan: Vec<(RawFd, Handle, Handle, Vec<Handle>)> = {
            let state = self.state();
            state
                .clients
                .iter()
                .filter_map(|(&client, c)| {
                    let sub = c
                        .objects
                        .iter()
                        .find(|(_, o)| o.kind == Tracked::Subdevice)
                        .map(|(&h, _)| h)?;
                    let chans: Vec<Handle> = c
                        .objects
                        .iter()
                        .filter(|(_, o)| o.kind == Tracked::Channel)
                        .map(|(&h, _)| h)
                        .collect();
                    (c.ctl_fd >= 0 && !chans.is_empty()).then_some((c.ctl_fd, client, sub, chans))
                })
                .collect()
        };
        let mut enabled = 0;
        for (fd, client, sub, chans) in plan {
            for chunk in chans.chunks(rm_abi::ctrl::NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES) {
                let pairs: Vec<(Handle, Handle)> = chunk.iter().map(|&c| (client, c)).collect();
                let mut params = sanitize::disable_channels_params(&pairs, false);
                if control(
                    &self.driver,
                    fd,
                    client,
                    sub,
                    NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
                    params.as_mut_bytes(),
                )
                .is_ok()
                {
                    enabled += chunk.len();
                }
            }
        }
        enabled
    }

    /// The counters so far.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            escapes: (0..=255u8)
                .filter_map(|nr| {
                    let n = self.stats.by_nr[nr as usize].load(Ordering::Relaxed);
                    (n > 0).then_some((nr, n))
                })
                .collect(),
            uvm: self.stats.uvm.load(Ordering::Relaxed),
            refused: self.stats.refused.load(Ordering::Relaxed),
        }
    }

    /// The driver.
    pub fn driver(&self) -> &D {
        &self.driver
    }
}

/// Issues one `RM_CONTROL` on `fd` with a params buffer owned by the caller.
pub fn control<D: NvDriver + ?Sized>(
    driver: &D,
    fd: RawFd,
    client: Handle,
    object: Handle,
    cmd: u32,
    params: &mut [u8],
) -> Result<(), ControlError> {
    let mut p = Nvos54Parameters {
        hClient: client,
        hObject: object,
        cmd,
        params: if params.is_empty() {
            0
        } else {
            params.as_mut_ptr() as u64
        },
        paramsSize: params.len() as u32,
        ..Default::default()
    };
    let request = IoctlRequest::encode(
        Escape::RM_CONTROL as u8,
        size_of::<Nvos54Parameters>() as u32,
    )
    .unwrap_or(0);
    // SAFETY: `p` is a complete NVOS54 struct and `params` outlives the call.
    unsafe { driver.ioctl(fd, u64::from(request), p.as_mut_bytes().as_mut_ptr()) }
        .map_err(ControlError::Errno)?;
    match NvStatus(p.status) {
        NvStatus::OK => Ok(()),
        s => Err(ControlError::Status(s)),
    }
}

/// A control issued by the forwarder or a host client that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The ioctl itself failed.
    #[error("ioctl failed with errno {0}")]
    Errno(i32),
    /// RM answered an error status.
    #[error("RM status {0}")]
    Status(NvStatus),
}
