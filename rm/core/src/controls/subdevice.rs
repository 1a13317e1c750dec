//! Subdevice identity controls (class 0x2080): name, UUID, engines, compute mode and policy,
//! architecture and PCI ids, answered from the backend's `GpuInfo` and the vGPU's configuration.

use super::{get, put, ControlCtx};
use rm_abi::ctrl::*;
use rm_abi::NvStatus;

pub(super) fn gpu_name(ctx: &ControlCtx<'_>) -> String {
    ctx.vgpu
        .config
        .name
        .clone()
        .unwrap_or_else(|| ctx.gpu.name.clone())
}

pub(super) fn name_string(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlGpuGetNameStringParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let name = gpu_name(ctx);
    p.gpuNameString = [0; 2 * NV2080_GPU_MAX_NAME_STRING_LENGTH];
    match p.gpuNameStringFlags {
        NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_ASCII => {
            for (d, b) in p
                .gpuNameString
                .iter_mut()
                .zip(name.bytes().take(NV2080_GPU_MAX_NAME_STRING_LENGTH - 1))
            {
                *d = b;
            }
        }
        NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_UNICODE => {
            for (d, u) in p.gpuNameString.chunks_exact_mut(2).zip(
                name.encode_utf16()
                    .take(NV2080_GPU_MAX_NAME_STRING_LENGTH - 1),
            ) {
                d.copy_from_slice(&u.to_le_bytes());
            }
        }
        _ => return NvStatus::ERR_INVALID_ARGUMENT,
    }
    put(&p, params)
}

/// The UUID as RM prints it: `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn uuid_string(u: &[u8; 16]) -> String {
    let h: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "GPU-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub(super) fn gid_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlGpuGetGidInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.index != 0 {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let uuid = ctx.vgpu.config.uuid.unwrap_or(ctx.gpu.uuid);
    p.data = [0; NV2080_GPU_MAX_GID_LENGTH];
    let bytes: Vec<u8> = if p.flags & 0x3 == NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY {
        uuid.to_vec()
    } else {
        let mut s = uuid_string(&uuid).into_bytes();
        s.push(0);
        s
    };
    p.data[..bytes.len()].copy_from_slice(&bytes);
    p.length = bytes.len() as u32;
    put(&p, params)
}

pub(super) fn engines_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv2080CtrlGpuGetEnginesV2Params::default();
    for (slot, &e) in p.engineList.iter_mut().zip(ctx.gpu.engines.iter()) {
        *slot = e;
        p.engineCount += 1;
    }
    put(&p, params)
}

/// The core lets a guest create any number of compute contexts, so no compute-mode rule
/// (exclusive thread/process, prohibited) applies: `NONE`.
pub(super) fn compute_mode_rules(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv2080CtrlGpuQueryComputeModeRulesParams {
            rules: NV2080_CTRL_GPU_COMPUTE_MODE_RULES_NONE,
        },
        params,
    )
}

/// The one compute policy, the timeslice: a guest cannot change it and new TSGs get RM's
/// default timeslice, so `DEFAULT`. Inputs are ignored, as in RM.
pub(super) fn compute_policy_config(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv2080CtrlGpuGetComputePolicyConfigParams {
        numConfigs: 1,
        ..Default::default()
    };
    p.configList[0] = Nv2080CtrlGpuComputePolicyConfig {
        r#type: NV2080_CTRL_GPU_COMPUTE_POLICY_TIMESLICE,
        data: NV2080_CTRL_CMD_GPU_COMPUTE_TIMESLICE_DEFAULT,
    };
    put(&p, params)
}

pub(super) fn arch_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p = Nv2080CtrlMcGetArchInfoParams {
        architecture: ctx.gpu.architecture,
        implementation: ctx.gpu.implementation,
        ..Default::default()
    };
    put(&p, params)
}

pub(super) fn bus_pci_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let g = ctx.gpu;
    let device = (u32::from(g.pci_device_id) << 16) | u32::from(g.pci_vendor_id);
    let p = Nv2080CtrlBusGetPciInfoParams {
        pciDeviceId: device,
        pciSubSystemId: (u32::from(g.pci_subsystem_id) << 16)
            | u32::from(g.pci_subsystem_vendor_id),
        pciRevisionId: 0,
        pciExtDeviceId: u32::from(g.pci_device_id),
    };
    put(&p, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_prints_like_rm() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(uuid_string(&u), "GPU-12345678-9abc-def0-0102-030405060708");
    }
}
