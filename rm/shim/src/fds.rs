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

/// `_IOC_TYPE` of the NVIDIA RM ioctls (`NV_IOCTL_MAGIC`, `'F'`).
const NV_IOCTL_TYPE: u64 = b'F' as u64;

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

    /// The NVIDIA node `fd` is open on, if any, for an ioctl `request` on it.
    pub fn node(&self, fd: i32, request: u64) -> Option<HostNode> {
        self.node_with(fd, request, lookup)
    }

    /// [`FdTable::node`] with the `/proc` lookup given.
    ///
    /// An fd cached as "not NVIDIA" is looked up again when it receives an ioctl of the NVIDIA
    /// type (`'F'`): libc closes some fds internally (`fclose`, `closedir`, ...) without passing
    /// through the interposed `close`, and the number may since have been reused for an NVIDIA
    /// device, whose ioctls must not bypass the forwarder.
    fn node_with(
        &self,
        fd: i32,
        request: u64,
        lookup: impl Fn(i32) -> Option<HostNode>,
    ) -> Option<HostNode> {
        let Some(slot) = usize::try_from(fd).ok().and_then(|i| self.kinds.get(i)) else {
            return if fd >= 0 { lookup(fd) } else { None };
        };
        match slot.load(Ordering::Relaxed) {
            NOT_NVIDIA if (request >> 8) & 0xFF != NV_IOCTL_TYPE => None,
            UNKNOWN | NOT_NVIDIA => {
                let node = lookup(fd);
                slot.store(encode(node), Ordering::Relaxed);
                node
            }
            v => decode(v),
        }
    }

    /// The cached NVIDIA fds in `first..=last`, each forgotten (for `close_range`/`closefrom`).
    pub fn forget_range(&self, first: u32, last: u32) -> Vec<i32> {
        let end = (last as usize).min(CACHED - 1);
        (first as usize..=end)
            .filter(|&i| decode(self.kinds[i].swap(UNKNOWN, Ordering::Relaxed)).is_some())
            .map(|i| i as i32)
            .collect()
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
        assert_eq!(t.node(0, 0x5401), lookup(0));
        assert!(!t.forget(0) || lookup(0).is_some());
        assert_eq!(t.node(-1, 0), None);
    }

    #[test]
    fn a_number_reused_behind_libcs_back_is_seen_on_its_first_nvidia_ioctl() {
        let t = FdTable::new();
        let ctl = std::cell::Cell::new(false);
        let look = |_| ctl.get().then_some(HostNode::Ctl);
        // fd 9 is a terminal: cached as not NVIDIA.
        assert_eq!(t.node_with(9, 0x5401, look), None);
        // Closed inside libc and reopened on /dev/nvidiactl: other ioctls keep the cache...
        ctl.set(true);
        assert_eq!(t.node_with(9, 0x5401, look), None);
        // ...but an RM ioctl (0xC020462A, type 'F') looks again and finds the device.
        assert_eq!(t.node_with(9, 0xC020_462A, look), Some(HostNode::Ctl));
        assert_eq!(t.node_with(9, 0x5401, look), Some(HostNode::Ctl));
    }

    #[test]
    fn close_range_forgets_the_nvidia_fds_inside_it_only() {
        let t = FdTable::new();
        for fd in [3, 5, 7] {
            t.node_with(fd, 0xC020_462A, |_| Some(HostNode::Ctl));
        }
        t.node_with(4, 0x5401, |_| None);
        assert_eq!(t.forget_range(4, 6), vec![5]);
        assert_eq!(t.forget_range(0, u32::MAX), vec![3, 7]);
        assert!(t.forget_range(0, u32::MAX).is_empty());
    }
}
