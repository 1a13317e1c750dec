//! `RM_FREE` and teardown: an object goes with its children and dependants, children first,
//! each freed once in the backend after its mappings are removed.

use super::dispatch::Caller;
use super::objects::ObjectKind;
use super::Rm;
use crate::backend::{Backend, Gfid};
use rm_abi::nvos::{Nvos00Parameters, Nvos34Parameters, Nvos47Parameters};
use rm_abi::{Handle, NvStatus};

/// `RM_FREE`: `hObjectOld == hRoot` frees the client; otherwise the object and its subtree.
/// (`hObjectParent` is not checked, as in RM.)
pub(super) fn rm_free<B: Backend>(rm: &mut Rm<B>, c: Caller, p: &Nvos00Parameters) -> NvStatus {
    let Some(vgpu) = rm.vgpus.get(&c.gfid) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(client) = vgpu.client_for(c.fd, p.hRoot) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    if p.hObjectOld == p.hRoot {
        rm.free_client(c.gfid, p.hRoot);
        return NvStatus::OK;
    }
    if client.get(p.hObjectOld).is_none() {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    }
    rm.free_object(c.gfid, p.hRoot, p.hObjectOld);
    NvStatus::OK
}

impl<B: Backend> Rm<B> {
    /// Frees a whole client (guest handle) of `gfid`.
    pub(super) fn free_client(&mut self, gfid: Gfid, client: Handle) {
        self.free_object(gfid, client, client);
        if let Some(v) = self.vgpus.get_mut(&gfid) {
            v.clients.remove(&client);
            for (_, st) in v.fds.iter_mut() {
                st.os_events.retain(|e| e.client != client);
            }
        }
    }

    /// Frees `object` of `client` with everything that goes with it.
    pub(super) fn free_object(&mut self, gfid: Gfid, client: Handle, object: Handle) {
        let Some(order) = self
            .vgpus
            .get(&gfid)
            .and_then(|v| v.clients.get(&client))
            .map(|c| c.free_order(object))
        else {
            return;
        };
        for h in order {
            self.release_one(gfid, client, h);
        }
    }

    /// Unmaps, frees in the backend and forgets one object.
    fn release_one(&mut self, gfid: Gfid, client: Handle, h: Handle) {
        let Some((backend, _, vgpu)) = self.parts(gfid) else {
            return;
        };
        let Some(c) = vgpu.clients.get_mut(&client) else {
            return;
        };
        let host = c.host;
        let Some(obj) = c.get(h).cloned() else { return };
        for &(cookie, device) in &obj.cpu_mappings {
            let mut p = Nvos34Parameters {
                hClient: host,
                hDevice: c.to_host(device),
                hMemory: h,
                pLinearAddress: cookie,
                ..Default::default()
            };
            log_failure("unmap_memory", backend.unmap_memory(gfid, &mut p));
        }
        // Mappings of other memory into a VA space that is going away.
        if obj.kind == ObjectKind::VaSpace {
            let mapped: Vec<Handle> = c
                .objects()
                .filter(|(_, o)| matches!(&o.kind, ObjectKind::Memory(m) if m.dma_mappings.iter().any(|&(va, _)| va == h)))
                .map(|(&mh, _)| mh)
                .collect();
            for mh in mapped {
                let device = c.device_of(mh).unwrap_or(0);
                if let Some(ObjectKind::Memory(m)) = c.get_mut(mh).map(|o| &mut o.kind) {
                    for &(_, off) in m.dma_mappings.iter().filter(|&&(va, _)| va == h) {
                        let mut p = Nvos47Parameters {
                            hClient: host,
                            hDevice: device,
                            hDma: h,
                            hMemory: mh,
                            dmaOffset: off,
                            ..Default::default()
                        };
                        log_failure("unmap_memory_dma", backend.unmap_memory_dma(gfid, &mut p));
                    }
                    m.dma_mappings.retain(|&(va, _)| va != h);
                }
            }
        }
        match &obj.kind {
            ObjectKind::Memory(m) => {
                let device = c.device_of(h).unwrap_or(0);
                for &(va, off) in &m.dma_mappings {
                    let mut p = Nvos47Parameters {
                        hClient: host,
                        hDevice: device,
                        hDma: va,
                        hMemory: h,
                        dmaOffset: off,
                        ..Default::default()
                    };
                    log_failure("unmap_memory_dma", backend.unmap_memory_dma(gfid, &mut p));
                }
                vgpu.fb_used = vgpu.fb_used.saturating_sub(m.fb_charge);
                vgpu.sysmem_used = vgpu.sysmem_used.saturating_sub(m.sysmem_charge);
            }
            ObjectKind::Channel(ch) => {
                if let Some(t) = ch.work_submit_token {
                    vgpu.tokens.remove(&t);
                }
            }
            _ => {}
        }
        log_failure("free", backend.free(gfid, host, c.to_host(h)));
        c.remove(h);
        for (_, st) in vgpu.fds.iter_mut() {
            if st.mmap.is_some_and(|m| m.client == client && m.memory == h) {
                st.mmap = None;
            }
        }
    }
}

fn log_failure(what: &str, status: NvStatus) {
    if !status.is_ok() {
        tracing::warn!(%status, "backend {what} failed during teardown");
    }
}
