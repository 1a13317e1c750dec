//! Guest file descriptors: what each open `/dev/nvidiactl` or `/dev/nvidiaN` of a guest holds.

use rm_abi::Handle;
use std::collections::BTreeMap;

/// A guest fd number, as the guest names it (allocated by the core per GFID).
pub type FdId = i32;

/// Which device node an fd was opened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// `/dev/nvidiactl`.
    Ctl,
    /// `/dev/nvidiaN` (N = minor).
    Device(u32),
}

/// An OS event registered with `NV_ESC_ALLOC_OS_EVENT` (guest handles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OsEvent {
    /// Client (guest handle).
    pub client: Handle,
    /// Device (guest handle).
    pub device: Handle,
    /// fd the event signals.
    pub fd: u32,
}

/// The CPU mapping an `RM_MAP_MEMORY` attached to this fd (one per fd, as `nvidia_mmap` wants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmapContext {
    /// Client (guest handle).
    pub client: Handle,
    /// Memory or usermode object (guest handle).
    pub memory: Handle,
    /// Offset of the mapping in the object.
    pub offset: u64,
    /// Length.
    pub length: u64,
    /// Cookie returned in `pLinearAddress`.
    pub cookie: u64,
}

/// The state of one guest fd.
#[derive(Debug, Clone)]
pub struct FdState {
    /// Device node.
    pub node: Node,
    /// GPU ids attached with `NV_ESC_ATTACH_GPUS_TO_FD` (allowed once).
    pub attached_gpus: Option<Vec<u32>>,
    /// The ctl fd this device fd was registered with (`NV_ESC_REGISTER_FD`, once).
    pub registered_ctl: Option<FdId>,
    /// OS events registered on this fd.
    pub os_events: Vec<OsEvent>,
    /// Mapping context, if any.
    pub mmap: Option<MmapContext>,
}

impl FdState {
    /// A fresh fd on `node`.
    pub fn new(node: Node) -> Self {
        Self {
            node,
            attached_gpus: None,
            registered_ctl: None,
            os_events: Vec::new(),
            mmap: None,
        }
    }
}

/// A GFID's open fds.
#[derive(Debug, Default)]
pub struct FdTable {
    fds: BTreeMap<FdId, FdState>,
    next: FdId,
}

/// How many fds one guest may hold open.
pub const MAX_FDS_PER_GFID: usize = 4096;

impl FdTable {
    /// Opens a new fd; `None` when the guest already holds `MAX_FDS_PER_GFID`.
    pub fn open(&mut self, node: Node) -> Option<FdId> {
        if self.fds.len() >= MAX_FDS_PER_GFID {
            return None;
        }
        loop {
            self.next = if self.next >= i32::MAX - 1 {
                3
            } else {
                self.next.max(2) + 1
            };
            if !self.fds.contains_key(&self.next) {
                break;
            }
        }
        self.fds.insert(self.next, FdState::new(node));
        Some(self.next)
    }

    /// Closes `fd`, returning its state.
    pub fn close(&mut self, fd: FdId) -> Option<FdState> {
        self.fds.remove(&fd)
    }

    /// The state of `fd`.
    pub fn get(&self, fd: FdId) -> Option<&FdState> {
        self.fds.get(&fd)
    }

    /// The state of `fd`, mutable.
    pub fn get_mut(&mut self, fd: FdId) -> Option<&mut FdState> {
        self.fds.get_mut(&fd)
    }

    /// All fds.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&FdId, &mut FdState)> {
        self.fds.iter_mut()
    }

    /// Number of open fds.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether no fd is open.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Every open fd id.
    pub fn ids(&self) -> Vec<FdId> {
        self.fds.keys().copied().collect()
    }
}
