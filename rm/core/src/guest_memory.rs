//! Guest memory as the dispatcher sees it: bounds-checked reads and writes at guest addresses.
//!
//! Every pointer in an escape (`pAllocParms`, `params`, `pMemory`, XFER `ptr`, ...) is a guest
//! address. The dispatcher never dereferences it; it asks a [`GuestMemory`], which the vGPU device
//! implements over the guest's window and tests implement over a `Vec`.

use thiserror::Error;

use crate::backend::ExternalPages;

/// A guest access that fell outside the memory the guest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("guest access of {len} bytes at {addr:#x} is out of bounds")]
pub struct GuestMemoryFault {
    /// Guest address.
    pub addr: u64,
    /// Length of the access.
    pub len: usize,
}

/// Bounds-checked access to a guest's memory.
pub trait GuestMemory {
    /// Fills `buf` from guest address `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault>;
    /// Writes `data` at guest address `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault>;

    /// The guest memory at `addr..addr + len` as pages a backend may keep and access directly
    /// (the storage of an OS descriptor). `None` when this memory cannot be shared (the
    /// default); `Some(Err)` when the range is outside it.
    fn external_pages(
        &self,
        addr: u64,
        len: u64,
    ) -> Option<Result<ExternalPages, GuestMemoryFault>> {
        let _ = (addr, len);
        None
    }
}

/// A guest memory backed by a `Vec<u8>` mapped at guest address `base`.
#[derive(Debug, Clone)]
pub struct VecGuestMemory {
    base: u64,
    bytes: Vec<u8>,
}

impl VecGuestMemory {
    /// `len` zero bytes at guest addresses `base..base + len`.
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
        }
    }

    fn range(&self, addr: u64, len: usize) -> Result<core::ops::Range<usize>, GuestMemoryFault> {
        let fault = GuestMemoryFault { addr, len };
        let start =
            usize::try_from(addr.checked_sub(self.base).ok_or(fault)?).map_err(|_| fault)?;
        let end = start.checked_add(len).ok_or(fault)?;
        if end > self.bytes.len() {
            return Err(fault);
        }
        Ok(start..end)
    }
}

impl GuestMemory for VecGuestMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        let r = self.range(addr, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_are_bounds_checked() {
        let mut m = VecGuestMemory::new(0x1000, 16);
        assert!(m.write(0x1000, &[1; 16]).is_ok());
        assert!(m.write(0x1008, &[1; 9]).is_err());
        assert!(m.read(0xfff, &mut [0; 1]).is_err());
        assert!(m.read(u64::MAX, &mut [0; 2]).is_err());
        let mut b = [0; 4];
        m.read(0x100c, &mut b).unwrap();
        assert_eq!(b, [1; 4]);
    }
}
