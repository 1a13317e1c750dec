//! The escape queue's split virtqueue, driver side, in the window: where the rings and request
//! slots live, publishing chains, and reaping used entries.

use super::protocol::{RequestHeader, ResponseFooter};
use super::window::{OutOfWindow, SharedWindow};
use virtio_bindings::virtio_ring;

/// Window layout the driver uses. Offset 0 is left unused (the available ring may not sit there).
pub mod layout {
    /// Descriptor table (16 bytes per entry).
    pub const DESC: u64 = 0x1000;
    /// Available ring.
    pub const AVAIL: u64 = 0x2000;
    /// Used ring.
    pub const USED: u64 = 0x3000;
    /// Request slots: 64 bytes each, header at +0, footer at +32.
    pub const SLOTS: u64 = 0x4000;
    /// Bytes per request slot.
    pub const SLOT_SIZE: u64 = 64;
    /// The doorbell mailbox (`vgpu::protocol::mailbox::SIZE` bytes, after the 64 slots).
    pub const MAILBOX: u64 = 0x5000;
    /// First byte the buffer allocator hands out.
    pub const HEAP: u64 = 0x1_0000;
}

/// Queue size the driver programs.
pub const QUEUE_SIZE: u16 = 64;

/// `VRING_DESC_F_NEXT`.
pub const F_NEXT: u16 = virtio_ring::VRING_DESC_F_NEXT as u16;
/// `VRING_DESC_F_WRITE`.
pub const F_WRITE: u16 = virtio_ring::VRING_DESC_F_WRITE as u16;
/// `VIRTQ_USED_F_NO_NOTIFY`: the device is polling the available ring; do not notify.
pub const USED_F_NO_NOTIFY: u16 = virtio_ring::VRING_USED_F_NO_NOTIFY as u16;

/// One used-ring element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsedElem {
    /// Head descriptor index of the chain.
    pub id: u32,
    /// Bytes the device wrote.
    pub len: u32,
}

/// Driver-side state of the split virtqueue.
#[derive(Debug)]
pub struct SplitQueue {
    avail_idx: u16,
    used_seen: u16,
}

impl SplitQueue {
    /// A fresh queue: zeroes the rings in `window`.
    pub fn create(window: &SharedWindow) -> Result<Self, OutOfWindow> {
        for at in [layout::DESC, layout::AVAIL, layout::USED] {
            window.zero(at, 0x1000)?;
        }
        Ok(Self {
            avail_idx: 0,
            used_seen: 0,
        })
    }

    /// Takes over a live queue another process of this guest set up with the same layout: the
    /// ring indices are read back from the window.
    pub fn adopt(window: &SharedWindow) -> Result<Self, OutOfWindow> {
        Ok(Self {
            avail_idx: window.load16(layout::AVAIL + 2)?,
            used_seen: window.load16(layout::USED + 2)?,
        })
    }

    /// Chains published and not yet reaped.
    pub fn in_flight(&self) -> u16 {
        self.avail_idx.wrapping_sub(self.used_seen)
    }

    /// Writes descriptor `i`.
    pub fn put_desc(
        &self,
        window: &SharedWindow,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), OutOfWindow> {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        window.write(layout::DESC + 16 * u64::from(i % QUEUE_SIZE), &d)
    }

    /// Makes the chain at `head` available (the caller notifies).
    pub fn publish(&mut self, window: &SharedWindow, head: u16) -> Result<(), OutOfWindow> {
        let slot = u64::from(self.avail_idx % QUEUE_SIZE);
        window.write(layout::AVAIL + 4 + 2 * slot, &head.to_le_bytes())?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        window.store16(layout::AVAIL + 2, self.avail_idx)
    }

    /// Overwrites the available index (hostile-guest tests only).
    pub fn force_avail_idx(&mut self, window: &SharedWindow, idx: u16) -> Result<(), OutOfWindow> {
        self.avail_idx = idx;
        window.store16(layout::AVAIL + 2, idx)
    }

    /// Whether the device wants a notify for what was just published: not while it polls
    /// (`VIRTQ_USED_F_NO_NOTIFY`). The fence orders the available-index store before the flag
    /// load; a device that stops polling re-checks the ring after clearing the flag.
    pub fn notify_wanted(&self, window: &SharedWindow) -> Result<bool, OutOfWindow> {
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(window.load16(layout::USED)? & USED_F_NO_NOTIFY == 0)
    }

    /// The next used element, if the device has produced one.
    pub fn take_used(&mut self, window: &SharedWindow) -> Result<Option<UsedElem>, OutOfWindow> {
        if window.load16(layout::USED + 2)? == self.used_seen {
            return Ok(None);
        }
        let slot = u64::from(self.used_seen % QUEUE_SIZE);
        let mut b = [0u8; 8];
        window.read(layout::USED + 4 + 8 * slot, &mut b)?;
        self.used_seen = self.used_seen.wrapping_add(1);
        Ok(Some(UsedElem {
            id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            len: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }))
    }

    /// The request slot for the next chain: (head descriptor, header offset, footer offset).
    pub fn next_slot(&self) -> (u16, u64, u64) {
        let slot = self.avail_idx % (QUEUE_SIZE / 2);
        let header = layout::SLOTS + layout::SLOT_SIZE * u64::from(slot);
        (2 * slot, header, header + RequestHeader::SIZE as u64)
    }

    /// Writes a well-formed two-descriptor request into the next slot and publishes it; returns
    /// (head, footer offset).
    pub fn post(
        &mut self,
        window: &SharedWindow,
        header: &RequestHeader,
    ) -> Result<(u16, u64), OutOfWindow> {
        let (head, h_at, f_at) = self.next_slot();
        window.write(h_at, &header.to_bytes())?;
        window.write(f_at, &[0xff; ResponseFooter::SIZE])?;
        self.put_desc(
            window,
            head,
            h_at,
            RequestHeader::SIZE as u32,
            F_NEXT,
            head + 1,
        )?;
        self.put_desc(
            window,
            head + 1,
            f_at,
            ResponseFooter::SIZE as u32,
            F_WRITE,
            0,
        )?;
        self.publish(window, head)?;
        Ok((head, f_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_writes_two_descriptors_and_bumps_the_index() {
        let mut mem = vec![0u8; 0x10000];
        // SAFETY: `mem` outlives `w`.
        let w = unsafe { SharedWindow::from_raw(mem.as_mut_ptr(), 0x10000) };
        let mut q = SplitQueue::create(&w).unwrap();
        let (head, footer) = q
            .post(
                &w,
                &RequestHeader {
                    op: 1,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((head, footer), (0, layout::SLOTS + 32));
        assert_eq!(w.load16(layout::AVAIL + 2).unwrap(), 1);
        let mut d = [0u8; 16];
        w.read(layout::DESC + 16, &mut d).unwrap();
        assert_eq!(u64::from_le_bytes(d[0..8].try_into().unwrap()), footer);
        assert_eq!(u16::from_le_bytes([d[12], d[13]]), F_WRITE);
        assert_eq!(q.in_flight(), 1);
        assert_eq!(q.take_used(&w).unwrap(), None);
        // The device answers: used element 0, 16 bytes.
        w.write(layout::USED + 4, &[0, 0, 0, 0, 16, 0, 0, 0])
            .unwrap();
        w.store16(layout::USED + 2, 1).unwrap();
        assert_eq!(q.take_used(&w).unwrap(), Some(UsedElem { id: 0, len: 16 }));
        let adopted = SplitQueue::adopt(&w).unwrap();
        assert_eq!(adopted.in_flight(), 0);
        assert_eq!(adopted.next_slot().0, 2);
    }
}
