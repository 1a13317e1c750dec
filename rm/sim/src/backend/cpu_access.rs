//! CPU access: what a CPU access through a handle reaches (a memory object, or a channel's
//! USERD), bounds checked, and the reads and writes through it.

use super::{status_of, SimBackend, SimObject};
use crate::memory::MemoryId;
use crate::userd::USERD_SIZE;
use rm_abi::{Handle, NvStatus};
use rm_core::backend::Gfid;

impl SimBackend {
    /// Memory a CPU access through `h` reaches: a memory object, or a channel's USERD.
    pub(super) fn cpu_target(
        &self,
        gfid: Gfid,
        client: Handle,
        h: Handle,
    ) -> Result<(MemoryId, u64, u64), NvStatus> {
        match self.get(gfid, client, h)? {
            SimObject::Memory { id } => {
                let size = self
                    .lock()
                    .memory()
                    .size(*id)
                    .map_err(|_| NvStatus::ERR_INVALID_OBJECT)?;
                Ok((*id, 0, size))
            }
            SimObject::Channel { ch, .. } => {
                let cfg = self.lock().channel_config(*ch).map_err(|e| status_of(&e))?;
                Ok((cfg.userd.memory, cfg.userd.offset, USERD_SIZE))
            }
            _ => Err(NvStatus::ERR_INVALID_OBJECT_HANDLE),
        }
    }

    /// Where `len` bytes at `offset` of what `h` reaches for the CPU lie: the memory and the
    /// offset in it. `NV_ERR_INVALID_OFFSET` when the range runs past the end.
    fn cpu_range(
        &self,
        gfid: Gfid,
        client: Handle,
        h: Handle,
        offset: u64,
        len: usize,
    ) -> Result<(MemoryId, u64), NvStatus> {
        let (id, base, size) = self.cpu_target(gfid, client, h)?;
        if offset.checked_add(len as u64).is_none_or(|e| e > size) {
            return Err(NvStatus::ERR_INVALID_OFFSET);
        }
        Ok((id, base + offset))
    }

    /// [`rm_core::backend::Backend::read_memory`].
    pub(super) fn cpu_read(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        buf: &mut [u8],
    ) -> NvStatus {
        let (id, at) = match self.cpu_range(gfid, client, memory, offset, buf.len()) {
            Ok(r) => r,
            Err(s) => return s,
        };
        match self.lock().memory().read(id, at, buf) {
            Ok(()) => NvStatus::OK,
            Err(_) => NvStatus::ERR_INVALID_OFFSET,
        }
    }

    /// [`rm_core::backend::Backend::write_memory`].
    pub(super) fn cpu_write(
        &mut self,
        gfid: Gfid,
        client: Handle,
        memory: Handle,
        offset: u64,
        data: &[u8],
    ) -> NvStatus {
        let (id, at) = match self.cpu_range(gfid, client, memory, offset, data.len()) {
            Ok(r) => r,
            Err(s) => return s,
        };
        match self.lock().memory_mut().write(id, at, data) {
            Ok(()) => NvStatus::OK,
            Err(
                crate::memory::MemoryError::HostMemoryFull { .. }
                | crate::memory::MemoryError::OwnerHostMemoryFull { .. },
            ) => NvStatus::ERR_NO_MEMORY,
            Err(_) => NvStatus::ERR_INVALID_OFFSET,
        }
    }
}
