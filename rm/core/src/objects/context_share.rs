//! `FERMI_CONTEXT_SHARE_A`: a subcontext of a TSG with its own VA space (parent: TSG).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::NvCtxshareAllocationParameters;
use rm_abi::{Handle, NvStatus};

/// A context share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextShare {
    /// VA space (0: the TSG's).
    pub va_space: Handle,
}

/// Validates a context share alloc: `hVASpace` must be a VA space of this client under the same
/// device, and agree with the TSG's VA space when the TSG has one.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    let ObjectKind::ChannelGroup(tsg) = &ctx.parent.kind else {
        return Err(NvStatus::ERR_INVALID_OBJECT_PARENT);
    };
    let mut p: NvCtxshareAllocationParameters = read(params)?;
    let va = ctx.optional_ref(p.hVASpace, |k| matches!(k, ObjectKind::VaSpace))?;
    if let Some(v) = va {
        if ctx.client.device_of(v) != ctx.device_of_parent()
            || (tsg.va_space != 0 && tsg.va_space != v)
        {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
    }
    p.subctxId = 0;
    write(&p, params);
    Ok(Constructed {
        kind: ObjectKind::ContextShare(ContextShare {
            va_space: va.unwrap_or(tsg.va_space),
        }),
        depends_on: va.into_iter().collect(),
        fb_charge: 0,
        sysmem_charge: 0,
    })
}
