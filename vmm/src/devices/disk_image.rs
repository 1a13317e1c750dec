//! A raw disk image behind the virtio-blk device ([`super::virtio_blk`]): the file itself
//! (read-write or read-only), or the file read-only with the guest's writes kept in host memory
//! (`snapshot`), bounded by a cap.
//!
//! Every access is bounds-checked against the disk's capacity (whole 512-byte sectors of the
//! file; a trailing partial sector is not part of the disk), so no guest request reads or
//! writes the host file outside it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice};

/// Bytes per sector, as virtio-blk counts them.
pub const SECTOR_SIZE: u64 = 512;
/// Granule of the snapshot overlay: a guest write of any size inside a chunk copies the whole
/// chunk from the file once.
pub const OVERLAY_CHUNK: u64 = 4096;
/// Default cap of the snapshot overlay (host memory the guest's writes may take).
pub const DEFAULT_OVERLAY_CAP: u64 = 256 << 20;

/// How the image is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskMode {
    /// Reads and writes go to the file.
    ReadWrite,
    /// The guest sees a read-only disk (virtio `VIRTIO_BLK_F_RO`).
    ReadOnly,
    /// The file is opened read-only; the guest's writes land in host memory and are dropped
    /// when the VMM exits.
    Snapshot,
}

/// Errors of a disk image.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image cannot be opened or sized.
    #[error("cannot open disk image {path}")]
    Open {
        /// The image.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The image holds no whole sector.
    #[error("disk image {0} is smaller than one 512-byte sector")]
    Empty(PathBuf),
    /// A request reaches past the end of the disk.
    #[error("request past the end of the disk")]
    OutOfRange,
    /// A write to a read-only disk.
    #[error("the disk is read-only")]
    ReadOnly,
    /// The snapshot overlay cannot take more writes.
    #[error("the snapshot overlay is full ({0} bytes)")]
    OverlayFull(u64),
    /// The host I/O failed.
    #[error("disk I/O failed")]
    Io(#[from] std::io::Error),
}

/// An open disk image.
#[derive(Debug)]
pub struct DiskImage {
    file: File,
    path: PathBuf,
    mode: DiskMode,
    capacity: u64,
    /// Snapshot mode: chunk index -> the chunk's current contents.
    overlay: BTreeMap<u64, Box<[u8]>>,
    overlay_cap_chunks: u64,
}

impl DiskImage {
    /// Opens `path` (a regular file or a block device) in `mode`; in snapshot mode the overlay
    /// holds at most `overlay_cap` bytes of written chunks.
    pub fn open(path: &Path, mode: DiskMode, overlay_cap: u64) -> Result<Self, DiskError> {
        let open_err = |source| DiskError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(mode == DiskMode::ReadWrite)
            .open(path)
            .map_err(open_err)?;
        // Block devices report 0 in their metadata; seeking to the end sizes both kinds.
        let bytes = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        let capacity = bytes / SECTOR_SIZE * SECTOR_SIZE;
        if capacity == 0 {
            return Err(DiskError::Empty(path.to_path_buf()));
        }
        Ok(Self {
            file,
            path: path.to_path_buf(),
            mode,
            capacity,
            overlay: BTreeMap::new(),
            overlay_cap_chunks: overlay_cap / OVERLAY_CHUNK,
        })
    }

    /// The image's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the image is used.
    pub fn mode(&self) -> DiskMode {
        self.mode
    }

    /// Size of the disk in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.capacity / SECTOR_SIZE
    }

    /// Host memory the snapshot overlay holds now, in bytes.
    pub fn overlay_bytes(&self) -> u64 {
        self.overlay.len() as u64 * OVERLAY_CHUNK
    }

    /// Checks that `len` bytes at `offset` lie inside the disk.
    pub fn check_range(&self, offset: u64, len: u64) -> Result<(), DiskError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.capacity => Ok(()),
            _ => Err(DiskError::OutOfRange),
        }
    }

    /// Reads `buf.len()` bytes at byte `offset`.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        self.check_range(offset, buf.len() as u64)?;
        self.for_each_piece(offset, buf.len() as u64, |piece, at, skip| {
            let dst = &mut buf[skip..skip + piece.len()];
            match piece {
                Piece::File { .. } => self.file.read_exact_at(dst, at)?,
                Piece::Overlay(data) => dst.copy_from_slice(data),
            }
            Ok(())
        })
    }

    /// Reads `dst.len()` bytes at byte `offset` straight into guest memory: one copy, by the
    /// host kernel, where [`DiskImage::read_at`] and a copy into the guest make two.
    pub fn read_into(&self, offset: u64, dst: &VolatileSlice<'_, ()>) -> Result<(), DiskError> {
        self.check_range(offset, dst.len() as u64)?;
        let io = |e: VolatileMemoryError| match e {
            VolatileMemoryError::IOError(e) => DiskError::Io(e),
            e => DiskError::Io(std::io::Error::other(e)),
        };
        self.for_each_piece(offset, dst.len() as u64, |piece, at, skip| {
            let mut part = dst.subslice(skip, piece.len()).map_err(io)?;
            match piece {
                Piece::File { .. } => FileAt {
                    file: &self.file,
                    at,
                }
                .read_exact_volatile(&mut part)
                .map_err(io)?,
                Piece::Overlay(data) => part.copy_from(data),
            }
            Ok(())
        })
    }

    /// Walks `offset..offset + len` (inside the disk) as the runs of file bytes between
    /// overlay chunks and the overlay chunks' bytes, calling `f(piece, disk offset, offset into
    /// the request)`. The file's runs are whole: a syscall per 4 KiB chunk made snapshot reads
    /// several times slower than plain ones.
    fn for_each_piece(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(Piece<'_>, u64, usize) -> Result<(), DiskError>,
    ) -> Result<(), DiskError> {
        if len == 0 {
            return Ok(());
        }
        let end = offset + len;
        let mut at = offset;
        let chunks = offset / OVERLAY_CHUNK..=(end - 1) / OVERLAY_CHUNK;
        for (&chunk, data) in self.overlay.range(chunks) {
            let (start, stop) = (chunk * OVERLAY_CHUNK, (chunk + 1) * OVERLAY_CHUNK);
            let from = start.max(offset);
            if at < from {
                f(Piece::File { len: from - at }, at, (at - offset) as usize)?;
            }
            let to = stop.min(end);
            let bytes = &data[(from - start) as usize..(to - start) as usize];
            f(Piece::Overlay(bytes), from, (from - offset) as usize)?;
            at = to;
        }
        if at < end {
            f(Piece::File { len: end - at }, at, (at - offset) as usize)?;
        }
        Ok(())
    }

    /// Writes `data` at byte `offset`. In snapshot mode a write that needs more overlay chunks
    /// than the cap leaves changes nothing and fails with [`DiskError::OverlayFull`].
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.check_range(offset, data.len() as u64)?;
        match self.mode {
            DiskMode::ReadOnly => Err(DiskError::ReadOnly),
            DiskMode::ReadWrite => Ok(self.file.write_all_at(data, offset)?),
            DiskMode::Snapshot => self.write_overlay(offset, data),
        }
    }

    fn write_overlay(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        if data.is_empty() {
            return Ok(());
        }
        let first = offset / OVERLAY_CHUNK;
        let last = (offset + data.len() as u64 - 1) / OVERLAY_CHUNK;
        let new = (first..=last)
            .filter(|c| !self.overlay.contains_key(c))
            .count() as u64;
        if self.overlay.len() as u64 + new > self.overlay_cap_chunks {
            return Err(DiskError::OverlayFull(
                self.overlay_cap_chunks * OVERLAY_CHUNK,
            ));
        }
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (chunk, within) = (at / OVERLAY_CHUNK, at % OVERLAY_CHUNK);
            let n = ((OVERLAY_CHUNK - within) as usize).min(data.len() - done);
            if !self.overlay.contains_key(&chunk) {
                let base = self.base_chunk(chunk)?;
                self.overlay.insert(chunk, base);
            }
            let slot = self.overlay.get_mut(&chunk).ok_or(DiskError::OutOfRange)?;
            slot[within as usize..within as usize + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Chunk `chunk` as the file holds it (zeros past the end of the disk).
    fn base_chunk(&self, chunk: u64) -> Result<Box<[u8]>, DiskError> {
        let mut data = vec![0u8; OVERLAY_CHUNK as usize].into_boxed_slice();
        let start = chunk * OVERLAY_CHUNK;
        let len = OVERLAY_CHUNK.min(self.capacity.saturating_sub(start)) as usize;
        self.file.read_exact_at(&mut data[..len], start)?;
        Ok(data)
    }

    /// Makes written data durable: `fdatasync` for a read-write file; nothing to do otherwise.
    pub fn flush(&self) -> Result<(), DiskError> {
        if self.mode == DiskMode::ReadWrite {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Tells the disk that `len` bytes at `offset` are no longer needed: punches a hole in a
    /// read-write file (where the file system cannot, nothing happens, which discard allows),
    /// drops the overlay chunks the range covers whole in snapshot mode (reads there return
    /// the file's data again, which discard also allows).
    pub fn discard(&mut self, offset: u64, len: u64) -> Result<(), DiskError> {
        self.check_range(offset, len)?;
        match self.mode {
            DiskMode::ReadOnly => Err(DiskError::ReadOnly),
            DiskMode::ReadWrite => {
                let (Ok(off), Ok(l)) = (i64::try_from(offset), i64::try_from(len)) else {
                    return Err(DiskError::OutOfRange);
                };
                // SAFETY: fallocate on a file descriptor this image owns; no memory is passed.
                let rc = unsafe {
                    libc::fallocate(
                        self.file.as_raw_fd(),
                        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                        off,
                        l,
                    )
                };
                if rc != 0 {
                    tracing::debug!("discard not applied: {}", std::io::Error::last_os_error());
                }
                Ok(())
            }
            DiskMode::Snapshot => {
                let first = offset.div_ceil(OVERLAY_CHUNK);
                let end = (offset + len) / OVERLAY_CHUNK;
                if first < end {
                    let kept = self.overlay.split_off(&end);
                    self.overlay.retain(|&c, _| c < first);
                    self.overlay.extend(kept);
                }
                Ok(())
            }
        }
    }
}

/// A run of a read: bytes of the file, or of an overlay chunk.
enum Piece<'a> {
    File { len: u64 },
    Overlay(&'a [u8]),
}

impl Piece<'_> {
    fn len(&self) -> usize {
        match self {
            Piece::File { len } => *len as usize,
            Piece::Overlay(data) => data.len(),
        }
    }
}

/// The file read from a position with `pread`, for vm-memory's volatile reads (its own
/// implementation for files reads at the file's cursor).
struct FileAt<'a> {
    file: &'a File,
    at: u64,
}

impl ReadVolatile for FileAt<'_> {
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard_mut();
        let offset = libc::off_t::try_from(self.at).map_err(|_| {
            VolatileMemoryError::IOError(std::io::Error::from_raw_os_error(libc::EINVAL))
        })?;
        // SAFETY: the guard keeps `buf.len()` bytes of mapped guest memory valid while the
        // kernel writes at most that many into them; guest memory is never a Rust reference.
        let n = unsafe {
            libc::pread(
                self.file.as_raw_fd(),
                guard.as_ptr().cast(),
                buf.len(),
                offset,
            )
        };
        if n < 0 {
            return Err(VolatileMemoryError::IOError(std::io::Error::last_os_error()));
        }
        buf.bitmap().mark_dirty(0, n as usize);
        self.at += n as u64;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(bytes: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..bytes).map(|i| (i % 251) as u8).collect();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &data).unwrap();
        (f, data)
    }

    #[test]
    fn capacity_is_whole_sectors_and_reads_stop_there() {
        let (f, data) = image(4 * 512 + 100);
        let d = DiskImage::open(f.path(), DiskMode::ReadOnly, 0).unwrap();
        assert_eq!(d.sectors(), 4);
        let mut buf = [0u8; 512];
        d.read_at(3 * 512, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[3 * 512..4 * 512]);
        assert!(matches!(
            d.read_at(3 * 512 + 1, &mut buf),
            Err(DiskError::OutOfRange)
        ));
        assert!(matches!(
            d.read_at(u64::MAX - 10, &mut buf),
            Err(DiskError::OutOfRange)
        ));
    }

    #[test]
    fn images_without_a_whole_sector_are_refused() {
        let (f, _) = image(511);
        assert!(matches!(
            DiskImage::open(f.path(), DiskMode::ReadOnly, 0),
            Err(DiskError::Empty(_))
        ));
    }

    #[test]
    fn snapshot_writes_stay_in_memory_up_to_the_cap() {
        let (f, data) = image(64 * 1024);
        let mut d = DiskImage::open(f.path(), DiskMode::Snapshot, 2 * OVERLAY_CHUNK).unwrap();
        // A write across a chunk boundary takes two chunks.
        d.write_at(4096 - 4, &[0xee; 8]).unwrap();
        assert_eq!(d.overlay_bytes(), 2 * OVERLAY_CHUNK);
        let mut buf = vec![0u8; 16];
        d.read_at(4096 - 8, &mut buf).unwrap();
        assert_eq!(&buf[..4], &data[4088..4092]);
        assert_eq!(&buf[4..12], &[0xee; 8]);
        assert_eq!(&buf[12..], &data[4100..4104]);
        // A third chunk is past the cap; the write changes nothing.
        assert!(matches!(
            d.write_at(3 * 4096, &[1; 512]),
            Err(DiskError::OverlayFull(8192))
        ));
        d.read_at(3 * 4096, &mut buf).unwrap();
        assert_eq!(&buf[..], &data[3 * 4096..3 * 4096 + 16]);
        // Rewriting chunks already held needs no room.
        d.write_at(0, &[2; 4096]).unwrap();
        assert_eq!(
            std::fs::read(f.path()).unwrap(),
            data,
            "the file is untouched"
        );
        // Discarding a whole chunk frees it.
        d.discard(0, 4096).unwrap();
        assert_eq!(d.overlay_bytes(), OVERLAY_CHUNK);
    }

    #[test]
    fn snapshot_reads_of_any_range_see_the_writes_over_the_file() {
        // Oracle: a copy of the file with the same writes applied.
        let (f, mut model) = image(64 * 1024);
        let mut d = DiskImage::open(f.path(), DiskMode::Snapshot, u64::MAX).unwrap();
        let writes = [
            (0u64, 10usize),
            (5000, 3000),
            (12288, 4096),
            (40000, 9000),
            (65535, 1),
        ];
        for (i, &(at, len)) in writes.iter().enumerate() {
            let bytes = vec![0xa0 + i as u8; len];
            d.write_at(at, &bytes).unwrap();
            model[at as usize..at as usize + len].copy_from_slice(&bytes);
        }
        let mut state = 7u64;
        for _ in 0..500 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let at = (state >> 33) as usize % model.len();
            let len = (state >> 13) as usize % (model.len() - at + 1);
            let mut buf = vec![0u8; len];
            d.read_at(at as u64, &mut buf).unwrap();
            assert!(buf == model[at..at + len], "read of {len} bytes at {at}");
        }
        let mut empty = [];
        d.read_at(0, &mut empty).unwrap();
    }

    #[test]
    fn read_only_refuses_writes_and_discards() {
        let (f, _) = image(4096);
        let mut d = DiskImage::open(f.path(), DiskMode::ReadOnly, 0).unwrap();
        assert!(matches!(d.write_at(0, &[0; 512]), Err(DiskError::ReadOnly)));
        assert!(matches!(d.discard(0, 512), Err(DiskError::ReadOnly)));
        d.flush().unwrap();
    }

    #[test]
    fn read_write_writes_the_file() {
        let (f, _) = image(4096);
        let mut d = DiskImage::open(f.path(), DiskMode::ReadWrite, 0).unwrap();
        d.write_at(512, &[7; 512]).unwrap();
        d.flush().unwrap();
        d.discard(0, 512).unwrap();
        assert_eq!(&std::fs::read(f.path()).unwrap()[512..1024], &[7; 512]);
        assert!(matches!(
            d.write_at(4096, &[0; 1]),
            Err(DiskError::OutOfRange)
        ));
    }
}
