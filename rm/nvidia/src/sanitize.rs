//! Fields a tenant must not set, and the lists that must name only the tenant's own clients.
//!
//! Applied to the forwarder's own copy of the parameters (never to the tenant's memory, which the
//! tenant could change again after the check):
//! * `NV_CHANNEL_GROUP_ALLOCATION_PARAMETERS.bIsCallingContextVgpuPlugin` is cleared (it would put
//!   the TSG in the physical function's GFID);
//! * channel allocations lose `NVOS04_FLAGS_PRIVILEGED_CHANNEL` and
//!   `NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT`, and the reserved `hPhysChannelGroup` /
//!   `internalFlags` are zeroed;
//! * `NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS` is refused with a non-NULL `pRunlistPreemptEvent`
//!   (what RM answers a non-kernel caller) or with any client handle the tenant does not own (the
//!   driver itself does not check them: measured, any local user could freeze anyone's channels).

use core::mem::size_of;
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvChannelGroupAllocationParameters,
    NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT, NVOS04_FLAGS_PRIVILEGED_CHANNEL,
};
use rm_abi::class;
use rm_abi::ctrl::{
    Nv2080CtrlFifoDisableChannelsParams, NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES,
};
use rm_abi::{read_struct, write_struct, Handle, NvStatus};

/// Whether `id` is a GPFIFO channel class (`xx6F`, Kepler's `A06F` onwards).
pub const fn is_channel_class(id: u32) -> bool {
    id & 0xFF == 0x6F && id >= 0xA06F && id <= 0xFFFF
}

/// Channel classes whose alloc params this crate can sanitise (the 580 `NV_CHANNEL_ALLOC_PARAMS`).
pub const fn is_known_channel_class(id: u32) -> bool {
    matches!(
        id,
        class::VOLTA_CHANNEL_GPFIFO_A
            | class::AMPERE_CHANNEL_GPFIFO_A
            | class::HOPPER_CHANNEL_GPFIFO_A
    )
}

/// Sanitises the alloc params of `class_id` in place. `params` is the forwarder's copy, exactly the
/// class's param size. Channel classes without a known layout are refused: their flags cannot be
/// cleared.
pub fn sanitize_alloc(class_id: u32, params: &mut [u8]) -> Result<(), NvStatus> {
    if class_id == class::KEPLER_CHANNEL_GROUP_A {
        let mut p: NvChannelGroupAllocationParameters =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
        p.bIsCallingContextVgpuPlugin = 0;
        write_struct(&p, params);
    } else if is_known_channel_class(class_id) {
        let mut p: NvChannelAllocParams =
            read_struct(params).ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
        p.flags &= !(NVOS04_FLAGS_PRIVILEGED_CHANNEL | NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT);
        p.hPhysChannelGroup = 0;
        p.internalFlags = 0;
        write_struct(&p, params);
    } else if is_channel_class(class_id) {
        return Err(NvStatus::ERR_INVALID_CLASS);
    }
    Ok(())
}

/// The engine type a TSG was allocated for (`NV2080_ENGINE_TYPE_*`), from its alloc params.
pub fn tsg_engine(params: &[u8]) -> Option<u32> {
    read_struct::<NvChannelGroupAllocationParameters>(params).map(|p| p.engineType)
}

