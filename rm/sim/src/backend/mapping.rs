//! Mappings: CPU mappings of memory, a channel's USERD or usermode (each recorded under the
//! cookie returned as its address), and GPU mappings of memory into a VA space (at a fixed VA
//! or the next one the backend hands out).

use super::{st, status_of, CpuMapping, SimBackend, SimObject, DMA_VA_ALIGN};
use crate::memory::PAGE_SIZE;
use crate::vaspace::VA_BITS;
use rm_abi::nvos::{
    Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters,
    NVOS46_FLAGS_DMA_OFFSET_FIXED,
};
use rm_abi::NvStatus;
use rm_core::backend::Gfid;

/// The length a mapping of `length` bytes at `offset` of an object of `size` bytes covers
/// (`length` 0: to the end), or `None` when that is empty or runs past the end.
fn mapped_length(offset: u64, length: u64, size: u64) -> Option<u64> {
    let length = if length == 0 {
        size.saturating_sub(offset)
    } else {
        length
    };
    (length != 0 && offset.checked_add(length).is_some_and(|e| e <= size)).then_some(length)
}

impl SimBackend {
    /// [`rm_core::backend::Backend::map_memory`].
    pub(super) fn map_cpu(&mut self, gfid: Gfid, params: &mut Nvos33Parameters) -> NvStatus {
        let (client, object) = (params.hClient, params.hMemory);
        let size = match self.get(gfid, client, object) {
            Ok(SimObject::Usermode) => PAGE_SIZE,
            Ok(_) => match self.cpu_target(gfid, client, object) {
                Ok((_, _, size)) => size,
                Err(s) => return s,
            },
            Err(s) => return s,
        };
        if mapped_length(params.offset, params.length, size).is_none() {
            return NvStatus::ERR_INVALID_LIMIT;
        }
        let cookie = self.next_cookie << 32;
        self.next_cookie += 1;
        self.cpu_maps.insert(
            cookie,
            CpuMapping {
                gfid,
                client,
                object,
            },
        );
        params.pLinearAddress = cookie;
        NvStatus::OK
    }

    /// [`rm_core::backend::Backend::unmap_memory`].
    pub(super) fn unmap_cpu(&mut self, gfid: Gfid, params: &mut Nvos34Parameters) -> NvStatus {
        match self.cpu_maps.get(&params.pLinearAddress) {
            Some(m)
                if m.gfid == gfid && m.client == params.hClient && m.object == params.hMemory =>
            {
                self.cpu_maps.remove(&params.pLinearAddress);
                NvStatus::OK
            }
            _ => NvStatus::ERR_INVALID_ARGUMENT,
        }
    }

    /// [`rm_core::backend::Backend::map_memory_dma`].
    pub(super) fn map_dma(&mut self, gfid: Gfid, params: &mut Nvos46Parameters) -> NvStatus {
        let client = params.hClient;
        let mem = match self.memory_id(gfid, client, params.hMemory) {
            Ok(m) => m,
            Err(s) => return s,
        };
        let (vas, next_va) = match self.get(gfid, client, params.hDma) {
            Ok(SimObject::VaSpace { id, next_va }) => (*id, *next_va),
            Ok(_) => return NvStatus::ERR_INVALID_OBJECT_HANDLE,
            Err(s) => return s,
        };
        let size = match self.lock().memory().size(mem) {
            Ok(s) => s,
            Err(_) => return NvStatus::ERR_INVALID_OBJECT,
        };
        let length = match mapped_length(params.offset, params.length, size) {
            Some(l) if params.offset.is_multiple_of(PAGE_SIZE) => l,
            _ => return NvStatus::ERR_INVALID_OFFSET,
        };
        let len = length.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let fixed = params.flags & NVOS46_FLAGS_DMA_OFFSET_FIXED != 0;
        let va = if fixed { params.dmaOffset } else { next_va };
        if va.checked_add(len).is_none_or(|e| e > 1 << VA_BITS) {
            return NvStatus::ERR_NO_MEMORY;
        }
        let r = self.lock().map(vas, va, mem, params.offset, len);
        if let Err(e) = r {
            return status_of(&e);
        }
        if !fixed {
            if let Some(SimObject::VaSpace { next_va, .. }) =
                self.objects.get_mut(&(client, params.hDma))
            {
                *next_va = (va + len).div_ceil(DMA_VA_ALIGN) * DMA_VA_ALIGN;
            }
        }
        params.dmaOffset = va;
        NvStatus::OK
    }

    /// [`rm_core::backend::Backend::unmap_memory_dma`].
    pub(super) fn unmap_dma(&mut self, gfid: Gfid, params: &mut Nvos47Parameters) -> NvStatus {
        let vas = match self.vaspace_id(gfid, params.hClient, params.hDma) {
            Ok(v) => v,
            Err(s) => return s,
        };
        let mem = match self.memory_id(gfid, params.hClient, params.hMemory) {
            Ok(m) => m,
            Err(s) => return s,
        };
        let mut gpu = self.lock();
        let owned = gpu
            .vaspace(vas)
            .and_then(|v| v.translate(params.dmaOffset))
            .is_some_and(|(m, _, _)| m == mem);
        if !owned {
            return NvStatus::ERR_INVALID_OFFSET;
        }
        st(gpu.unmap(vas, params.dmaOffset))
    }
}
