//! Memory objects of the sim GPU: system memory and video memory (framebuffer) allocations with
//! bounds-checked access.
//!
//! Storage is sparse, in 4 KiB pages materialised on first non-zero write, so a guest that
//! allocates its whole framebuffer quota costs host memory only for what it actually writes.
//! Sizes are rounded up to the page size at allocation, as RM does.
//!
//! An object can instead be backed by [`ExternalPages`]: guest memory the host shares (the
//! vGPU's window), which is what an OS descriptor wraps. The GPU then reads GPFIFO entries and
//! pushbuffers from, and releases semaphores into, the guest's own pages. Every access still goes
//! through this pool's bounds check and then the range check of `ExternalPages`, so the sim
//! reaches those pages and no others; the pages are not counted against either aperture.
//!
//! Written pages cost the host real memory, so the pool bounds them twice: over the whole GPU
//! ([`MemoryPool::set_resident_limit`]) and per owner, the vGPU (GFID) an object was allocated
//! for ([`MemoryPool::set_owner_limit`]), so one guest writing its whole framebuffer quota
//! cannot take the host memory its neighbours' pages need.

use std::collections::BTreeMap;

use thiserror::Error;

use rm_core::backend::{ExternalPages, Gfid};

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
    /// Writing a page that was never written would take the host memory the pool keeps for
    /// written pages past its limit.
    #[error("the GPU's written pages hold {limit:#x} bytes of host memory, its limit")]
    HostMemoryFull {
        /// The limit.
        limit: u64,
    },
    /// Writing a page that was never written would take the host memory held for the written
    /// pages of `owner`'s objects past that owner's limit.
    #[error("the written pages of GFID {owner} hold {limit:#x} bytes of host memory, its limit")]
    OwnerHostMemoryFull {
        /// The vGPU the object belongs to.
        owner: Gfid,
        /// Its limit.
        limit: u64,
    },
}

/// Where an object's bytes live.
#[derive(Debug)]
enum Storage {
    /// Pages owned by the pool, materialised on first non-zero write.
    Sparse(BTreeMap<u64, Box<[u8]>>),
    /// Guest-shared pages, used in place.
    External(ExternalPages),
}

