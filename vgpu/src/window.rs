//! The host-visible window (BAR2): host memory the guest maps through its BAR and the device
//! reads and writes directly.
//!
//! The window is a memfd mapped shared, so the VMM can register it as a KVM memory slot at the
//! BAR's guest-physical address and a future host-side RM daemon can map the same pages. The
//! device addresses it as a [`GuestMemoryMmap`] of one region starting at address 0: a window
//! address is a byte offset into BAR2, whatever guest-physical address the BAR is programmed at.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd};
use std::sync::Arc;

use rm_core::backend::{ExternalPages, PageSource};
use thiserror::Error;
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend as _, GuestMemoryMmap, GuestRegionMmap,
    MmapRegion,
};

use crate::protocol::{MAX_WINDOW_SIZE, MIN_WINDOW_SIZE};

/// Parses a window size as the command lines take it: bytes, hex (`0x...`), or a `K`/`M`/`G`
/// suffix (`64M`). `None` when it does not parse or overflows.
pub fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 10),
        b'm' | b'M' => (&s[..s.len() - 1], 20),
        b'g' | b'G' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    let n = match digits.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    n.checked_mul(1 << shift)
}

/// Errors creating a window.
#[derive(Debug, Error)]
pub enum WindowError {
    /// Not a power of two in `MIN_WINDOW_SIZE..=MAX_WINDOW_SIZE`.
    #[error("window size {0:#x} is not a power of two between 64 KiB and 16 GiB")]
    BadSize(u64),
    /// `memfd_create` or `ftruncate` failed.
    #[error("creating the window's memfd: {0}")]
    Memfd(#[source] std::io::Error),
    /// `mmap` failed.
    #[error("mapping the window: {0}")]
    Mmap(#[source] vm_memory::mmap::MmapRegionError),
    /// The region could not be made into guest memory.
    #[error("building the window's address space: {0}")]
    Region(#[source] vm_memory::GuestRegionCollectionError),
}

/// An access outside the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("{len} bytes at window offset {addr:#x} are outside the window")]
pub struct WindowFault {
    /// Window offset of the access.
    pub addr: u64,
    /// Its length.
    pub len: usize,
}

/// The host memory behind BAR2.
#[derive(Debug)]
pub struct HostWindow {
    file: Arc<File>,
    memory: GuestMemoryMmap,
    region: Arc<GuestRegionMmap>,
    pages: Arc<WindowPages>,
    size: u64,
}

/// The window's pages as a [`PageSource`]: what the RM core hands a backend as the storage of
/// an OS descriptor, so the GPU reads the guest's rings and writes its semaphores in place.
///
/// Why this is sound without any `unsafe` here: it holds its own reference to the window's
/// mapping (`GuestMemoryMmap` keeps the `MmapRegion` alive until the last clone drops, so the
/// pages stay mapped even after the device and its KVM slot are gone), and every access goes
/// through vm-memory's bounds-checked volatile copies. The guest may change the bytes at any
/// moment; the backend treats what it reads as untrusted, as a GPU treats memory.
#[derive(Debug)]
pub struct WindowPages {
    memory: GuestMemoryMmap,
    size: u64,
}

impl PageSource for WindowPages {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        in_window(self.size, offset, buf.len())
            && self.memory.read_slice(buf, GuestAddress(offset)).is_ok()
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> bool {
        in_window(self.size, offset, data.len())
            && self.memory.write_slice(data, GuestAddress(offset)).is_ok()
    }

    /// The window's mapping in vgpud: it stays mapped while this object lives (see above).
    fn host_address(&self) -> Option<*mut u8> {
        self.memory.get_host_address(GuestAddress(0)).ok()
    }
}

fn in_window(size: u64, addr: u64, len: usize) -> bool {
    addr.checked_add(len as u64).is_some_and(|end| end <= size)
}

impl HostWindow {
    /// Creates a zero-filled window of `size` bytes (a power of two, 64 KiB ..= 16 GiB).
    pub fn new(size: u64) -> Result<Self, WindowError> {
        if !size.is_power_of_two() || !(MIN_WINDOW_SIZE..=MAX_WINDOW_SIZE).contains(&size) {
            return Err(WindowError::BadSize(size));
        }
        let len = usize::try_from(size).map_err(|_| WindowError::BadSize(size))?;
        // SAFETY: the name is a valid NUL-terminated string and the flags are valid.
        let fd = unsafe {
            libc::memfd_create(
                c"vgpu-window".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(WindowError::Memfd(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let file = Arc::new(unsafe { File::from_raw_fd(fd) });
        file.set_len(size).map_err(WindowError::Memfd)?;
        // Every VMM (or host process) attached to the instance gets this fd. Sealed, none of
        // them can shrink it under vgpud's mapping, which would make vgpud's next access to the
        // window a SIGBUS that ends every instance; writes and shared mappings stay allowed.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor this function owns; no pointers.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(WindowError::Memfd(std::io::Error::last_os_error()));
        }
        let mmap = MmapRegion::from_file(FileOffset::from_arc(file.clone(), 0), len)
            .map_err(WindowError::Mmap)?;
        let region = Arc::new(
            GuestRegionMmap::new(mmap, GuestAddress(0)).ok_or(WindowError::BadSize(size))?,
        );
        let memory =
            GuestMemoryMmap::from_arc_regions(vec![region.clone()]).map_err(WindowError::Region)?;
        let pages = Arc::new(WindowPages {
            memory: memory.clone(),
            size,
        });
        Ok(Self {
            file,
            memory,
            region,
            pages,
            size,
        })
    }

    /// Size in bytes (BAR2's size).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of the first byte. The VMM passes it as `userspace_addr` of the KVM memory
    /// slot that backs BAR2; it stays valid while the window lives.
    pub fn host_ptr(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    /// The memfd behind the window (for a process that maps the same pages).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// The window as guest memory at addresses `0..size` (what the virtqueue runs over).
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.memory
    }

    /// Checks that `addr..addr + len` lies inside the window.
    pub fn check(&self, addr: u64, len: usize) -> Result<(), WindowFault> {
        if in_window(self.size, addr, len) {
            Ok(())
        } else {
            Err(WindowFault { addr, len })
        }
    }

    /// The window range `addr..addr + len` as pages a GPU backend may keep and use in place
    /// (see [`WindowPages`]).
    pub fn external_pages(&self, addr: u64, len: u64) -> Result<ExternalPages, WindowFault> {
        let source: Arc<dyn PageSource> = self.pages.clone();
        ExternalPages::new(source, addr, len).ok_or(WindowFault {
            addr,
            len: usize::try_from(len).unwrap_or(usize::MAX),
        })
    }

    /// Fills `buf` from window offset `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), WindowFault> {
        self.check(addr, buf.len())?;
        self.memory
            .read_slice(buf, GuestAddress(addr))
            .map_err(|_| WindowFault {
                addr,
                len: buf.len(),
            })
    }

    /// Writes `data` at window offset `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), WindowFault> {
        self.check(addr, data.len())?;
        self.memory
            .write_slice(data, GuestAddress(addr))
            .map_err(|_| WindowFault {
                addr,
                len: data.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_holding_the_fd_cannot_resize_the_window() {
        let w = HostWindow::new(1 << 20).unwrap();
        // What a VMM or a host-process guest holds: a duplicate of the fd vgpud sends.
        let file = File::from(w.fd().try_clone_to_owned().unwrap());
        for len in [0, 4096, 2 << 20] {
            let e = file.set_len(len).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EPERM), "set_len({len})");
        }
        assert_eq!(file.metadata().unwrap().len(), 1 << 20);
        w.write(0x1000, &[7]).unwrap();
    }

    #[test]
    fn sizes_must_be_powers_of_two_in_range() {
        assert!(matches!(
            HostWindow::new(3 << 20),
            Err(WindowError::BadSize(_))
        ));
        assert!(matches!(
            HostWindow::new(4096),
            Err(WindowError::BadSize(_))
        ));
        assert!(matches!(
            HostWindow::new(32 << 30),
            Err(WindowError::BadSize(_))
        ));
        assert_eq!(HostWindow::new(1 << 20).unwrap().size(), 1 << 20);
    }

    #[test]
    fn accesses_are_bounds_checked() {
        let w = HostWindow::new(MIN_WINDOW_SIZE).unwrap();
        w.write(MIN_WINDOW_SIZE - 4, &[1, 2, 3, 4]).unwrap();
        assert!(w.write(MIN_WINDOW_SIZE - 3, &[0; 4]).is_err());
        assert!(w.read(u64::MAX - 1, &mut [0; 4]).is_err());
        let mut b = [0u8; 4];
        w.read(MIN_WINDOW_SIZE - 4, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
    }

    #[test]
    fn external_pages_share_the_window_bytes_within_their_range() {
        let w = HostWindow::new(MIN_WINDOW_SIZE).unwrap();
        assert!(w.external_pages(MIN_WINDOW_SIZE - 0x1000, 0x2000).is_err());
        assert!(w.external_pages(u64::MAX - 1, 2).is_err());
        let p = w.external_pages(0x2000, 0x1000).unwrap();
        assert!(p.write(4, &[9, 8]));
        let mut b = [0u8; 2];
        w.read(0x2004, &mut b).unwrap();
        assert_eq!(b, [9, 8]);
        assert!(!p.write(0xfff, &[1, 2]));
        // The pages outlive the window object itself.
        drop(w);
        let mut c = [0u8; 2];
        assert!(p.read(4, &mut c));
        assert_eq!(c, [9, 8]);
    }

    #[test]
    fn host_pointer_sees_device_writes() {
        let w = HostWindow::new(MIN_WINDOW_SIZE).unwrap();
        w.write(0x100, &[0xab]).unwrap();
        // SAFETY: 0x100 is inside the live mapping of `w`.
        let byte = unsafe { *w.host_ptr().add(0x100) };
        assert_eq!(byte, 0xab);
    }
}
