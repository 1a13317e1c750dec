//! GPFIFO channels (`VOLTA_/AMPERE_/HOPPER_CHANNEL_GPFIFO_A`; parent: TSG).

use super::{read, write, AllocContext, Constructed, ObjectKind};
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvMemoryDescParams, NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT,
    NVOS04_FLAGS_PRIVILEGED_CHANNEL,
};
use rm_abi::{Handle, NvStatus};

/// A channel as the core mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// Engine (the TSG's).
    pub engine_type: u32,
    /// VA space the GPFIFO and pushbuffers are fetched through.
    pub va_space: Handle,
    /// Context share, if any.
    pub context_share: Handle,
    /// USERD memory, if the client supplied one.
    pub userd: Handle,
    /// Work-submit token (`runlist << 16 | chid`), filled after the backend allocated it.
    pub work_submit_token: Option<u32>,
}

/// Validates a channel alloc under a TSG:
/// * `engineType` must be 0 or the TSG's engine; `subDeviceId` 0.
/// * `hContextShare` must be a context share child of the same TSG; `hVASpace` must be 0 (the
///   driver's `kchannelConstruct`: "TSG channels can't use an explicit vaspace", and a context
///   share and a VA space together are refused too; the VA space is the context share's or the
///   TSG's); `hUserdMemory[0]`, `hObjectError`,
///   `hObjectEccError` memory of this client; `hUserdMemory[1..]` 0 (one subdevice).
/// * The privileged and vGPU-plugin `flags` bits are cleared; the kernel-only fields (memory
///   descriptors, internal flags, process ids, CC IVs) are zeroed, as `kchannelConstruct` does
///   for user callers.
pub fn construct(ctx: &AllocContext<'_>, params: &mut [u8]) -> Result<Constructed, NvStatus> {
    let ObjectKind::ChannelGroup(tsg) = &ctx.parent.kind else {
        // Channels outside a TSG would need an implicit TSG; this core does not create one.
        return Err(NvStatus::ERR_NOT_SUPPORTED);
    };
    let mut p: NvChannelAllocParams = read(params)?;
    if p.engineType != 0 && p.engineType != tsg.engine_type {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    if p.subDeviceId != 0 || p.hUserdMemory[1..].iter().any(|&h| h != 0) {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let tsg_handle = ctx.parent_handle;
    let cs = ctx.optional_ref(p.hContextShare, |k| {
        matches!(k, ObjectKind::ContextShare(_))
    })?;
    let mut va_space = tsg.va_space;
    if let Some(c) = cs {
        let obj = ctx
            .client
            .get(c)
            .ok_or(NvStatus::ERR_INVALID_OBJECT_HANDLE)?;
        if obj.parent != tsg_handle {
            return Err(NvStatus::ERR_INVALID_ARGUMENT);
        }
        if let ObjectKind::ContextShare(s) = &obj.kind {
            va_space = s.va_space;
        }
    }
    if p.hVASpace != 0 {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let is_memory = |k: &ObjectKind| matches!(k, ObjectKind::Memory(_));
    let userd = ctx.optional_ref(p.hUserdMemory[0], is_memory)?;
    let err = ctx.optional_ref(p.hObjectError, is_memory)?;
    let ecc = ctx.optional_ref(p.hObjectEccError, is_memory)?;

    p.flags &= !(NVOS04_FLAGS_PRIVILEGED_CHANNEL | NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT);
    p.engineType = tsg.engine_type;
    p.hObjectBuffer = 0;
    p.cid = 0;
    let zero = NvMemoryDescParams::default();
    p.instanceMem = zero;
    p.userdMem = zero;
    p.ramfcMem = zero;
    p.mthdbufMem = zero;
    p.errorNotifierMem = zero;
    p.eccErrorNotifierMem = zero;
    p.hPhysChannelGroup = 0;
    p.internalFlags = 0;
    p.ProcessID = 0;
    p.SubProcessID = 0;
    p.encryptIv = [0; 3];
    p.decryptIv = [0; 3];
    p.hmacNonce = [0; 8];
    p._pad = 0;
    write(&p, params);
    Ok(Constructed {
        kind: ObjectKind::Channel(Channel {
            engine_type: tsg.engine_type,
            va_space,
            context_share: cs.unwrap_or(0),
            userd: userd.unwrap_or(0),
            work_submit_token: None,
        }),
        depends_on: [cs, userd, err, ecc].into_iter().flatten().collect(),
        fb_charge: 0,
        sysmem_charge: 0,
    })
}
