//! Memory objects of the sim GPU: system memory and video memory (framebuffer) allocations with
//! bounds-checked access.
//!
//! Storage is sparse, in 4 KiB pages materialised on first non-zero write, so a guest that
//! allocates its whole framebuffer quota costs host memory only for what it actually writes.
//! Sizes are rounded up to the page size at allocation, as RM does.

use std::collections::BTreeMap;

use thiserror::Error;

/// Allocation and mapping granularity of the sim GPU.
pub const PAGE_SIZE: u64 = 4096;

/// Identifies one memory object of a [`MemoryPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryId(pub u32);

/// Where a memory object lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aperture {
    /// Host system memory (`NV01_MEMORY_SYSTEM`).
    Sysmem,
    /// GPU video memory (`NV01_MEMORY_LOCAL_USER`), counted against the framebuffer size.
    Vidmem,
}

/// Errors of memory allocation and access.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MemoryError {
    /// No memory object has this id.
    #[error("no memory object {0:?}")]
    NoSuchMemory(MemoryId),
    /// An access reaches outside the object.
    #[error("access {offset:#x}+{len:#x} outside memory {id:?} of size {size:#x}")]
    OutOfBounds {
        /// The object.
        id: MemoryId,
        /// First byte accessed.
        offset: u64,
        /// Bytes accessed.
        len: u64,
        /// The object's size.
        size: u64,
    },
    /// A zero-byte allocation.
    #[error("zero-sized allocation")]
    ZeroSize,
    /// Not enough free space in the aperture.
    #[error("out of {aperture:?}: requested {requested:#x}, available {available:#x}")]
    OutOfMemory {
        /// Aperture asked for.
        aperture: Aperture,
        /// Bytes asked for (page-rounded).
        requested: u64,
        /// Bytes still free.
        available: u64,
    },
}

/// One allocation: its aperture, size and materialised pages.
#[derive(Debug)]
struct MemoryObject {
    aperture: Aperture,
    size: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

/// All memory objects of one GPU, with per-aperture capacity accounting.
#[derive(Debug)]
pub struct MemoryPool {
    objects: BTreeMap<MemoryId, MemoryObject>,
    next_id: u32,
    vidmem_capacity: u64,
    vidmem_used: u64,
    sysmem_capacity: u64,
    sysmem_used: u64,
}

impl MemoryPool {
    /// A pool with `vidmem_capacity` bytes of framebuffer and `sysmem_capacity` bytes of
    /// system memory that may be allocated.
    pub fn new(vidmem_capacity: u64, sysmem_capacity: u64) -> Self {
        Self {
            objects: BTreeMap::new(),
            next_id: 1,
            vidmem_capacity,
            vidmem_used: 0,
            sysmem_capacity,
            sysmem_used: 0,
        }
    }

