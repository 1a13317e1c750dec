//! The [`Transport`] trait: the four system calls an NVIDIA client makes (`open` of the ctl or a
//! device node, `ioctl(fd, request, arg)`, `close`, `mmap` of a mapped memory object), plus the
//! user memory that arguments and parameter buffers live in.
//!
//! On bare metal that memory is ordinary process memory and pointers inside arguments are user
//! virtual addresses; over the vGPU it is the host-visible window and pointers are window offsets.
//! A [`Buffer`] carries both views (its bytes, and the address the driver is to be given), so the
//! RM client library above is the same for every transport.

use std::ptr::NonNull;
use std::sync::Arc;

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A file descriptor of the transport (a guest file id over the vGPU).
pub type Fd = i32;

/// Which device node to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Node {
    /// `/dev/nvidiactl`.
    Ctl,
    /// `/dev/nvidia<minor>`.
    Device(u32),
}

/// Errors of a transport.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A system call failed with this errno.
    #[error("{call} failed: errno {errno} ({})", std::io::Error::from_raw_os_error(*errno))]
    Errno {
        /// The call.
        call: &'static str,
        /// The errno (positive).
        errno: i32,
    },
    /// No user memory left for a buffer.
    #[error("no room for a {0}-byte buffer")]
    OutOfMemory(usize),
    /// An access outside a buffer or a mapping.
    #[error("{len} bytes at offset {offset:#x} are outside the {size:#x}-byte {what}")]
    OutOfBounds {
        /// "buffer" or "mapping".
        what: &'static str,
        /// Offset of the access.
        offset: u64,
        /// Its length.
        len: usize,
        /// Size of the object.
        size: u64,
    },
    /// The device under the transport failed (the vGPU driver's error, for `guest-tools`).
    #[error(transparent)]
    Device(Box<dyn std::error::Error + Send + Sync>),
}

/// Where a transport's buffers come from; [`Buffer`] gives its range back on drop.
pub trait BufferPool: Send + Sync {
    /// Returns `len` bytes at driver address `addr`.
    fn release(&self, addr: u64, len: usize);
}

/// User memory an argument or parameter buffer lives in.
pub struct Buffer {
    ptr: NonNull<u8>,
    len: usize,
    addr: u64,
    pool: Arc<dyn BufferPool>,
}

// SAFETY: a buffer owns its range exclusively until dropped; the pool keeps the memory mapped.
unsafe impl Send for Buffer {}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("len", &self.len)
            .finish()
    }
}

impl Buffer {
    /// A buffer of `len` bytes at `ptr` in this process, addressed as `addr` by the driver.
    ///
    /// # Safety
    /// `ptr..ptr + len` must be valid, writable, used by nothing else, and stay mapped while
    /// `pool` lives.
    pub unsafe fn new(ptr: NonNull<u8>, len: usize, addr: u64, pool: Arc<dyn BufferPool>) -> Self {
        Self {
            ptr,
            len,
            addr,
            pool,
        }
    }

    /// The address to put in an argument's pointer fields (a window offset over the vGPU).
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn span(&self, offset: usize, len: usize) -> Result<*mut u8, TransportError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: `offset + len <= self.len`, inside the buffer.
                Ok(unsafe { self.ptr.as_ptr().add(offset) })
            }
            _ => Err(TransportError::OutOfBounds {
                what: "buffer",
                offset: offset as u64,
                len,
                size: self.len as u64,
            }),
        }
    }

    /// Copies `data` to `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<(), TransportError> {
        let p = self.span(offset, data.len())?;
        // SAFETY: in bounds (checked); `data` is another allocation.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// Fills `out` from `offset` (ordered after earlier loads: the GPU may write the buffer).
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<(), TransportError> {
        let p = self.span(offset, out.len())?;
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    /// Writes a plain ABI struct at `offset`.
    pub fn put<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        v: &T,
    ) -> Result<(), TransportError> {
        self.write(offset, v.as_bytes())
    }

    /// Reads a plain ABI struct from `offset`.
    pub fn get<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, TransportError> {
        let mut v = T::new_zeroed();
        self.read(offset, v.as_mut_bytes())?;
        Ok(v)
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        self.pool.release(self.addr, self.len);
    }
}

/// A CPU mapping of a memory object (what `mmap` of the device file gives on bare metal).
pub trait Mapping: Send {
    /// Length in bytes.
    fn len(&self) -> u64;
    /// Whether the mapping is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads `buf.len()` bytes at `offset`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), TransportError>;
    /// Writes `data` at `offset`.
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), TransportError>;
}

/// The system-call surface of an NVIDIA client.
pub trait Transport: Send + Sync {
    /// `open("/dev/nvidiactl" | "/dev/nvidiaN")`.
    fn open(&self, node: Node) -> Result<Fd, TransportError>;
    /// `close(fd)`.
    fn close(&self, fd: Fd) -> Result<(), TransportError>;
    /// `ioctl(fd, request, arg)` with the argument in `arg`; returns what ioctl(2) returns (0 or
    /// `-errno`).
    fn ioctl(&self, fd: Fd, request: u32, arg: &Buffer) -> Result<i32, TransportError>;
    /// User memory for arguments and parameter buffers, aligned to `align` (a power of two).
    fn buffer(&self, len: usize, align: usize) -> Result<Buffer, TransportError>;
    /// Whether memory from [`Transport::buffer`] can be wrapped as an
    /// `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` that the GPU uses in place (always on bare metal; over
    /// the vGPU when the device offers window memory).
    fn os_descriptors(&self) -> bool;
    /// `mmap(fd, length)` after `RM_MAP_MEMORY` attached a mapping to `fd`.
    fn map(&self, fd: Fd, length: u64) -> Result<Box<dyn Mapping + '_>, TransportError>;
}
