//! GPU virtual address spaces: page-granular mappings of GPU VAs onto memory objects.
//!
//! Every GPU access of the sim (GPFIFO and pushbuffer fetch, semaphores, copies) goes through
//! a [`VaSpace`]; an address with no mapping is a [`VaFault`] for the channel that used it,
//! never a panic.

use std::collections::BTreeMap;

use thiserror::Error;

use super::memory::{MemoryError, MemoryId, MemoryPool, PAGE_SIZE};

/// Identifies one VA space of the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VaSpaceId(pub u32);

/// Hopper's GPU virtual address width (57-bit VAs with 5-level page tables are optional; RM's
/// default VA space is 49 bits, which is what the sim offers).
pub const VA_BITS: u32 = 49;

/// One mapping: `len` bytes at GPU VA `va` backed by `memory` from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    /// First GPU VA of the mapping (page aligned).
    pub va: u64,
    /// Length in bytes (page multiple).
    pub len: u64,
    /// Backing memory object.
    pub memory: MemoryId,
    /// Offset into the memory object (page aligned).
    pub offset: u64,
}

/// Errors of mapping management.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum VaError {
    /// VA, offset or length not page aligned, or zero length.
    #[error("mapping va {va:#x} offset {offset:#x} len {len:#x} not page aligned or empty")]
    BadAlignment {
        /// Requested VA.
        va: u64,
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
    },
    /// The range leaves the VA space.
    #[error("mapping {va:#x}+{len:#x} outside the {VA_BITS}-bit VA space")]
    OutOfRange {
        /// Requested VA.
        va: u64,
        /// Requested length.
        len: u64,
    },
    /// The range overlaps an existing mapping.
    #[error("mapping {va:#x}+{len:#x} overlaps an existing mapping")]
    Overlap {
        /// Requested VA.
        va: u64,
        /// Requested length.
        len: u64,
    },
    /// No mapping starts at this VA.
    #[error("no mapping at {0:#x}")]
    NotMapped(u64),
    /// The backing memory is missing or too small.
    #[error(transparent)]
    Memory(#[from] MemoryError),
}

/// A GPU access to an address with no valid backing: the MMU fault a channel takes.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("GPU MMU fault at va {va:#x} ({})", if *.write { "write" } else { "read" })]
pub struct VaFault {
    /// Faulting GPU VA.
    pub va: u64,
    /// Whether the access was a write.
    pub write: bool,
}

/// A GPU virtual address space.
#[derive(Debug, Default)]
pub struct VaSpace {
    mappings: BTreeMap<u64, Mapping>,
}

impl VaSpace {
    /// An empty VA space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `len` bytes of `memory` from `offset` at GPU VA `va`; everything page aligned, no
    /// overlap with existing mappings, backing range inside the object.
    pub fn map(
        &mut self,
        pool: &MemoryPool,
        va: u64,
        memory: MemoryId,
        offset: u64,
        len: u64,
    ) -> Result<(), VaError> {
        let mask = PAGE_SIZE - 1;
        if len == 0 || va & mask != 0 || offset & mask != 0 || len & mask != 0 {
            return Err(VaError::BadAlignment { va, offset, len });
        }
        let end = va
            .checked_add(len)
            .filter(|&e| e <= 1u64 << VA_BITS)
            .ok_or(VaError::OutOfRange { va, len })?;
        let size = pool.size(memory)?;
        if offset.checked_add(len).is_none_or(|e| e > size) {
            return Err(VaError::Memory(MemoryError::OutOfBounds {
                id: memory,
                offset,
                len,
                size,
            }));
        }
        let before_overlaps = self
            .mappings
            .range(..end)
            .next_back()
            .is_some_and(|(_, m)| m.va + m.len > va);
        if before_overlaps {
            return Err(VaError::Overlap { va, len });
        }
        self.mappings.insert(
            va,
            Mapping {
                va,
                len,
                memory,
                offset,
            },
        );
        Ok(())
    }

    /// Removes the mapping that starts at `va`.
    pub fn unmap(&mut self, va: u64) -> Result<Mapping, VaError> {
        self.mappings.remove(&va).ok_or(VaError::NotMapped(va))
    }

    /// Removes every mapping of `memory` (the memory is being freed).
    pub fn unmap_memory(&mut self, memory: MemoryId) {
        self.mappings.retain(|_, m| m.memory != memory);
    }