/// Checks a `FIFO_DISABLE_CHANNELS` param buffer: right size, no preempt event, at most 64
/// entries, every client handle in use owned by the caller, and a disable, never an enable:
/// the daemon gates a tenant's channels with this control, and a tenant that enabled its own
/// channels would undo its gate (CUDA and `nvidia-smi` never issue it: none in the traces).
pub fn check_disable_channels(
    params: &[u8],
    owns: impl Fn(Handle) -> bool,
) -> Result<(), NvStatus> {
    if params.len() != size_of::<Nv2080CtrlFifoDisableChannelsParams>() {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let p: Nv2080CtrlFifoDisableChannelsParams =
        read_struct(params).ok_or(NvStatus::ERR_INVALID_ARGUMENT)?;
    if p.pRunlistPreemptEvent != 0 || p.bDisable == 0 {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    let n = usize::try_from(p.numChannels).map_err(|_| NvStatus::ERR_INVALID_ARGUMENT)?;
    if n > NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    if p.hClientList[..n].iter().all(|&c| owns(c)) {
        Ok(())
    } else {
        Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS)
    }
}

/// Builds `FIFO_DISABLE_CHANNELS` params for up to 64 `(client, channel)` pairs.
pub fn disable_channels_params(
    pairs: &[(Handle, Handle)],
    disable: bool,
) -> Nv2080CtrlFifoDisableChannelsParams {
    let mut p = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: u8::from(disable),
        ..Default::default()
    };
    let n = pairs
        .len()
        .min(NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES);
    for (i, &(c, ch)) in pairs[..n].iter().enumerate() {
        p.hClientList[i] = c;
        p.hChannelList[i] = ch;
    }
    p.numChannels = n as u32;
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn tsg_plugin_flag_is_cleared() {
        let mut p = NvChannelGroupAllocationParameters {
            engineType: 1,
            bIsCallingContextVgpuPlugin: 1,
            ..Default::default()
        };
        let bytes = p.as_mut_bytes();
        sanitize_alloc(class::KEPLER_CHANNEL_GROUP_A, bytes).unwrap();
        let q: NvChannelGroupAllocationParameters = read_struct(bytes).unwrap();
        assert_eq!((q.bIsCallingContextVgpuPlugin, q.engineType), (0, 1));
        assert_eq!(tsg_engine(bytes), Some(1));
    }

    #[test]
    fn channel_privilege_flags_are_cleared_and_other_flags_kept() {
        let mut p = NvChannelAllocParams {
            flags: NVOS04_FLAGS_PRIVILEGED_CHANNEL | NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT | 0x3,
            internalFlags: 7,
            hPhysChannelGroup: 9,
            gpFifoEntries: 1024,
            ..Default::default()
        };
        let bytes = p.as_mut_bytes();
        sanitize_alloc(class::HOPPER_CHANNEL_GPFIFO_A, bytes).unwrap();
        let q: NvChannelAllocParams = read_struct(bytes).unwrap();
        assert_eq!(
            (
                q.flags,
                q.internalFlags,
                q.hPhysChannelGroup,
                q.gpFifoEntries
            ),
            (0x3, 0, 0, 1024)
        );
    }

    #[test]
    fn unknown_channel_class_is_refused_other_classes_untouched() {
        let mut b = [0xFFu8; 368];
        assert_eq!(
            sanitize_alloc(0xC96F, &mut b),
            Err(NvStatus::ERR_INVALID_CLASS)
        );
        let mut m = [0xFFu8; 128];
        sanitize_alloc(class::NV01_MEMORY_LOCAL_USER, &mut m).unwrap();
        assert!(m.iter().all(|&x| x == 0xFF));
        assert!(is_channel_class(0xC86F) && is_channel_class(0xA06F) && !is_channel_class(0x906F));
    }

    #[test]
    fn disable_channels_accepts_own_clients_only() {
        let own = |c: Handle| c == 0xC1D0_0019;
        let p = disable_channels_params(
            &[(0xC1D0_0019, 0x5C00_0010), (0xC1D0_0019, 0x5C00_0011)],
            true,
        );
        assert_eq!(check_disable_channels(p.as_bytes(), own), Ok(()));
        let foreign = disable_channels_params(&[(0xC1D0_0019, 1), (0xC1D0_0020, 2)], true);
        assert_eq!(
            check_disable_channels(foreign.as_bytes(), own),
            Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS)
        );
        let mut ev = p;
        ev.pRunlistPreemptEvent = 0x1000;
        assert_eq!(
            check_disable_channels(ev.as_bytes(), own),
            Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS)
        );
        let mut many = p;
        many.numChannels = 65;
        assert_eq!(
            check_disable_channels(many.as_bytes(), own),
            Err(NvStatus::ERR_INVALID_ARGUMENT)
        );
        assert_eq!(
            check_disable_channels(&p.as_bytes()[..100], own),
            Err(NvStatus::ERR_INVALID_ARGUMENT)
        );
        // Re-enabling channels (its own, gated) is the daemon's, not the tenant's.
        let enable = disable_channels_params(&[(0xC1D0_0019, 0x5C00_0010)], false);
        assert_eq!(
            check_disable_channels(enable.as_bytes(), own),
            Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS)
        );
        // Entries past numChannels are not looked at.
        let mut tail = p;
        tail.hClientList[5] = 0xDEAD;
        assert_eq!(check_disable_channels(tail.as_bytes(), own), Ok(()));
    }
}
