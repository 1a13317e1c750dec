//! `RM_ALLOC` / `RM_ALLOC_OBJECT` / `RM_ALLOC_MEMORY`: class checks, param copy-in by the class
//! table (RM ignores `paramsSize`), validation by the object's kind, quota, backend, copy-out.

use super::dispatch::Caller;
use super::guest_memory::GuestMemory;
use super::objects::memory::{Memory, FB_PAGE, MAX_ALLOC_BYTES};
use super::objects::{self, AllocContext, Client, Object, ObjectKind};
use super::vgpu::MAX_CLIENTS_PER_VGPU;
use super::Rm;
use crate::backend::{AllocRequest, Backend};
use rm_abi::alloc_params::NvRootAllocParams;
use rm_abi::class::{self, AllocParams};
use rm_abi::ctrl::{
    NvC36fCtrlGpfifoGetWorkSubmitTokenParams, NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
};
use rm_abi::nvos::{Nvos02Parameters, Nvos21Parameters, Nvos64Parameters};
use rm_abi::{read_struct, write_struct, Handle, NvStatus};
use std::collections::BTreeSet;
use zerocopy::IntoBytes;

/// The fields of NVOS21/NVOS64/NVOS05 the alloc path uses.
#[derive(Debug, Clone, Copy)]
pub(super) struct AllocArgs {
    /// Client.
    pub h_root: Handle,
    /// Parent.
    pub h_parent: Handle,
    /// New handle, in/out.
    pub h_new: Handle,
    /// Class, in/out (root classes are rewritten to `NV01_ROOT_CLIENT`).
    pub class: u32,
    /// Guest address of the params, or 0.
    pub p_alloc_parms: u64,
}

impl AllocArgs {
    /// From the legacy layout.
    pub fn from_nvos21(p: &Nvos21Parameters) -> Self {
        Self {
            h_root: p.hRoot,
            h_parent: p.hObjectParent,
            h_new: p.hObjectNew,
            class: p.hClass,
            p_alloc_parms: p.pAllocParms,
        }
    }

    /// From the access-rights layout (`pRightsRequested` is not used: every guest object gets
    /// the default rights).
    pub fn from_nvos64(p: &Nvos64Parameters) -> Self {
        Self {
            h_root: p.hRoot,
            h_parent: p.hObjectParent,
            h_new: p.hObjectNew,
            class: p.hClass,
            p_alloc_parms: p.pAllocParms,
        }
    }
}

