//! One vGPU's namespace: its fds, clients, framebuffer quota and live work-submit tokens.

use super::fd::{FdId, FdTable};
use super::handles;
use super::objects::Client;
use crate::backend::Gfid;
use rm_abi::Handle;
use std::collections::BTreeMap;

/// How a vGPU is configured when it is created (from its mdev type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgpuConfig {
    /// Bytes of video memory the guest may allocate.
    pub fb_quota: u64,
    /// Bytes of system memory the guest may have the GPU allocate for it.
    pub sysmem_quota: u64,
    /// Name reported by `GPU_GET_NAME_STRING` (None: the GPU's own name).
    pub name: Option<String>,
    /// UUID reported by `GPU_GET_GID_INFO` (None: the GPU's own UUID).
    pub uuid: Option<[u8; 16]>,
    /// RM GPU id the guest sees (card info, attached ids).
    pub gpu_id: u32,
    /// PCI bus of the vGPU as the guest sees it.
    pub pci_bus: u8,
    /// PCI slot of the vGPU as the guest sees it.
    pub pci_slot: u8,
    /// Most RM objects the vGPU may hold at once, over all its clients (each costs the host
    /// memory whatever its class): past it an allocation gets `NV_ERR_INSUFFICIENT_RESOURCES`.
    pub max_objects: usize,
    /// Most channels the vGPU may hold at once: past it a channel allocation gets
    /// `NV_ERR_NO_FREE_FIFOS`, so one vGPU cannot take a runlist's every channel.
    pub max_channels: usize,
    /// Most host memory the backend may hold for the contents of this vGPU's memory objects
    /// (the sim's written pages): past it a write that needs more gets `NV_ERR_NO_MEMORY`.
    /// `u64::MAX`: only the GPU's own [`GpuInfo::host_memory_bytes`](crate::backend::GpuInfo) bounds it.
    pub host_memory_quota: u64,
}

/// [`VgpuConfig::max_objects`] by default.
pub const MAX_OBJECTS_PER_VGPU: usize = 1 << 16;
/// [`VgpuConfig::max_channels`] by default: a whole Hopper runlist's channel RAM.
pub const MAX_CHANNELS_PER_VGPU: usize = 2048;

impl VgpuConfig {
    /// A vGPU with `fb_quota` bytes of video memory (and as much system memory) at guest PCI
    /// 00:06.0 (gpu id 0x600, as on the H200 host).
    pub fn with_quota(fb_quota: u64) -> Self {
        Self {
            fb_quota,
            sysmem_quota: fb_quota,
            name: None,
            uuid: None,
            gpu_id: 0x600,
            pci_bus: 0,
            pci_slot: 6,
            max_objects: MAX_OBJECTS_PER_VGPU,
            max_channels: MAX_CHANNELS_PER_VGPU,
            host_memory_quota: u64::MAX,
        }
    }
}

/// Most clients one vGPU may hold.
pub const MAX_CLIENTS_PER_VGPU: usize = 1024;

/// A vGPU's state in the core.
#[derive(Debug)]
pub struct Vgpu {
    /// Its GFID.
    pub gfid: Gfid,
    /// Its configuration.
    pub config: VgpuConfig,
    /// Open guest fds.
    pub fds: FdTable,
    /// Clients by guest handle.
    pub clients: BTreeMap<Handle, Client>,
    /// Video memory allocated so far.
    pub fb_used: u64,
    /// System memory allocated so far.
    pub sysmem_used: u64,
    /// Live work-submit tokens -> (guest client, channel).
    pub tokens: BTreeMap<u32, (Handle, Handle)>,
    /// `NV_ESC_SYS_PARAMS` memory block size (set once).
    pub memblock_size: u64,
    /// The `RM_IDLE_CHANNELS` call being retried, if any (see [`IdleWait`]).
    pub idle_wait: Option<IdleWait>,
    next_client_index: u32,
}

/// An `RM_IDLE_CHANNELS` call that the backend answered "not yet" and that is being made
/// again: the call it is (so a different call starts its own wait) and when it times out in
/// host time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleWait {
    /// The call's file, client, channel list and timeout.
    pub call: (FdId, Handle, Vec<Handle>, u32),
    /// When the call answers `NV_ERR_TIMEOUT`.
    pub deadline: std::time::Instant,
}

impl Vgpu {
    /// RM objects held over all clients.
    pub fn objects_held(&self) -> usize {
        self.clients.values().map(Client::len).sum()
    }

    /// Channels held over all clients.
    pub fn channels_held(&self) -> usize {
        self.clients.values().map(Client::channels).sum()
    }

    /// Whether one more object fits under [`VgpuConfig::max_objects`].
    pub fn has_room(&self) -> bool {
        self.objects_held() < self.config.max_objects
    }

    /// A fresh vGPU.
    pub fn new(gfid: Gfid, config: VgpuConfig) -> Self {
        Self {
            gfid,
            config,
            fds: FdTable::default(),
            clients: BTreeMap::new(),
            fb_used: 0,
            sysmem_used: 0,
            tokens: BTreeMap::new(),
            idle_wait: None,
            memblock_size: 0,
            next_client_index: 1,
        }
    }

    /// Picks the guest and host handles for a new client; `requested` (nonzero) is re-encoded
    /// into the guest range as RM re-encodes user-requested client handles. `None` when the
    /// handle is taken.
    pub fn client_handles(&mut self, requested: Handle) -> Option<(Handle, Handle)> {
        let index = if requested != 0 {
            handles::client_index(requested)
        } else {
            let mut i = self.next_client_index;
            for _ in 0..handles::CLIENT_RANGE {
                if i != 0 && !self.clients.contains_key(&handles::guest_client_handle(i)) {
                    break;
                }
                i = (i + 1) % handles::CLIENT_RANGE;
            }
            self.next_client_index = (i + 1) % handles::CLIENT_RANGE;
            i
        };
        let guest = handles::guest_client_handle(index);
        if self.clients.contains_key(&guest) {
            return None;
        }
        Some((guest, handles::host_client_handle(self.gfid, index)))
    }

    /// The fd whose client context `fd` uses: its registered ctl fd, or itself.
    pub fn client_context(&self, fd: FdId) -> FdId {
        self.fds
            .get(fd)
            .and_then(|s| s.registered_ctl)
            .unwrap_or(fd)
    }

    /// The client `h`, if the call through `fd` may use it (RM's `clientOSInfo` check: a client
    /// is usable only through the fd that allocated it or device fds registered to that fd).
    pub fn client_for(&self, fd: FdId, h: Handle) -> Option<&Client> {
        let ctx = self.client_context(fd);
        self.clients.get(&h).filter(|c| c.fd == ctx)
    }

    /// Mutable form of [`Vgpu::client_for`].
    pub fn client_for_mut(&mut self, fd: FdId, h: Handle) -> Option<&mut Client> {
        let ctx = self.client_context(fd);
        self.clients.get_mut(&h).filter(|c| c.fd == ctx)
    }

    /// Objects held, clients included.
    pub fn object_count(&self) -> usize {
        self.clients.values().map(Client::len).sum()
    }
}
