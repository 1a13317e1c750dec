//! Per-channel USERD: the user-visible control page (`Nvc86fControl`, 512 bytes) that holds
//! GP_PUT (written by the client) and GP_GET (written by the PBDMA), in a memory object at an
//! offset.

use super::memory::{MemoryError, MemoryId, MemoryPool};

pub use rm_abi::userd::*;

/// Where one channel's USERD lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Userd {
    /// Memory object holding it.
    pub memory: MemoryId,
    /// Byte offset of the 512-byte block (512-byte aligned, as RM requires).
    pub offset: u64,
}

impl Userd {
    /// Checks that the whole block lies inside its memory object and is aligned.
    pub fn validate(&self, pool: &MemoryPool) -> Result<(), MemoryError> {
        let size = pool.size(self.memory)?;
        let ok = self.offset.is_multiple_of(USERD_SIZE)
            && self
                .offset
                .checked_add(USERD_SIZE)
                .is_some_and(|e| e <= size);
        if ok {
            Ok(())
        } else {
            Err(MemoryError::OutOfBounds {
                id: self.memory,
                offset: self.offset,
                len: USERD_SIZE,
                size,
            })
        }
    }

    /// Reads a 32-bit USERD field.
    pub fn read(&self, pool: &MemoryPool, field: u64) -> Result<u32, MemoryError> {
        pool.read_u32(self.memory, self.offset + field)
    }

    /// Writes a 32-bit USERD field.
    pub fn write(&self, pool: &mut MemoryPool, field: u64, v: u32) -> Result<(), MemoryError> {
        pool.write_u32(self.memory, self.offset + field, v)
    }
}

#[cfg(test)]
mod tests {
    use super::super::memory::Aperture;
    use super::*;

    #[test]
    fn fields_at_hopper_offsets_and_validation() {
        let mut p = MemoryPool::new(1 << 20, 1 << 20);
        let m = p.alloc(Aperture::Vidmem, 4096).unwrap();
        let u = Userd {
            memory: m,
            offset: 1024,
        };
        u.validate(&p).unwrap();
        u.write(&mut p, GP_PUT, 9).unwrap();
        assert_eq!(p.read_u32(m, 1024 + 0x8C).unwrap(), 9);
        assert_eq!(u.read(&p, GP_GET).unwrap(), 0);
        assert!(Userd {
            memory: m,
            offset: 4096 - 256
        }
        .validate(&p)
        .is_err());
        assert!(Userd {
            memory: m,
            offset: 4096
        }
        .validate(&p)
        .is_err());
        assert!(Userd {
            memory: m,
            offset: u64::MAX - 511
        }
        .validate(&p)
        .is_err());
        assert!(Userd {
            memory: MemoryId(999),
            offset: 0
        }
        .validate(&p)
        .is_err());
    }
}
