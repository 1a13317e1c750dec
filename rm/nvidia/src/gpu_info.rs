//! What the real GPU says about itself, asked once through the backend's own client: the
//! [`GpuInfo`] the RM core answers guests' identity controls from (name, UUID, PCI ids,
//! architecture, framebuffer, classes, engines, GR shape).

use std::os::fd::RawFd;

use rm_abi::alloc_params::NV2080_ENGINE_TYPE_COPY0;
use rm_abi::ctrl::{
    Nv0080CtrlGpuGetClasslistV2Params, Nv0080CtrlGrGetCapsV2Params, Nv2080CtrlBusGetPciInfoParams,
    Nv2080CtrlFbGetInfoV2Params, Nv2080CtrlGpuGetEnginesV2Params, Nv2080CtrlGpuGetGidInfoParams,
    Nv2080CtrlGpuGetNameStringParams, Nv2080CtrlGrGetGpcMaskParams, Nv2080CtrlGrGetInfoParams,
    Nv2080CtrlGrGetTpcMaskParams, Nv2080CtrlMcGetArchInfoParams, NvCtrlInfo,
    NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2, NV2080_CTRL_CMD_BUS_GET_PCI_INFO,
    NV2080_CTRL_CMD_FB_GET_INFO_V2, NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
    NV2080_CTRL_CMD_GPU_GET_GID_INFO, NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
    NV2080_CTRL_CMD_GR_GET_CAPS_V2, NV2080_CTRL_CMD_GR_GET_GPC_MASK, NV2080_CTRL_CMD_GR_GET_INFO,
    NV2080_CTRL_CMD_GR_GET_TPC_MASK, NV2080_CTRL_CMD_MC_GET_ARCH_INFO,
    NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY,
};
use rm_abi::Handle;
use rm_core::backend::{GpuInfo, GrConfig};
use zerocopy::IntoBytes;

use super::calls::{control, ControlError};
use super::driver::NvDriver;

/// `NV2080_CTRL_FB_INFO_INDEX_TOTAL_RAM_SIZE` (KiB; what nvidia-smi and CUDA ask for).
const FB_INFO_INDEX_TOTAL_RAM_SIZE: u32 = 0x08;
/// GR info indices asked for: `NV2080_CTRL_GR_INFO_INDEX_*` 0..58, those the 580 driver
/// defines below `NV2080_CTRL_GR_INFO_MAX_SIZE` that the H200's driver answers.
const GR_INFO_INDICES: u32 = 58;

/// A failed query: which control, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct QueryError {
    /// The control.
    pub what: &'static str,
    /// errno or RM status.
    pub why: ControlError,
}

/// The objects the queries go to: a client with device 0 and subdevice 0 on `fd`.
#[derive(Debug, Clone, Copy)]
pub struct QueryTarget {
    /// The ctl fd the client was allocated on.
    pub fd: RawFd,
    /// The client.
    pub client: Handle,
    /// Its device 0.
    pub device: Handle,
    /// Its subdevice 0.
    pub subdevice: Handle,
}

