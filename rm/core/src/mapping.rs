//! CPU mappings (`RM_MAP_MEMORY`, `RM_UNMAP_MEMORY`, `RM_UPDATE_DEVICE_MAPPING_INFO`) and GPU
//! virtual mappings (`RM_MAP_MEMORY_DMA`, `RM_UNMAP_MEMORY_DMA`).

use super::dispatch::Caller;
use super::fd::MmapContext;
use super::objects::{Client, ObjectKind};
use super::vgpu::Vgpu;
use super::Rm;
use crate::backend::Backend;
use rm_abi::nvos::{
    Nvos33Parameters, Nvos34Parameters, Nvos46Parameters, Nvos47Parameters, Nvos56Parameters,
};
use rm_abi::{Handle, NvStatus};

/// Most live mappings of one object, so a guest cannot grow host state without bound.
const MAX_MAPPINGS_PER_OBJECT: usize = 1024;

/// The backend and the caller's vGPU, or `None` when `c.gfid` has none.
fn backend_and_vgpu<B: Backend>(rm: &mut Rm<B>, c: Caller) -> Option<(&mut B, &mut Vgpu)> {
    let (backend, _, vgpu) = rm.parts(c.gfid)?;
    Some((backend, vgpu))
}

/// The backend and the caller's client `h` (of its vGPU, reachable from its fd), or `None`.
fn backend_and_client<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    h: Handle,
) -> Option<(&mut B, &mut Client)> {
    let (backend, vgpu) = backend_and_vgpu(rm, c)?;
    Some((backend, vgpu.client_for_mut(c.fd, h)?))
}

/// `RM_MAP_MEMORY`: a memory or usermode object under `hDevice` (device or subdevice), range
/// inside the object, and a mapping context on `fd` (an open fd of this guest without one).
pub(super) fn map_memory<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &mut Nvos33Parameters,
    fd: i32,
) -> NvStatus {
    let Some((backend, vgpu)) = backend_and_vgpu(rm, c) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(client) = vgpu.client_for(c.fd, p.hClient) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(dev) = client.get(p.hDevice) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    if !matches!(dev.kind, ObjectKind::Device | ObjectKind::Subdevice) {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    }
    let Some(obj) = client.get(p.hMemory) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    let end = p.offset.checked_add(p.length);
    match &obj.kind {
        ObjectKind::Memory(m) if p.length != 0 && end.is_some_and(|e| e <= m.size) => {}
        ObjectKind::Memory(_) => return NvStatus::ERR_INVALID_LIMIT,
        ObjectKind::Usermode if p.length != 0 && end.is_some() => {}
        ObjectKind::Usermode => return NvStatus::ERR_INVALID_LIMIT,
        _ => return NvStatus::ERR_INVALID_OBJECT_HANDLE,
    }
    if client.device_of(p.hDevice) != client.device_of(p.hMemory) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    if obj.cpu_mappings.len() >= MAX_MAPPINGS_PER_OBJECT {
        return NvStatus::ERR_INSUFFICIENT_RESOURCES;
    }
    match vgpu.fds.get(fd) {
        Some(st) if st.mmap.is_none() => {}
        Some(_) => return NvStatus::ERR_STATE_IN_USE,
        None => return NvStatus::ERR_INVALID_ARGUMENT,
    }
    let (guest_client, host_client) = (client.guest, client.host);
    let mut q = *p;
    q.hClient = host_client;
    let status = backend.map_memory(c.gfid, &mut q);
    if !status.is_ok() {
        return status;
    }
    p.pLinearAddress = q.pLinearAddress;
    let client = vgpu
        .clients
        .get_mut(&guest_client)
        .expect("client checked above");
    if let Some(o) = client.get_mut(p.hMemory) {
        o.cpu_mappings.push((q.pLinearAddress, p.hDevice));
    }
    if let Some(st) = vgpu.fds.get_mut(fd) {
        st.mmap = Some(MmapContext {
            client: guest_client,
            memory: p.hMemory,
            offset: p.offset,
            length: p.length,
            cookie: q.pLinearAddress,
        });
    }
    NvStatus::OK
}

