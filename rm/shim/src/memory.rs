//! The tenant's memory is this process's memory: the addresses in its escapes are plain pointers.

#[cfg(target_arch = "x86_64")]
use crate::fault_copy;
use rm_core::{GuestMemory, GuestMemoryFault};

/// Direct access to this process's memory. A NULL or near-NULL pointer, and on x86_64 any
/// unmapped or read-only one (through [`fault_copy`]), is answered with the driver's error
/// (`EFAULT`) rather than a crash.
pub struct SelfMemory;

const LOWEST: u64 = 4096;

/// Copies between the tenant's pointer and the shim's buffer; `false` when it faulted.
#[cfg(target_arch = "x86_64")]
fn copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    fault_copy::install();
    // SAFETY: one side is the shim's own buffer of `len` bytes; a bad tenant side is caught.
    unsafe { fault_copy::copy(dst, src, len) }
}

/// Copies between the tenant's pointer and the shim's buffer (a bad pointer crashes here).
#[cfg(not(target_arch = "x86_64"))]
fn copy(dst: *mut u8, src: *const u8, len: usize) -> bool {
    // SAFETY: the process handed this address to ioctl for at least this many bytes.
    unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    true
}

impl GuestMemory for SelfMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(buf.len() as u64).is_none() {
            return Err(GuestMemoryFault {
                addr,
                len: buf.len(),
            });
        }
        if copy(buf.as_mut_ptr(), addr as *const u8, buf.len()) {
            Ok(())
        } else {
            Err(GuestMemoryFault {
                addr,
                len: buf.len(),
            })
        }
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(data.len() as u64).is_none() {
            return Err(GuestMemoryFault {
                addr,
                len: data.len(),
            });
        }
        if copy(addr as *mut u8, data.as_ptr(), data.len()) {
            Ok(())
        } else {
            Err(GuestMemoryFault {
                addr,
                len: data.len(),
            })
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn unmapped_and_read_only_pointers_are_faults_not_crashes() {
        // SAFETY: test-only mappings with valid arguments.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(page, libc::MAP_FAILED);
        let mut buf = [0u8; 8];
        SelfMemory.read(page as u64, &mut buf).unwrap();
        assert!(SelfMemory.write(page as u64, &buf).is_err());
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(page, 4096) };
        assert!(SelfMemory.read(page as u64, &mut buf).is_err());
    }
}
