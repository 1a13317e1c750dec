//! The tenant's memory is this process's memory: the addresses in its escapes are plain pointers.
//!
//! Copies go through `process_vm_readv`/`process_vm_writev` on this process, which fail with
//! `EFAULT` on an unmapped or read-only range as the driver's `copy_from_user`/`copy_to_user`
//! do, where a plain `memcpy` would crash the process (and another thread may unmap the range
//! between a check and the copy). Where those calls are not allowed (a seccomp profile that
//! refuses them), copies fall back to plain memory accesses.

use std::sync::atomic::{AtomicBool, Ordering};

use rm_core::{GuestMemory, GuestMemoryFault};

/// Access to this process's memory.
#[derive(Debug)]
pub struct SelfMemory;

const LOWEST: u64 = 4096;

/// Set once `process_vm_*` was refused (`ENOSYS`, `EPERM`): plain copies from then on.
static DIRECT: AtomicBool = AtomicBool::new(false);

/// Which way a copy goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// From the address into the local buffer.
    Read,
    /// From the local buffer to the address.
    Write,
}

/// Copies `len` bytes between `local` and this process's address `remote`; false on a fault.
fn copy(direction: Direction, local: *mut u8, remote: u64, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    if !DIRECT.load(Ordering::Relaxed) {
        let l = libc::iovec {
            iov_base: local.cast(),
            iov_len: len,
        };
        let r = libc::iovec {
            iov_base: remote as *mut libc::c_void,
            iov_len: len,
        };
        // SAFETY: both iovecs describe `len` bytes; the kernel checks the remote one and
        // fails with EFAULT instead of touching an unmapped or read-only page. `local` is a
        // buffer of ours of that length.
        let n = unsafe {
            match direction {
                Direction::Read => libc::process_vm_readv(libc::getpid(), &l, 1, &r, 1, 0),
                Direction::Write => libc::process_vm_writev(libc::getpid(), &l, 1, &r, 1, 0),
            }
        };
        if n == len as isize {
            return true;
        }
        let errno = std::io::Error::last_os_error().raw_os_error();
        if n >= 0 || !matches!(errno, Some(libc::ENOSYS) | Some(libc::EPERM)) {
            return false;
        }
        DIRECT.store(true, Ordering::Relaxed);
    }
    // SAFETY: the process handed this address to ioctl for at least `len` bytes; without
    // `process_vm_*` a bad pointer crashes only the process that passed it, as its own
    // `memcpy` would.
    unsafe {
        match direction {
            Direction::Read => std::ptr::copy_nonoverlapping(remote as *const u8, local, len),
            Direction::Write => std::ptr::copy_nonoverlapping(local, remote as *mut u8, len),
        }
    }
    true
}

fn fault(addr: u64, len: usize) -> GuestMemoryFault {
    GuestMemoryFault { addr, len }
}

impl GuestMemory for SelfMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(buf.len() as u64).is_none() {
            return Err(fault(addr, buf.len()));
        }
        if copy(Direction::Read, buf.as_mut_ptr(), addr, buf.len()) {
            Ok(())
        } else {
            Err(fault(addr, buf.len()))
        }
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(data.len() as u64).is_none() {
            return Err(fault(addr, data.len()));
        }
        // process_vm_writev only reads the local buffer.
        if copy(Direction::Write, data.as_ptr().cast_mut(), addr, data.len()) {
            Ok(())
        } else {
            Err(fault(addr, data.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_refuses_null() {
        let src = [1u8, 2, 3, 4];
        let mut dst = [0u8; 4];
        SelfMemory.read(src.as_ptr() as u64, &mut dst).unwrap();
        assert_eq!(dst, src);
        assert!(SelfMemory.read(0, &mut dst).is_err());
        assert!(SelfMemory.write(16, &dst).is_err());
        let mut out = [0u8; 4];
        SelfMemory.write(out.as_mut_ptr() as u64, &src).unwrap();
        assert_eq!(out, src);
    }

    /// Found by review: a pointer to memory that is not mapped (or not writable) crashed the
    /// tenant with SIGSEGV where the driver answers EFAULT.
    #[test]
    fn unmapped_and_read_only_memory_fault_instead_of_crashing() {
        // SAFETY: plain anonymous mappings of two pages, changed and unmapped only here.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let addr = base as u64;
        // SAFETY: the second page of the mapping above.
        unsafe {
            assert_eq!(
                libc::mprotect(base.cast::<u8>().add(4096).cast(), 4096, libc::PROT_READ),
                0
            )
        };
        let data = [7u8; 16];
        SelfMemory.write(addr, &data).unwrap();
        assert!(
            SelfMemory.write(addr + 4096, &data).is_err(),
            "read-only page"
        );
        assert!(
            SelfMemory.write(addr + 4096 - 8, &data).is_err(),
            "a copy that runs into it"
        );
        let mut back = [0u8; 16];
        SelfMemory.read(addr + 4096, &mut back).unwrap();
        // SAFETY: the mapping above.
        assert_eq!(unsafe { libc::munmap(base, 8192) }, 0);
        assert!(SelfMemory.read(addr, &mut back).is_err(), "unmapped");
        assert!(SelfMemory.write(addr, &data).is_err(), "unmapped");
    }
}