/// Whether an `RM_ALLOC` argument (either layout) allocates an event class, which the device
/// node accepts too.
pub(super) fn is_event_alloc(buf: &[u8]) -> bool {
    buf.get(12..16)
        .is_some_and(|b| class::is_event_class(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
}

/// `RM_ALLOC_MEMORY`: only `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` (0x71), which wraps guest memory
/// at `pMemory` (`limit + 1` bytes) as a system memory object under the device `hObjectParent`,
/// the way the driver wraps a user buffer. The guest memory must be able to share its pages
/// (the vGPU's window: `pMemory` is a window offset) and the backend must use them in place;
/// otherwise `NV_ERR_NOT_SUPPORTED`. `pMemory` must be 4 KiB aligned and the size is rounded up
/// to 4 KiB (the range must stay inside the guest memory: `NV_ERR_INVALID_ADDRESS`). Nothing is
/// charged to the quotas: the pages are the guest's own.
pub(super) fn rm_alloc_memory<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &mut Nvos02Parameters,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    if p.hClass != class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR {
        return NvStatus::ERR_INVALID_CLASS;
    }
    let size = match p.limit.checked_add(1) {
        Some(s) if s <= MAX_ALLOC_BYTES => s.div_ceil(FB_PAGE) * FB_PAGE,
        _ => return NvStatus::ERR_INVALID_LIMIT,
    };
    if !p.pMemory.is_multiple_of(FB_PAGE) {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    let pages = match mem.external_pages(p.pMemory, size) {
        None => return NvStatus::ERR_NOT_SUPPORTED,
        Some(Err(_)) => return NvStatus::ERR_INVALID_ADDRESS,
        Some(Ok(pages)) => pages,
    };
    let rm_room = rm.has_room();
    let Some((backend, _, vgpu)) = rm.parts(c.gfid) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let vgpu_room = rm_room && vgpu.has_room();
    let Some(client) = vgpu.client_for_mut(c.fd, p.hRoot) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    match client.get(p.hObjectParent) {
        Some(o) if matches!(o.kind, ObjectKind::Device) => {}
        _ => return NvStatus::ERR_INVALID_OBJECT_PARENT,
    }
    if !client.has_room() || !vgpu_room {
        return NvStatus::ERR_INSUFFICIENT_RESOURCES;
    }
    let h = match p.hObjectNew {
        0 => client.pick_handle(),
        h if client.get(h).is_some() => return NvStatus::ERR_INSERT_DUPLICATE_NAME,
        h => h,
    };
    let req = AllocRequest {
        gfid: c.gfid,
        client: client.host,
        parent: client.to_host(p.hObjectParent),
        object: h,
        class: p.hClass,
    };
    let status = backend.alloc_os_descriptor(&req, pages);
    if !status.is_ok() {
        return status;
    }
    client.insert(
        h,
        Object {
            class: p.hClass,
            parent: p.hObjectParent,
            children: BTreeSet::new(),
            dependants: BTreeSet::new(),
            depends_on: Vec::new(),
            cpu_mappings: Vec::new(),
            kind: ObjectKind::Memory(Memory {
                video: false,
                size,
                fb_charge: 0,
                sysmem_charge: 0,
                dma_mappings: Vec::new(),
            }),
        },
    );
    p.hObjectNew = h;
    NvStatus::OK
}

/// Allocates one object for the guest.
pub(super) fn rm_alloc<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    a: &mut AllocArgs,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    if matches!(
        a.class,
        class::NV01_ROOT | class::NV01_ROOT_NON_PRIV | class::NV01_ROOT_CLIENT
    ) {
        a.class = class::NV01_ROOT_CLIENT;
        return alloc_client(rm, c, a, mem);
    }
    let rm_room = rm.has_room();
    let Some((backend, gpu, vgpu)) = rm.parts(c.gfid) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(client) = vgpu.client_for(c.fd, a.h_root) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(parent) = client.get(a.h_parent) else {
        return NvStatus::ERR_INVALID_OBJECT_PARENT;
    };
    let modeled = objects::MODELED_CLASSES.contains(&a.class) && gpu.classes.contains(&a.class);
    let Some(info) = class::class_info(a.class).filter(|_| modeled) else {
        return NvStatus::ERR_INVALID_CLASS;
    };
    let (size, required) = match info.params {
        AllocParams::None => (0, false),
        AllocParams::Optional(n) => (n as usize, false),
        AllocParams::Required(n) => (n as usize, true),
        AllocParams::Unknown => return NvStatus::ERR_INVALID_CLASS,
    };
    if required && a.p_alloc_parms == 0 {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let mut params = vec![0u8; size];
    if a.p_alloc_parms != 0 && mem.read(a.p_alloc_parms, &mut params).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    let guest_params = params.clone();
    if !rm_room || !client.has_room() || !vgpu.has_room() {
        return NvStatus::ERR_INSUFFICIENT_RESOURCES;
    }
    let handle = match a.h_new {
        0 => None,
        h if client.get(h).is_some() => return NvStatus::ERR_INSERT_DUPLICATE_NAME,
        h => Some(h),
    };
    let ctx = AllocContext {
        client,
        parent_handle: a.h_parent,
        parent,
        gpu,
    };
    let built = match objects::construct(&ctx, a.class, &mut params) {
        Ok(b) => b,
        Err(s) => return s,
    };
    if matches!(built.kind, ObjectKind::Channel(_))
        && vgpu.channels_held() >= vgpu.config.max_channels
    {
        return NvStatus::ERR_NO_FREE_FIFOS;
    }
    if vgpu.fb_used.saturating_add(built.fb_charge) > vgpu.config.fb_quota
        || vgpu.sysmem_used.saturating_add(built.sysmem_charge) > vgpu.config.sysmem_quota
    {
        return NvStatus::ERR_NO_MEMORY;
    }
    let (host_client, host_parent) = (client.host, client.to_host(a.h_parent));
    let client = vgpu
        .client_for_mut(c.fd, a.h_root)
        .expect("client checked above");
    let h = handle.unwrap_or_else(|| client.pick_handle());
    let req = AllocRequest {
        gfid: c.gfid,
        client: host_client,
        parent: host_parent,
        object: h,
        class: a.class,
    };
    let status = backend.alloc(&req, &mut params);
    if !status.is_ok() {
        return status;
    }
    let mut kind = built.kind;
    let mut token = None;
    if let ObjectKind::Channel(ch) = &mut kind {
        let mut t = NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default();
        if backend
            .control(
                c.gfid,
                host_client,
                h,
                NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
                t.as_mut_bytes(),
            )
            .is_ok()
        {
            ch.work_submit_token = Some(t.workSubmitToken);
            token = Some(t.workSubmitToken);
        }
    }
    client.insert(
        h,
        Object {
            class: a.class,
            parent: a.h_parent,
            children: BTreeSet::new(),
            dependants: BTreeSet::new(),
            depends_on: built.depends_on,
            cpu_mappings: Vec::new(),
            kind,
        },
    );
    vgpu.fb_used += built.fb_charge;
    vgpu.sysmem_used += built.sysmem_charge;
    if let Some(t) = token {
        vgpu.tokens.insert(t, (a.h_root, h));
    }
    restore_guest_handles(a.class, &guest_params, &mut params);
    a.h_new = h;
    if a.p_alloc_parms != 0 && mem.write(a.p_alloc_parms, &params).is_err() {
        rm.free_object(c.gfid, a.h_root, h);
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    NvStatus::OK
}

/// Puts back the guest's view of fields that carried client handles, which the core translated
/// to host handles for the backend.
fn restore_guest_handles(class_id: u32, guest: &[u8], params: &mut [u8]) {
    let offsets: &[usize] = match class_id {
        class::NV01_DEVICE_0 => &[4],
        class::NV01_EVENT_OS_EVENT => &[0, 4],
        _ => &[],
    };
    for &o in offsets {
        if let (Some(src), Some(dst)) = (guest.get(o..o + 4), params.get_mut(o..o + 4)) {
            dst.copy_from_slice(src);
        }
    }
}

/// Allocates a client (`NV01_ROOT*` rewritten to `NV01_ROOT_CLIENT`), owned by the caller's
/// client context fd.
fn alloc_client<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    a: &mut AllocArgs,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    let rm_room = rm.has_room();
    let Some((backend, _, vgpu)) = rm.parts(c.gfid) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let mut params = NvRootAllocParams::default();
    if a.p_alloc_parms != 0 && mem.read(a.p_alloc_parms, params.as_mut_bytes()).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    if !rm_room || vgpu.clients.len() >= MAX_CLIENTS_PER_VGPU || !vgpu.has_room() {
        return NvStatus::ERR_INSUFFICIENT_RESOURCES;
    }
    let Some((guest, host)) = vgpu.client_handles(a.h_new) else {
        return NvStatus::ERR_INSERT_DUPLICATE_NAME;
    };
    params.hClient = host;
    let req = AllocRequest {
        gfid: c.gfid,
        client: host,
        parent: 0,
        object: host,
        class: class::NV01_ROOT_CLIENT,
    };
    let mut bytes = [0u8; 4];
    write_struct(&params, &mut bytes);
    let status = backend.alloc(&req, &mut bytes);
    if !status.is_ok() {
        return status;
    }
    let owner = vgpu.client_context(c.fd);
    vgpu.clients.insert(guest, Client::new(guest, host, owner));
    a.h_new = guest;
    if a.p_alloc_parms != 0 {
        let mut out = read_struct::<NvRootAllocParams>(&bytes).unwrap_or_default();
        out.hClient = guest;
        if mem.write(a.p_alloc_parms, out.as_bytes()).is_err() {
            rm.free_client(c.gfid, guest);
            return NvStatus::ERR_INVALID_ADDRESS;
        }
    }
    NvStatus::OK
}