    /// All mappings, by VA.
    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.values()
    }

    /// The memory, offset and bytes left in the mapping for GPU VA `va`.
    pub fn translate(&self, va: u64) -> Option<(MemoryId, u64, u64)> {
        let (_, m) = self.mappings.range(..=va).next_back()?;
        let into = va - m.va;
        (into < m.len).then(|| (m.memory, m.offset + into, m.len - into))
    }

    /// Reads `buf.len()` bytes at GPU VA `va`, across mappings; any unmapped byte faults.
    pub fn read(&self, pool: &MemoryPool, va: u64, buf: &mut [u8]) -> Result<(), VaFault> {
        let mut done = 0usize;
        while done < buf.len() {
            let at = va
                .checked_add(done as u64)
                .ok_or(VaFault { va, write: false })?;
            let fault = VaFault {
                va: at,
                write: false,
            };
            let (mem, off, left) = self.translate(at).ok_or(fault)?;
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
            pool.read(mem, off, &mut buf[done..done + n])
                .map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at GPU VA `va`, across mappings; any unmapped byte faults (bytes before
    /// it may already have been written, as on hardware).
    pub fn write(&self, pool: &mut MemoryPool, va: u64, data: &[u8]) -> Result<(), VaFault> {
        let mut done = 0usize;
        while done < data.len() {
            let at = va
                .checked_add(done as u64)
                .ok_or(VaFault { va, write: true })?;
            let fault = VaFault {
                va: at,
                write: true,
            };
            let (mem, off, left) = self.translate(at).ok_or(fault)?;
            let n = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(data.len() - done);
            pool.write(mem, off, &data[done..done + n])
                .map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u32 at `va`.
    pub fn read_u32(&self, pool: &MemoryPool, va: u64) -> Result<u32, VaFault> {
        let mut b = [0u8; 4];
        self.read(pool, va, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian u64 at `va`.
    pub fn read_u64(&self, pool: &MemoryPool, va: u64) -> Result<u64, VaFault> {
        let mut b = [0u8; 8];
        self.read(pool, va, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::Aperture;
    use super::*;

    fn setup() -> (MemoryPool, MemoryId, MemoryId) {
        let mut p = MemoryPool::new(1 << 24, 1 << 24);
        let a = p.alloc(Aperture::Vidmem, 2 * PAGE_SIZE).unwrap();
        let b = p.alloc(Aperture::Sysmem, PAGE_SIZE).unwrap();
        (p, a, b)
    }

    #[test]
    fn map_rejects_bad_requests() {
        let (p, a, _) = setup();
        let mut v = VaSpace::new();
        assert!(matches!(
            v.map(&p, 0x1001, a, 0, PAGE_SIZE),
            Err(VaError::BadAlignment { .. })
        ));
        assert!(matches!(
            v.map(&p, 0x1000, a, 0, 0),
            Err(VaError::BadAlignment { .. })
        ));
        assert!(matches!(
            v.map(&p, 0x1000, a, PAGE_SIZE, 2 * PAGE_SIZE),
            Err(VaError::Memory(_))
        ));
        assert!(matches!(
            v.map(&p, (1 << VA_BITS) - PAGE_SIZE, a, 0, 2 * PAGE_SIZE),
            Err(VaError::OutOfRange { .. })
        ));
        assert!(matches!(
            v.map(&p, !0xfff, a, 0, PAGE_SIZE),
            Err(VaError::OutOfRange { .. })
        ));
        v.map(&p, 0x10000, a, 0, 2 * PAGE_SIZE).unwrap();
        assert!(matches!(
            v.map(&p, 0x11000, a, 0, PAGE_SIZE),
            Err(VaError::Overlap { .. })
        ));
        assert!(matches!(
            v.map(&p, 0xF000, a, 0, 2 * PAGE_SIZE),
            Err(VaError::Overlap { .. })
        ));
        v.map(&p, 0xF000, a, 0, PAGE_SIZE).unwrap();
        assert_eq!(v.unmap(0x1234), Err(VaError::NotMapped(0x1234)));
    }

    #[test]
    fn access_crosses_mappings_and_faults_on_holes() {
        let (mut p, a, b) = setup();
        let mut v = VaSpace::new();
        v.map(&p, 0x10000, a, PAGE_SIZE, PAGE_SIZE).unwrap();
        v.map(&p, 0x11000, b, 0, PAGE_SIZE).unwrap();
        let data = [0xAAu8; 64];
        v.write(&mut p, 0x11000 - 32, &data).unwrap();
        assert_eq!(p.read_u32(a, 2 * PAGE_SIZE - 4).unwrap(), 0xAAAA_AAAA);
        assert_eq!(p.read_u32(b, 0).unwrap(), 0xAAAA_AAAA);
        let f = v.read_u32(&p, 0x12000 - 2).unwrap_err();
        assert_eq!(
            f,
            VaFault {
                va: 0x12000,
                write: false
            }
        );
        assert!(v.read_u32(&p, u64::MAX - 1).is_err());
        assert!(v.write(&mut p, 0x5000, &[1]).unwrap_err().write);
        v.unmap_memory(b);
        assert!(v.read_u32(&p, 0x11000).is_err());
        assert_eq!(v.mappings().count(), 1);
    }
}