/// One allocation: its aperture, size, storage and owner (0: the GPU's own, no vGPU's).
#[derive(Debug)]
struct MemoryObject {
    aperture: Aperture,
    size: u64,
    storage: Storage,
    owner: Gfid,
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
    /// Host bytes held for written pages, and the most it may hold.
    resident: u64,
    resident_limit: u64,
    /// Host bytes held for written pages by owner, and each owner's most (absent: no limit of
    /// its own).
    owner_resident: BTreeMap<Gfid, u64>,
    owner_limits: BTreeMap<Gfid, u64>,
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
            resident: 0,
            resident_limit: u64::MAX,
            owner_resident: BTreeMap::new(),
            owner_limits: BTreeMap::new(),
        }
    }

    /// Bounds the host memory held for written pages of objects owned by `owner` to `limit`
    /// bytes (None: only the pool's own limit); a write past it fails with
    /// [`MemoryError::OwnerHostMemoryFull`] and changes nothing. Pages already held stay.
    pub fn set_owner_limit(&mut self, owner: Gfid, limit: Option<u64>) {
        match limit {
            Some(l) => self.owner_limits.insert(owner, l),
            None => self.owner_limits.remove(&owner),
        };
    }

    /// The most host memory written pages may hold over all objects.
    pub fn resident_limit(&self) -> u64 {
        self.resident_limit
    }

    /// Host bytes held for written pages of `owner`'s objects.
    pub fn owner_resident_bytes(&self, owner: Gfid) -> u64 {
        self.owner_resident.get(&owner).copied().unwrap_or(0)
    }

    /// Bounds the host memory held for written pages (over all objects) to `limit` bytes:
    /// a write that would materialise a page past it fails with
    /// [`MemoryError::HostMemoryFull`] and changes nothing.
    pub fn set_resident_limit(&mut self, limit: u64) {
        self.resident_limit = limit;
    }

    /// Allocates `size` bytes (rounded up to [`PAGE_SIZE`]) of zeroed memory in `aperture`,
    /// owned by the GPU itself.
    pub fn alloc(&mut self, aperture: Aperture, size: u64) -> Result<MemoryId, MemoryError> {
        self.alloc_owned(0, aperture, size)
    }

    /// As [`MemoryPool::alloc`], for the vGPU `owner`: its written pages count against that
    /// owner's limit.
    pub fn alloc_owned(
        &mut self,
        owner: Gfid,
        aperture: Aperture,
        size: u64,
    ) -> Result<MemoryId, MemoryError> {
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
                storage: Storage::Sparse(BTreeMap::new()),
                owner,
            },
        );
        Ok(id)
    }

    /// Adds a system memory object whose storage is `pages` (guest memory shared with the
    /// host). Its size is the range's, rounded down to whole pages; it is charged to no
    /// aperture.
    pub fn alloc_external(&mut self, pages: ExternalPages) -> Result<MemoryId, MemoryError> {
        let size = pages.len() & !(PAGE_SIZE - 1);
        if size == 0 {
            return Err(MemoryError::ZeroSize);
        }
        let id = MemoryId(self.next_id);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.objects.insert(
            id,
            MemoryObject {
                aperture: Aperture::Sysmem,
                size,
                storage: Storage::External(pages),
                owner: 0,
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
        if let Storage::Sparse(pages) = &obj.storage {
            let bytes = pages.len() as u64 * PAGE_SIZE;
            self.resident -= bytes;
            if let Some(held) = self.owner_resident.get_mut(&obj.owner) {
                *held -= bytes;
                if *held == 0 {
                    self.owner_resident.remove(&obj.owner);
                }
            }
        }
        match (&obj.storage, obj.aperture) {
            (Storage::External(_), _) => {}
            (Storage::Sparse(_), Aperture::Vidmem) => self.vidmem_used -= obj.size,
            (Storage::Sparse(_), Aperture::Sysmem) => self.sysmem_used -= obj.size,
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

    /// Host bytes the pool itself holds for written pages, over all objects (guest-shared
    /// pages are not the pool's).
    pub fn resident_bytes(&self) -> u64 {
        self.resident
    }

    /// Whether an object's storage is guest-shared pages.
    pub fn is_external(&self, id: MemoryId) -> Result<bool, MemoryError> {
        Ok(matches!(self.object(id)?.storage, Storage::External(_)))
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
        let pages = match &obj.storage {
            Storage::Sparse(pages) => pages,
            Storage::External(ext) => {
                return external_result(ext.read(offset, buf), id, offset, buf.len(), obj.size)
            }
        };
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(buf.len() - done);
            match pages.get(&page) {
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
        let pages = match &mut obj.storage {
            Storage::Sparse(pages) => pages,
            Storage::External(ext) => {
                return external_result(ext.write(offset, data), id, offset, data.len(), obj.size)
            }
        };
        // The pages this write materialises, counted first so a refused write changes nothing.
        let first = offset / PAGE_SIZE;
        let last = (offset + data.len() as u64).div_ceil(PAGE_SIZE);
        let new_pages = (first..last)
            .filter(|p| !pages.contains_key(p))
            .filter(|&p| {
                let a = (p * PAGE_SIZE).max(offset) - offset;
                let b = ((p + 1) * PAGE_SIZE).min(offset + data.len() as u64) - offset;
                data[a as usize..b as usize].iter().any(|&x| x != 0)
            })
            .count() as u64;
        let grow = new_pages * PAGE_SIZE;
        if self.resident + grow > self.resident_limit {
            return Err(MemoryError::HostMemoryFull {
                limit: self.resident_limit,
            });
        }
        let owner = obj.owner;
        let held = self.owner_resident.get(&owner).copied().unwrap_or(0);
        if let Some(&limit) = self.owner_limits.get(&owner) {
            if held + grow > limit {
                return Err(MemoryError::OwnerHostMemoryFull { owner, limit });
            }
        }
        if grow > 0 {
            self.resident += grow;
            self.owner_resident.insert(owner, held + grow);
        }
        let mut done = 0usize;
        while done < data.len() {
            let pos = offset + done as u64;
            let page = pos / PAGE_SIZE;
            let in_page = (pos % PAGE_SIZE) as usize;
            let n = (PAGE_SIZE as usize - in_page).min(data.len() - done);
            let chunk = &data[done..done + n];
            match pages.get_mut(&page) {
                Some(p) => p[in_page..in_page + n].copy_from_slice(chunk),
                // Zeros onto an untouched page change nothing: keep the page sparse.
                None if chunk.iter().all(|&b| b == 0) => {}
                None => {
                    let mut p = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                    p[in_page..in_page + n].copy_from_slice(chunk);
                    pages.insert(page, p);
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

/// An access the pool's check passed but the external range refused (it cannot, as the size is
/// the range's rounded down; kept as an error rather than trusted).
fn external_result(
    ok: bool,
    id: MemoryId,
    offset: u64,
    len: usize,
    size: u64,
) -> Result<(), MemoryError> {
    if ok {
        Ok(())
    } else {
        Err(MemoryError::OutOfBounds {
            id,
            offset,
            len: len as u64,
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_core::backend::PageSource;
    use std::sync::{Arc, Mutex};

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

    /// Guest memory as a plain buffer.
    struct Shared(Mutex<Vec<u8>>);

    impl PageSource for Shared {
        fn size(&self) -> u64 {
            self.0.lock().unwrap().len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
            let v = self.0.lock().unwrap();
            let o = offset as usize;
            match v.get(o..o + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    true
                }
                None => false,
            }
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> bool {
            let mut v = self.0.lock().unwrap();
            let o = offset as usize;
            match v.get_mut(o..o + data.len()) {
                Some(dst) => {
                    dst.copy_from_slice(data);
                    true
                }
                None => false,
            }
        }
    }

    #[test]
    fn external_objects_use_the_shared_pages_in_place_and_stay_in_their_range() {
        let shared = Arc::new(Shared(Mutex::new(vec![0u8; 4 * PAGE_SIZE as usize])));
        let src: Arc<dyn PageSource> = shared.clone();
        assert!(ExternalPages::new(src.clone(), 3 * PAGE_SIZE, 2 * PAGE_SIZE).is_none());
        let pages = ExternalPages::new(src, PAGE_SIZE, 2 * PAGE_SIZE).unwrap();
        let mut p = MemoryPool::new(PAGE_SIZE, PAGE_SIZE);
        let m = p.alloc_external(pages).unwrap();
        assert_eq!(p.size(m).unwrap(), 2 * PAGE_SIZE);
        assert!(p.is_external(m).unwrap());
        // Not charged to the aperture, not resident in the pool.
        assert_eq!(p.available(Aperture::Sysmem), PAGE_SIZE);
        p.write_u32(m, 8, 0xfeed).unwrap();
        assert_eq!(p.resident_bytes(), 0);
        let guest_view = u32::from_le_bytes(
            shared.0.lock().unwrap()[PAGE_SIZE as usize + 8..][..4]
                .try_into()
                .unwrap(),
        );
        assert_eq!(guest_view, 0xfeed);
        shared.0.lock().unwrap()[PAGE_SIZE as usize + 16] = 7;
        assert_eq!(p.read_u32(m, 16).unwrap(), 7);
        assert!(matches!(
            p.write(m, 2 * PAGE_SIZE - 2, &[1, 2, 3]),
            Err(MemoryError::OutOfBounds { .. })
        ));
        assert!(shared.0.lock().unwrap()[3 * PAGE_SIZE as usize..]
            .iter()
            .all(|&b| b == 0));
        p.free(m).unwrap();
        assert_eq!(p.available(Aperture::Sysmem), PAGE_SIZE);
    }

    /// Found by a hostile guest: writing its whole framebuffer quota grew the host by a page
    /// per 4 KiB written until the OOM killer came. The pool now holds at most its limit.
    #[test]
    fn written_pages_stop_at_the_host_memory_limit() {
        let mut p = MemoryPool::new(1 << 40, 1 << 40);
        p.set_resident_limit(2 * PAGE_SIZE);
        let a = p.alloc(Aperture::Vidmem, 1 << 30).unwrap();
        let b = p.alloc(Aperture::Vidmem, 1 << 30).unwrap();
        p.write(a, 0, &[1]).unwrap();
        // Zeros and rewrites of a written page cost nothing.
        p.write(a, 5 * PAGE_SIZE, &vec![0; 3 * PAGE_SIZE as usize])
            .unwrap();
        p.write(a, 10, &[2; 100]).unwrap();
        assert_eq!(p.resident_bytes(), PAGE_SIZE);
        // A write across two new pages with room for one: refused whole.
        let e = p.write(b, PAGE_SIZE - 1, &[3, 3]).unwrap_err();
        assert_eq!(
            e,
            MemoryError::HostMemoryFull {
                limit: 2 * PAGE_SIZE
            }
        );
        let mut back = [9u8; 2];
        p.read(b, PAGE_SIZE - 1, &mut back).unwrap();
        assert_eq!(back, [0, 0], "nothing of the refused write landed");
        p.write(b, 0, &[4]).unwrap();
        assert_eq!(p.resident_bytes(), 2 * PAGE_SIZE);
        assert!(p.write(b, 8 * PAGE_SIZE, &[5]).is_err());
        // Freeing gives the pages back.
        p.free(a).unwrap();
        assert_eq!(p.resident_bytes(), PAGE_SIZE);
        p.write(b, 8 * PAGE_SIZE, &[5]).unwrap();
    }

    /// One vGPU's written pages stop at its own limit while a neighbour's, and the GPU's own,
    /// still fit; freeing gives the owner its room back.
    #[test]
    fn written_pages_stop_at_their_owners_limit_and_leave_the_others_room() {
        let mut p = MemoryPool::new(1 << 40, 1 << 40);
        p.set_resident_limit(8 * PAGE_SIZE);
        p.set_owner_limit(1, Some(2 * PAGE_SIZE));
        let greedy = p.alloc_owned(1, Aperture::Vidmem, 1 << 30).unwrap();
        let neighbour = p.alloc_owned(2, Aperture::Vidmem, 1 << 30).unwrap();
        let gpu_own = p.alloc(Aperture::Sysmem, PAGE_SIZE).unwrap();
        p.write(greedy, 0, &vec![1; 2 * PAGE_SIZE as usize])
            .unwrap();
        assert_eq!(
            p.write(greedy, 4 * PAGE_SIZE, &[1]).unwrap_err(),
            MemoryError::OwnerHostMemoryFull {
                owner: 1,
                limit: 2 * PAGE_SIZE
            }
        );
        // Rewriting a page it holds costs nothing.
        p.write(greedy, 10, &[7; 10]).unwrap();
        p.write(neighbour, 0, &vec![2; 5 * PAGE_SIZE as usize])
            .unwrap();
        p.write(gpu_own, 0, &[3]).unwrap();
        assert_eq!(p.owner_resident_bytes(1), 2 * PAGE_SIZE);
        assert_eq!(p.owner_resident_bytes(2), 5 * PAGE_SIZE);
        assert_eq!(p.resident_bytes(), 8 * PAGE_SIZE);
        // The pool's own limit still holds for an owner without one.
        assert!(matches!(
            p.write(neighbour, 6 * PAGE_SIZE, &[2]),
            Err(MemoryError::HostMemoryFull { .. })
        ));
        p.free(greedy).unwrap();
        assert_eq!(p.owner_resident_bytes(1), 0);
        let again = p.alloc_owned(1, Aperture::Vidmem, PAGE_SIZE).unwrap();
        p.write(again, 0, &[1]).unwrap();
        // Lifting the limit leaves only the pool's.
        p.set_owner_limit(1, None);
        let more = p.alloc_owned(1, Aperture::Vidmem, PAGE_SIZE).unwrap();
        p.write(more, 0, &[1]).unwrap();
        assert_eq!(p.owner_resident_bytes(1), 2 * PAGE_SIZE);
    }
}
