//! Which fds are NVIDIA device files: found from `/proc/self/fd/N` on an fd's first ioctl and
//! cached in a lock-free table until the fd is closed or replaced.

use rm_nvidia::HostNode;
use std::sync::atomic::{AtomicU32, Ordering};

/// fds below this are cached; higher fds are looked up on every ioctl.
const CACHED: usize = 4096;

const UNKNOWN: u32 = 0;
const NOT_NVIDIA: u32 = 1;
const CTL: u32 = 2;
const UVM: u32 = 3;
const OTHER: u32 = 4;
const DEVICE: u32 = 0x1_0000;

/// The fd kind cache.
pub struct FdTable {
    kinds: [AtomicU32; CACHED],
}

fn encode(node: Option<HostNode>) -> u32 {
    match node {
        None => NOT_NVIDIA,
        Some(HostNode::Ctl) => CTL,
        Some(HostNode::Uvm) => UVM,
        Some(HostNode::Other) => OTHER,
        Some(HostNode::Device(m)) => DEVICE | (m & 0xFFFF),
    }
}

fn decode(v: u32) -> Option<HostNode> {
    match v {
        CTL => Some(HostNode::Ctl),
        UVM => Some(HostNode::Uvm),
        OTHER => Some(HostNode::Other),
        v if v & DEVICE != 0 => Some(HostNode::Device(v & 0xFFFF)),
        _ => None,
    }
}

/// What `fd` is open on, from `/proc/self/fd`.
pub fn lookup(fd: i32) -> Option<HostNode> {
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    HostNode::from_path(target.to_str()?)
}

impl FdTable {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            kinds: [const { AtomicU32::new(UNKNOWN) }; CACHED],
        }
    }

    /// The NVIDIA node `fd` is open on, if any.
    pub fn node(&self, fd: i32) -> Option<HostNode> {
        let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.kinds.get(i)) else {
            return if fd >= 0 { lookup(fd) } else { None };
        };
        match slot.load(Ordering::Relaxed) {
            UNKNOWN => {
                let node = lookup(fd);
                slot.store(encode(node), Ordering::Relaxed);
                node
            }
            v => decode(v),
        }
    }

    /// Drops what is cached for `fd`; whether it was an NVIDIA file.
    pub fn forget(&self, fd: i32) -> bool {
        match usize::try_from(fd).ok().and_then(|i| self.kinds.get(i)) {
            Some(slot) => decode(slot.swap(UNKNOWN, Ordering::Relaxed)).is_some(),
            None => fd >= 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_forget_resets() {
        for n in [
            None,
            Some(HostNode::Ctl),
            Some(HostNode::Uvm),
            Some(HostNode::Other),
            Some(HostNode::Device(7)),
        ] {
            assert_eq!(decode(encode(n)), n);
        }
        let t = FdTable::new();
        assert_eq!(t.node(0), lookup(0));
        assert!(!t.forget(0) || lookup(0).is_some());
        assert_eq!(t.node(-1), None);
    }
}
