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
        if self.overlay.is_empty() {
            return Ok(self.file.read_exact_at(buf, offset)?);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (chunk, within) = (at / OVERLAY_CHUNK, at % OVERLAY_CHUNK);
            let n = ((OVERLAY_CHUNK - within) as usize).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.overlay.get(&chunk) {
                Some(data) => dst.copy_from_slice(&data[within as usize..within as usize + n]),
                None => self.file.read_exact_at(dst, at)?,
            }
            done += n;
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
