//! The host-visible window (BAR2) as the guest driver sees it: shared memory addressed by window
//! offsets, and an allocator for the buffers the driver and its clients keep there.

use std::collections::BTreeMap;
use std::sync::atomic::{fence, Ordering};

use super::mmio::MappedFile;

/// An access outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{len} bytes at window offset {offset:#x} are outside the {size:#x}-byte window")]
pub struct OutOfWindow {
    /// Offset of the access.
    pub offset: u64,
    /// Its length.
    pub len: usize,
    /// Window size.
    pub size: u64,
}

/// The window: `size` bytes of memory shared with the host, starting at `base`.
#[derive(Debug)]
pub struct SharedWindow {
    base: *mut u8,
    size: u64,
    _map: Option<MappedFile>,
}

// SAFETY: the window is shared memory; accesses go through bounds-checked copies and volatile
// ring-index accesses, and the driver serialises its own users.
unsafe impl Send for SharedWindow {}
// SAFETY: see above.
unsafe impl Sync for SharedWindow {}

impl SharedWindow {
    /// The window behind a mapping of `resource2`.
    pub fn from_mapping(map: MappedFile) -> Self {
        Self {
            base: map.as_ptr(),
            size: map.len() as u64,
            _map: Some(map),
        }
    }

    /// A window over memory the caller owns (the device model's window in host tests).
    ///
    /// # Safety
    /// `base..base + size` must stay mapped, readable and writable for the life of the result.
    pub unsafe fn from_raw(base: *mut u8, size: u64) -> Self {
        Self {
            base,
            size,
            _map: None,
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The window's first byte in this process (what `offset = ptr - base` converts with).
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    fn check(&self, offset: u64, len: usize) -> Result<*mut u8, OutOfWindow> {
        let fault = OutOfWindow {
            offset,
            len,
            size: self.size,
        };
        let end = offset.checked_add(len as u64).ok_or(fault)?;
        if end > self.size {
            return Err(fault);
        }
        // SAFETY: `offset + len <= size`, inside the mapping.
        Ok(unsafe { self.base.add(offset as usize) })
    }

    /// Copies `data` to `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), OutOfWindow> {
        let p = self.check(offset, data.len())?;
        // SAFETY: `p..p + len` is inside the window (checked); `data` is a separate allocation.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Fills `buf` from `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), OutOfWindow> {
        let p = self.check(offset, buf.len())?;
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Zeroes `len` bytes at `offset`.
    pub fn zero(&self, offset: u64, len: usize) -> Result<(), OutOfWindow> {
        let p = self.check(offset, len)?;
        // SAFETY: as in `write`.
        unsafe { std::ptr::write_bytes(p, 0, len) };
        Ok(())
    }

    /// A 16-bit volatile load (ring indices the host updates).
    pub fn load16(&self, offset: u64) -> Result<u16, OutOfWindow> {
        let p = self.check(offset, 2)?;
        fence(Ordering::Acquire);
        // SAFETY: in bounds; the driver places ring fields 2-byte aligned (unaligned is fine
        // for read_unaligned on x86 but ring offsets are aligned by construction).
        Ok(u16::from_le(unsafe { p.cast::<u16>().read_volatile() }))
    }

    /// A 16-bit volatile store, ordered after every earlier write (publishing a ring index).
    pub fn store16(&self, offset: u64, v: u16) -> Result<(), OutOfWindow> {
        let p = self.check(offset, 2)?;
        fence(Ordering::Release);
        // SAFETY: in bounds and 2-byte aligned (see `load16`).
        unsafe { p.cast::<u16>().write_volatile(v.to_le()) };
        Ok(())
    }

    /// A 32-bit volatile store, ordered after every earlier write (publishing an index).
    pub fn store32(&self, offset: u64, v: u32) -> Result<(), OutOfWindow> {
        let p = self.check(offset, 4)?;
        fence(Ordering::Release);
        // SAFETY: in bounds; write_unaligned tolerates any alignment.
        unsafe { p.cast::<u32>().write_unaligned(v.to_le()) };
        Ok(())
    }

    /// A 32-bit volatile load (semaphores and other values the GPU side writes).
    pub fn load32(&self, offset: u64) -> Result<u32, OutOfWindow> {
        let p = self.check(offset, 4)?;
        fence(Ordering::Acquire);
        // SAFETY: in bounds; read_unaligned tolerates any alignment.
        Ok(u32::from_le(unsafe { p.cast::<u32>().read_unaligned() }))
    }
}

/// First-fit allocator of window ranges, with neighbours merged on free.
#[derive(Debug)]
pub struct WindowAllocator {
    free: BTreeMap<u64, u64>,
}

/// Alignment of every allocation.
pub const ALLOC_ALIGN: u64 = 64;

impl WindowAllocator {
    /// An allocator owning `start..end`.
    pub fn new(start: u64, end: u64) -> Self {
        let start = start.next_multiple_of(ALLOC_ALIGN);
        let mut free = BTreeMap::new();
        if end > start {
            free.insert(start, end - start);
        }
        Self { free }
    }

    /// Takes `len` bytes aligned to `align` (a power of two, at least [`ALLOC_ALIGN`]).
    pub fn alloc(&mut self, len: u64, align: u64) -> Option<u64> {
        let align = align.max(ALLOC_ALIGN);
        let len = len.max(1).checked_next_multiple_of(ALLOC_ALIGN)?;
        let (start, size, at) = self.free.iter().find_map(|(&s, &n)| {
            let at = s.checked_next_multiple_of(align)?;
            (at.checked_add(len)? <= s + n).then_some((s, n, at))
        })?;
        self.free.remove(&start);
        if at > start {
            self.free.insert(start, at - start);
        }
        let end = at + len;
        if end < start + size {
            self.free.insert(end, start + size - end);
        }
        Some(at)
    }

    /// Returns `len` bytes at `at` (as given to and returned by [`Self::alloc`]).
    pub fn free(&mut self, at: u64, len: u64) {
        let mut start = at;
        let mut size = len.max(1).next_multiple_of(ALLOC_ALIGN);
        if let Some((&s, &n)) = self.free.range(..at).next_back() {
            if s + n == at {
                self.free.remove(&s);
                start = s;
                size += n;
            }
        }
        if let Some(&n) = self
            .free
            .get(&(at + len.max(1).next_multiple_of(ALLOC_ALIGN)))
        {
            self.free.remove(&(start + size));
            size += n;
        }
        self.free.insert(start, size);
    }

    /// Bytes free.
    pub fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_accesses_are_bounds_checked() {
        let mut mem = vec![0u8; 4096];
        // SAFETY: `mem` outlives `w`.
        let w = unsafe { SharedWindow::from_raw(mem.as_mut_ptr(), 4096) };
        w.write(4092, &[1, 2, 3, 4]).unwrap();
        assert!(w.write(4093, &[0; 4]).is_err());
        assert!(w.read(u64::MAX - 1, &mut [0; 4]).is_err());
        w.store16(8, 0x1234).unwrap();
        assert_eq!(w.load16(8).unwrap(), 0x1234);
        assert_eq!(w.load32(4092).unwrap(), 0x0403_0201);
        w.zero(4092, 4).unwrap();
        assert_eq!(w.load32(4092).unwrap(), 0);
    }

    #[test]
    fn allocator_aligns_reuses_and_merges() {
        let mut a = WindowAllocator::new(0x1000, 0x3000);
        let x = a.alloc(10, 64).unwrap();
        let y = a.alloc(0x100, 0x1000).unwrap();
        assert_eq!(x, 0x1000);
        assert_eq!(y, 0x2000);
        assert!(a.alloc(0x2000, 64).is_none());
        a.free(x, 10);
        a.free(y, 0x100);
        assert_eq!(a.free_bytes(), 0x2000);
        assert_eq!(a.alloc(0x2000, 64), Some(0x1000), "all merged back");
    }
}