/// Asks the GPU behind `t` for everything [`GpuInfo`] holds. `host_memory_bytes` is
/// `u64::MAX`: the real GPU's memory costs the host nothing.
pub fn query<D: NvDriver + ?Sized>(driver: &D, t: QueryTarget) -> Result<GpuInfo, QueryError> {
    let ask = |object: Handle, cmd: u32, what: &'static str, params: &mut [u8]| {
        control(driver, t.fd, t.client, object, cmd, params).map_err(|why| QueryError { what, why })
    };
    let mut name = Nv2080CtrlGpuGetNameStringParams::default();
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        "GPU_GET_NAME_STRING",
        name.as_mut_bytes(),
    )?;
    let mut gid = Nv2080CtrlGpuGetGidInfoParams {
        flags: NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY,
        ..Default::default()
    };
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_GID_INFO,
        "GPU_GET_GID_INFO",
        gid.as_mut_bytes(),
    )?;
    let mut pci = Nv2080CtrlBusGetPciInfoParams::default();
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_BUS_GET_PCI_INFO,
        "BUS_GET_PCI_INFO",
        pci.as_mut_bytes(),
    )?;
    let mut arch = Nv2080CtrlMcGetArchInfoParams::default();
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_MC_GET_ARCH_INFO,
        "MC_GET_ARCH_INFO",
        arch.as_mut_bytes(),
    )?;
    let mut fb = Nv2080CtrlFbGetInfoV2Params {
        fbInfoListSize: 1,
        ..Default::default()
    };
    fb.fbInfoList[0] = NvCtrlInfo {
        index: FB_INFO_INDEX_TOTAL_RAM_SIZE,
        data: 0,
    };
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_FB_GET_INFO_V2,
        "FB_GET_INFO_V2",
        fb.as_mut_bytes(),
    )?;
    let mut classes = Nv0080CtrlGpuGetClasslistV2Params::default();
    ask(
        t.device,
        NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2,
        "GPU_GET_CLASSLIST_V2",
        classes.as_mut_bytes(),
    )?;
    let mut engines = Nv2080CtrlGpuGetEnginesV2Params::default();
    ask(
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
        "GPU_GET_ENGINES_V2",
        engines.as_mut_bytes(),
    )?;
    let gr = query_gr(driver, t)?;

    let uuid_len = (gid.length as usize).min(16);
    let mut uuid = [0u8; 16];
    uuid[..uuid_len].copy_from_slice(&gid.data[..uuid_len]);
    let name_end = name
        .gpuNameString
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(name.gpuNameString.len());
    let classes = &classes.classList[..(classes.numClasses as usize).min(classes.classList.len())];
    let engines =
        &engines.engineList[..(engines.engineCount as usize).min(engines.engineList.len())];
    Ok(GpuInfo {
        name: String::from_utf8_lossy(&name.gpuNameString[..name_end]).into_owned(),
        uuid,
        pci_vendor_id: pci.pciDeviceId as u16,
        pci_device_id: (pci.pciDeviceId >> 16) as u16,
        pci_subsystem_vendor_id: pci.pciSubSystemId as u16,
        pci_subsystem_id: (pci.pciSubSystemId >> 16) as u16,
        architecture: arch.architecture,
        implementation: arch.implementation,
        fb_bytes: u64::from(fb.fbInfoList[0].data) << 10,
        host_memory_bytes: u64::MAX,
        classes: classes.to_vec(),
        engines: engines.to_vec(),
        // The GR copy engine is not reported to a client before it has a channel; every
        // Hopper board's driver answers COPY1 for it (the H200's traces show it).
        gr_copy_engine: NV2080_ENGINE_TYPE_COPY0 + 1,
        gr,
    })
}

/// GR engine 0: GPC and TPC masks, caps, and the info list.
fn query_gr<D: NvDriver + ?Sized>(driver: &D, t: QueryTarget) -> Result<GrConfig, QueryError> {
    let ask = |cmd: u32, what: &'static str, params: &mut [u8]| {
        control(driver, t.fd, t.client, t.subdevice, cmd, params)
            .map_err(|why| QueryError { what, why })
    };
    let mut gpcs = Nv2080CtrlGrGetGpcMaskParams::default();
    ask(
        NV2080_CTRL_CMD_GR_GET_GPC_MASK,
        "GR_GET_GPC_MASK",
        gpcs.as_mut_bytes(),
    )?;
    let mut tpc_masks = Vec::new();
    for gpc in 0..32 {
        if gpcs.gpcMask & (1 << gpc) == 0 {
            break;
        }
        let mut tpc = Nv2080CtrlGrGetTpcMaskParams {
            gpcId: gpc,
            ..Default::default()
        };
        ask(
            NV2080_CTRL_CMD_GR_GET_TPC_MASK,
            "GR_GET_TPC_MASK",
            tpc.as_mut_bytes(),
        )?;
        tpc_masks.push(tpc.tpcMask);
    }
    let mut caps = Nv0080CtrlGrGetCapsV2Params::default();
    ask(
        NV2080_CTRL_CMD_GR_GET_CAPS_V2,
        "GR_GET_CAPS_V2",
        caps.as_mut_bytes(),
    )?;
    let mut list: Vec<NvCtrlInfo> = (0..GR_INFO_INDICES)
        .map(|index| NvCtrlInfo { index, data: 0 })
        .collect();
    let mut info = Nv2080CtrlGrGetInfoParams {
        grInfoListSize: list.len() as u32,
        grInfoList: list.as_mut_ptr() as u64,
        ..Default::default()
    };
    // A driver that refuses one of the indices refuses the whole list: then the core answers
    // GR_GET_INFO with NOT_SUPPORTED rather than with values of another board.
    let info = match ask(
        NV2080_CTRL_CMD_GR_GET_INFO,
        "GR_GET_INFO",
        info.as_mut_bytes(),
    ) {
        Ok(()) => list.iter().map(|i| (i.index, i.data)).collect(),
        Err(_) => Vec::new(),
    };
    Ok(GrConfig {
        tpc_masks,
        caps: caps.capsTbl,
        info,
    })
}
