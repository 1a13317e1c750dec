//! The tenant's memory is this process's memory: the addresses in its escapes are plain pointers.

use rm_core::{GuestMemory, GuestMemoryFault};

/// Direct access to this process's memory. The lowest page faults (a NULL or near-NULL pointer is
/// answered with the driver's error rather than a crash); any other bad pointer crashes only the
/// process that passed it, as its own `memcpy` would.
pub struct SelfMemory;

const LOWEST: u64 = 4096;

impl GuestMemory for SelfMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(buf.len() as u64).is_none() {
            return Err(GuestMemoryFault {
                addr,
                len: buf.len(),
            });
        }
        // SAFETY: the process handed this address to ioctl for at least this many bytes.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        if addr < LOWEST || addr.checked_add(data.len() as u64).is_none() {
            return Err(GuestMemoryFault {
                addr,
                len: data.len(),
            });
        }
        // SAFETY: as for `read`; the driver would write the same bytes there.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) };
        Ok(())
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
}
