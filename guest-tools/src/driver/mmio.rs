//! Access to the vGPU's BARs: the register file (BAR0, every access traps to the VMM) and the
//! host-visible window (BAR2, plain shared memory).
//!
//! In a guest both come from `mmap(MAP_SHARED)` of sysfs `resourceN` files ([`MappedFile`]).
//! Host tests hand the driver the device model's own window and a [`RegisterBar`] that calls the
//! device model directly, so the same driver code runs over both.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

/// Errors mapping a BAR.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// The resource file could not be opened.
    #[error("opening {path}: {error}")]
    Open {
        /// The file.
        path: String,
        /// Why.
        #[source]
        error: std::io::Error,
    },
    /// `mmap` failed.
    #[error("mapping {len:#x} bytes of {path}: {error}")]
    Mmap {
        /// The file.
        path: String,
        /// Bytes asked for.
        len: usize,
        /// Why.
        #[source]
        error: std::io::Error,
    },
}

/// A BAR register file the driver reads and writes with sized accesses.
pub trait RegisterBar: Send {
    /// 8-bit read at `off`.
    fn read8(&self, off: u32) -> u8;
    /// 16-bit read at `off`.
    fn read16(&self, off: u32) -> u16;
    /// 32-bit read at `off`.
    fn read32(&self, off: u32) -> u32;
    /// 8-bit write at `off`.
    fn write8(&self, off: u32, v: u8);
    /// 16-bit write at `off`.
    fn write16(&self, off: u32, v: u16);
    /// 32-bit write at `off`.
    fn write32(&self, off: u32, v: u32);

    /// 64-bit register pair read as LO then HI.
    fn read64(&self, off: u32) -> u64 {
        u64::from(self.read32(off)) | u64::from(self.read32(off + 4)) << 32
    }
}

/// A BAR reached by byte-slice accesses rather than loads and stores (a socket to a device
/// server, a device model called in-process): every [`RegisterBar`] access of width N is one
/// access of N bytes, little-endian.
pub trait ByteBar: Send {
    /// Reads `data.len()` bytes at `off`.
    fn read_bytes(&self, off: u32, data: &mut [u8]);
    /// Writes `data` at `off`.
    fn write_bytes(&self, off: u32, data: &[u8]);
}

impl<T: ByteBar> RegisterBar for T {
    fn read8(&self, off: u32) -> u8 {
        let mut b = [0u8; 1];
        self.read_bytes(off, &mut b);
        b[0]
    }
    fn read16(&self, off: u32) -> u16 {
        let mut b = [0u8; 2];
        self.read_bytes(off, &mut b);
        u16::from_le_bytes(b)
    }
    fn read32(&self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.read_bytes(off, &mut b);
        u32::from_le_bytes(b)
    }
    fn write8(&self, off: u32, v: u8) {
        self.write_bytes(off, &[v]);
    }
    fn write16(&self, off: u32, v: u16) {
        self.write_bytes(off, &v.to_le_bytes());
    }
    fn write32(&self, off: u32, v: u32) {
        self.write_bytes(off, &v.to_le_bytes());
    }
}

/// A shared mapping of a file (a sysfs `resourceN`), unmapped on drop.
#[derive(Debug)]
pub struct MappedFile {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory (or MMIO); the pointer is only dereferenced through
// volatile or bounds-checked accessors, and moving it between threads is harmless.
unsafe impl Send for MappedFile {}
// SAFETY: see above; concurrent access is coordinated by the driver's owner.
unsafe impl Sync for MappedFile {}

impl MappedFile {
    /// Maps `len` bytes of `path` read-write and shared.
    pub fn map(path: &Path, len: usize) -> Result<Self, MapError> {
        let name = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|error| MapError::Open {
                path: name.clone(),
                error,
            })?;
        Self::map_fd(&file, 0, len, &name)
    }

    /// Maps `len` bytes of the open file `fd` from `offset`, read-write and shared (a region fd
    /// a vfio-user server sent); `name` says what it is in errors.
    pub fn map_fd(
        fd: &impl AsRawFd,
        offset: u64,
        len: usize,
        name: &str,
    ) -> Result<Self, MapError> {
        let error = |error| MapError::Mmap {
            path: name.to_string(),
            len,
            error,
        };
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| error(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        // SAFETY: a fresh shared mapping of an open file; the kernel checks `offset + len`
        // against the file and the descriptor may be closed after mmap returns.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(error(std::io::Error::last_os_error()));
        }
        let ptr = NonNull::new(ptr.cast())
            .ok_or_else(|| error(std::io::Error::from_raw_os_error(libc::EINVAL)))?;
        Ok(Self { ptr, len })
    }

    /// First byte of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mmap refuses length 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range mmap returned; nothing uses it afterwards.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// BAR0 mapped from `resource0`: every access is one volatile load or store of its width, so
/// each one traps to the VMM exactly once.
#[derive(Debug)]
pub struct MmioBar {
    map: MappedFile,
}

impl MmioBar {
    /// Wraps a mapping of BAR0.
    pub fn new(map: MappedFile) -> Self {
        Self { map }
    }

    fn at<T>(&self, off: u32) -> Option<*mut T> {
        let size = size_of::<T>();
        let end = (off as usize).checked_add(size)?;
        (end <= self.map.len() && (off as usize).is_multiple_of(size))
            // SAFETY: `off + size` lies inside the mapping (checked above).
            .then(|| unsafe { self.map.as_ptr().add(off as usize).cast() })
    }
}

macro_rules! mmio_access {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, off: u32) -> $t {
            match self.at::<$t>(off) {
                // SAFETY: an aligned in-bounds pointer into the live BAR mapping.
                Some(p) => unsafe { p.read_volatile() },
                None => <$t>::MAX,
            }
        }

        fn $write(&self, off: u32, v: $t) {
            if let Some(p) = self.at::<$t>(off) {
                // SAFETY: an aligned in-bounds pointer into the live BAR mapping.
                unsafe { p.write_volatile(v) }
            }
        }
    };
}

impl RegisterBar for MmioBar {
    mmio_access!(read8, write8, u8);
    mmio_access!(read16, write16, u16);
    mmio_access!(read32, write32, u32);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_maps_shared_and_bounds_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resource0");
        std::fs::write(&path, [0u8; 4096]).unwrap();
        let bar = MmioBar::new(MappedFile::map(&path, 4096).unwrap());
        bar.write32(0x10, 0xdead_beef);
        assert_eq!(bar.read32(0x10), 0xdead_beef);
        assert_eq!(bar.read16(0x12), 0xdead);
        assert_eq!(bar.read8(0x10), 0xef);
        assert_eq!(bar.read32(4096), u32::MAX, "out of bounds reads all ones");
        assert_eq!(bar.read32(0x11), u32::MAX, "misaligned reads all ones");
        bar.write32(4094, 1);
        drop(bar);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[0x10..0x14], &0xdead_beefu32.to_le_bytes());
        assert!(MappedFile::map(&dir.path().join("missing"), 4096).is_err());
    }
}