/// `RM_UNMAP_MEMORY`: the cookie must be a live mapping of that object.
pub(super) fn unmap_memory<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &mut Nvos34Parameters,
) -> NvStatus {
    let Some((backend, vgpu)) = backend_and_vgpu(rm, c) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(client) = vgpu.client_for_mut(c.fd, p.hClient) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let (guest_client, host_client) = (client.guest, client.host);
    let Some(obj) = client.get_mut(p.hMemory) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    let Some(i) = obj
        .cpu_mappings
        .iter()
        .position(|&(cookie, _)| cookie == p.pLinearAddress)
    else {
        return NvStatus::ERR_INVALID_ARGUMENT;
    };
    let mut q = *p;
    q.hClient = host_client;
    let status = backend.unmap_memory(c.gfid, &mut q);
    if status.is_ok() {
        obj.cpu_mappings.remove(i);
        for (_, st) in vgpu.fds.iter_mut() {
            if st
                .mmap
                .is_some_and(|m| m.client == guest_client && m.cookie == p.pLinearAddress)
            {
                st.mmap = None;
            }
        }
    }
    status
}

/// `RM_UPDATE_DEVICE_MAPPING_INFO`: the guest moved a mapping in its own address space. The
/// core does not track guest CPU addresses, so it only checks the object has a live mapping.
pub(super) fn update_device_mapping_info<B: Backend>(
    rm: &Rm<B>,
    c: Caller,
    p: &Nvos56Parameters,
) -> NvStatus {
    let Some(client) = rm
        .vgpus
        .get(&c.gfid)
        .and_then(|v| v.client_for(c.fd, p.hClient))
    else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    match client.get(p.hMemory) {
        Some(o) if !o.cpu_mappings.is_empty() => NvStatus::OK,
        Some(_) => NvStatus::ERR_INVALID_ARGUMENT,
        None => NvStatus::ERR_INVALID_OBJECT_HANDLE,
    }
}

/// `RM_MAP_MEMORY_DMA`: memory of this client mapped into a VA space (`hDma`) under the same
/// device, range inside the memory.
pub(super) fn map_memory_dma<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &mut Nvos46Parameters,
) -> NvStatus {
    let Some((backend, client)) = backend_and_client(rm, c, p.hClient) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    if !matches!(
        client.get(p.hDevice).map(|o| &o.kind),
        Some(ObjectKind::Device)
    ) {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    }
    if !matches!(
        client.get(p.hDma).map(|o| &o.kind),
        Some(ObjectKind::VaSpace)
    ) {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    }
    let Some(ObjectKind::Memory(m)) = client.get(p.hMemory).map(|o| &o.kind) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    let device = Some(p.hDevice);
    if client.device_of(p.hDma) != device || client.device_of(p.hMemory) != device {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    if p.length == 0 || p.offset.checked_add(p.length).is_none_or(|e| e > m.size) {
        return NvStatus::ERR_INVALID_LIMIT;
    }
    if m.dma_mappings.len() >= MAX_MAPPINGS_PER_OBJECT {
        return NvStatus::ERR_INSUFFICIENT_RESOURCES;
    }
    let mut q = *p;
    q.hClient = client.host;
    let status = backend.map_memory_dma(c.gfid, &mut q);
    if !status.is_ok() {
        return status;
    }
    p.dmaOffset = q.dmaOffset;
    if let Some(ObjectKind::Memory(m)) = client.get_mut(p.hMemory).map(|o| &mut o.kind) {
        m.dma_mappings.push((p.hDma, q.dmaOffset));
    }
    NvStatus::OK
}

/// `RM_UNMAP_MEMORY_DMA`: the (VA space, GPU VA) pair must be a live mapping of that memory.
pub(super) fn unmap_memory_dma<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &mut Nvos47Parameters,
) -> NvStatus {
    let Some((backend, client)) = backend_and_client(rm, c, p.hClient) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let host = client.host;
    let Some(ObjectKind::Memory(m)) = client.get_mut(p.hMemory).map(|o| &mut o.kind) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    let Some(i) = m
        .dma_mappings
        .iter()
        .position(|&(va, off)| va == p.hDma && off == p.dmaOffset)
    else {
        return NvStatus::ERR_INVALID_ARGUMENT;
    };
    let mut q = *p;
    q.hClient = host;
    let status = backend.unmap_memory_dma(c.gfid, &mut q);
    if status.is_ok() {
        m.dma_mappings.remove(i);
    }
    status
}