    /// Allocates `size` bytes (rounded up to [`PAGE_SIZE`]) of zeroed memory in `aperture`.
    pub fn alloc(&mut self, aperture: Aperture, size: u64) -> Result<MemoryId, MemoryError> {
        if size == 0 {
            return Err(MemoryError::ZeroSize);
        }
        let rounded = size
            .checked_add(PAGE_SIZE - 1)
            .map(|s| s & !(PAGE_SIZE - 1))
            .ok_or(MemoryError::OutOfMemory {
                aperture,
                requested: size,
                available: self.available(aperture),
            })?;
        let available = self.available(aperture);
        if rounded > available {
            return Err(MemoryError::OutOfMemory {
                aperture,
                requested: rounded,
                available,
            });
        }
        match aperture {
            Aperture::Vidmem => self.vidmem_used += rounded,
            Aperture::Sysmem => self.sysmem_used += rounded,
        }
        let id = MemoryId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.objects.insert(
            id,
            MemoryObject {
                aperture,
                size: rounded,
                pages: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    /// Frees a memory object and returns its bytes to the aperture.
    pub fn free(&mut self, id: MemoryId) -> Result<(), MemoryError> {
        let obj = self
            .objects
            .remove(&id)
            .ok_or(MemoryError::NoSuchMemory(id))?;
        match obj.aperture {
            Aperture::Vidmem => self.vidmem_used -= obj.size,
            Aperture::Sysmem => self.sysmem_used -= obj.size,
        }
        Ok(())
    }

    /// Bytes still free in `aperture`.
    pub fn available(&self, aperture: Aperture) -> u64 {
        match aperture {
            Aperture::Vidmem => self.vidmem_capacity - self.vidmem_used,
            Aperture::Sysmem => self.sysmem_capacity - self.sysmem_used,
        }
    }

    /// Size (page-rounded) of a memory object.
    pub fn size(&self, id: MemoryId) -> Result<u64, MemoryError> {
        Ok(self.object(id)?.size)
    }

    /// Aperture of a memory object.
    pub fn aperture(&self, id: MemoryId) -> Result<Aperture, MemoryError> {
        Ok(self.object(id)?.aperture)
    }

    /// Number of live memory objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// True when no memory object is allocated.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Host bytes actually backing written pages, over all objects.
    pub fn resident_bytes(&self) -> u64 {
        self.objects
            .values()
            .map(|o| o.pages.len() as u64 * PAGE_SIZE)
            .sum()
    }

    fn object(&self, id: MemoryId) -> Result<&MemoryObject, MemoryError> {
        self.objects.get(&id).ok_or(MemoryError::NoSuchMemory(id))
    }

    fn check(&self, id: MemoryId, offset: u64, len: usize) -> Result<(), MemoryError> {
        let obj = self.object(id)?;
        let len = len as u64;
        match offset.checked_add(len) {
            Some(end) if end <= obj.size => Ok(()),
            _ => Err(MemoryError::OutOfBounds {
                id,
                offset,
                len,
                size: obj.size,
            }),
        }
    }

    /// Reads `buf.len()` bytes at `offset`; never-written bytes read as zero.
    pub fn read(&self, id: MemoryId, offset: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        self.check(id, offset, buf.len())?;
        let obj = self.object(id)?;
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(buf.len() - done);
            match obj.pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[in_page..in_page + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write(&mut self, id: MemoryId, offset: u64, data: &[u8]) -> Result<(), MemoryError> {
        self.check(id, offset, data.len())?;
        let obj = self
            .objects
            .get_mut(&id)
            .ok_or(MemoryError::NoSuchMemory(id))?;
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - done);
            let chunk = &data[done..done + n];
            match obj.pages.get_mut(&page) {
                Some(p) => p[in_page..in_page + n].copy_from_slice(chunk),
                // Zeros onto an untouched page change nothing: keep the page sparse.
                None if chunk.iter().all(|&b| b == 0) => {}
                None => {
                    let mut p = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                    p[in_page..in_page + n].copy_from_slice(chunk);
                    obj.pages.insert(page, p);
                }
            }
            done += n;
        }
        Ok(())
    }

    /// Reads a little-endian u32.
    pub fn read_u32(&self, id: MemoryId, offset: u64) -> Result<u32, MemoryError> {
        let mut b = [0u8; 4];
        self.read(id, offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian u32.
    pub fn write_u32(&mut self, id: MemoryId, offset: u64, v: u32) -> Result<(), MemoryError> {
        self.write(id, offset, &v.to_le_bytes())
    }

    /// Reads a little-endian u64.
    pub fn read_u64(&self, id: MemoryId, offset: u64) -> Result<u64, MemoryError> {
        let mut b = [0u8; 8];
        self.read(id, offset, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian u64.
    pub fn write_u64(&mut self, id: MemoryId, offset: u64, v: u64) -> Result<(), MemoryError> {
        self.write(id, offset, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_rounds_to_pages_and_accounts_capacity() {
        let mut p = MemoryPool::new(3 * PAGE_SIZE, PAGE_SIZE);
        let a = p.alloc(Aperture::Vidmem, 10).unwrap();
        assert_eq!(p.size(a).unwrap(), PAGE_SIZE);
        assert_eq!(p.available(Aperture::Vidmem), 2 * PAGE_SIZE);
        assert!(matches!(
            p.alloc(Aperture::Vidmem, 2 * PAGE_SIZE + 1),
            Err(MemoryError::OutOfMemory { .. })
        ));
        assert_eq!(p.alloc(Aperture::Sysmem, 0), Err(MemoryError::ZeroSize));
        assert!(p.alloc(Aperture::Sysmem, u64::MAX).is_err());
        p.free(a).unwrap();
        assert_eq!(p.available(Aperture::Vidmem), 3 * PAGE_SIZE);
        assert_eq!(p.free(a), Err(MemoryError::NoSuchMemory(a)));
    }

    #[test]
    fn reads_and_writes_are_bounds_checked_and_cross_pages() {
        let mut p = MemoryPool::new(1 << 20, 1 << 20);
        let m = p.alloc(Aperture::Sysmem, 2 * PAGE_SIZE).unwrap();
        let data: Vec<u8> = (0..100u8).collect();
        p.write(m, PAGE_SIZE - 50, &data).unwrap();
        let mut back = vec![0u8; 100];
        p.read(m, PAGE_SIZE - 50, &mut back).unwrap();
        assert_eq!(back, data);
        assert!(matches!(
            p.write(m, 2 * PAGE_SIZE - 1, &[1, 2]),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(p.read(m, u64::MAX, &mut [0u8; 2]).is_err());
        assert_eq!(p.read_u32(m, 0).unwrap(), 0);
        p.write_u64(m, 8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(p.read_u64(m, 8).unwrap(), 0x1122_3344_5566_7788);
    }

    #[test]
    fn storage_is_sparse() {
        let mut p = MemoryPool::new(1 << 40, 0);
        let m = p.alloc(Aperture::Vidmem, 1 << 39).unwrap();
        p.write(m, 0, &[0u8; 8192]).unwrap();
        assert_eq!(p.resident_bytes(), 0);
        p.write_u32(m, (1 << 39) - 4, 7).unwrap();
        assert_eq!(p.resident_bytes(), PAGE_SIZE);
        assert_eq!(p.read_u32(m, (1 << 39) - 4).unwrap(), 7);
    }
}
