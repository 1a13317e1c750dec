//! `NV01_EVENT_OS_EVENT`: a notification on another object (parent: the watched object).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::Nv0005AllocParameters;
use rm_abi::{Handle, NvStatus};

/// An event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The object it watches.
    pub source: Handle,
    /// Notifier index.
    pub notify_index: u32,
}

/// Validates an event alloc: `hParentClient` must be the caller's own client (translated to its
/// host handle) and `hSrcResource` an object of it; the event's own class must match.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    let mut p: Nv0005AllocParameters = read(params)?;
    if p.hParentClient != ctx.client.guest {
        return Err(NvStatus::ERR_INVALID_CLIENT);
    }
    if ctx.client.get(p.hSrcResource).is_none() {
        return Err(NvStatus::ERR_INVALID_OBJECT_HANDLE);
    }
    if matches!(ctx.parent.kind, ObjectKind::Event(_)) {
        return Err(NvStatus::ERR_INVALID_OBJECT_PARENT);
    }
    let source = p.hSrcResource;
    p.hParentClient = ctx.client.host;
    p.hSrcResource = ctx.client.to_host(source);
    write(&p, params);
    let depends_on = if source != ctx.client.guest && source != ctx.parent_handle {
        vec![source]
    } else {
        Vec::new()
    };
    Ok(Constructed {
        kind: ObjectKind::Event(Event {
            source,
            notify_index: p.notifyIndex,
        }),
        depends_on,
        fb_charge: 0,
        sysmem_charge: 0,
    })
}
