//! `vgpu-smi`: what `nvidia-smi -q` shows, for a vGPU, read through RM controls (name, UUID,
//! framebuffer, engines, architecture, PCI ids) plus the vGPU transport's own counters and the
//! channel groups of the calling process.

use rm_abi::alloc_params::{
    Nv0080AllocParameters, NV2080_ENGINE_TYPE_COPY0, NV2080_ENGINE_TYPE_GR0,
};
use rm_abi::ctrl::*;
use rm_abi::{class, Handle, NvStatus};
use serde::{Deserialize, Serialize};

use crate::driver::{DeviceCounters, DeviceInfo};
use crate::rmapi::{RmApiError, RmClient};
use crate::workload::OwnTsg;

/// `NV2080_CTRL_FB_INFO_INDEX_TOTAL_RAM_SIZE` (KiB).
const FB_TOTAL_RAM_SIZE: u32 = 0x08;
/// `NV2080_CTRL_FB_INFO_INDEX_HEAP_FREE` (KiB).
const FB_HEAP_FREE: u32 = 0x16;

/// One channel group (TSG).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelGroup {
    /// TSG handle.
    pub handle: Handle,
    /// Engine name.
    pub engine: String,
    /// TSG id (`NVA06C_CTRL_CMD_GET_INFO`).
    pub tsg_id: u32,
    /// Timeslice in µs (`NVA06C_CTRL_CMD_GET_TIMESLICE`).
    pub timeslice_us: u64,
    /// Interleave level name.
    pub interleave: String,
    /// Where the interleave level comes from: `rm` (read back) or `set` (RM exports no getter,
    /// so this is what the process set).
    pub interleave_source: String,
}

/// Everything `vgpu-smi` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmiReport {
    /// Driver version (`NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION`).
    pub driver_version: String,
    /// PCI address of the vGPU function in this guest.
    pub bus_id: String,
    /// GPU name.
    pub product_name: String,
    /// Architecture name.
    pub architecture: String,
    /// GPU UUID.
    pub uuid: String,
    /// PCI device id << 16 | vendor id of the GPU behind the vGPU.
    pub pci_device_id: u32,
    /// PCI subsystem id << 16 | subsystem vendor.
    pub pci_subsystem_id: u32,
    /// Framebuffer of this vGPU in MiB.
    pub fb_total_mib: u64,
    /// In use (by all processes of this guest), MiB.
    pub fb_used_mib: u64,
    /// Free, MiB.
    pub fb_free_mib: u64,
    /// In use, KiB (the exact figure behind `fb_used_mib`).
    pub fb_used_kib: u64,
    /// Engine names.
    pub engines: Vec<String>,
    /// The vGPU device.
    pub vgpu: DeviceInfo,
    /// Its transport counters.
    pub counters: DeviceCounters,
    /// The calling process's channel groups.
    pub channel_groups: Vec<ChannelGroup>,
}

/// An `NV2080_ENGINE_TYPE_*` value as nvidia-smi names engines.
pub fn engine_name(e: u32) -> String {
    match e {
        NV2080_ENGINE_TYPE_GR0 => "GR0 (graphics/compute)".into(),
        c if (NV2080_ENGINE_TYPE_COPY0..NV2080_ENGINE_TYPE_COPY0 + 10).contains(&c) => {
            format!("CE{} (copy)", c - NV2080_ENGINE_TYPE_COPY0)
        }
        other => format!("engine {other:#x}"),
    }
}

fn interleave_name(level: u32) -> String {
    match level {
        NVA06C_CTRL_INTERLEAVE_LEVEL_LOW => "LOW".into(),
        NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM => "MEDIUM".into(),
        NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH => "HIGH".into(),
        other => format!("{other}"),
    }
}

fn architecture_name(arch: u32) -> String {
    match arch {
        0x170 => "Ampere".into(),
        0x180 => "Hopper".into(),
        0x190 => "Ada".into(),
        0x1a0 => "Blackwell".into(),
        other => format!("{other:#x}"),
    }
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Reads a channel group's state: id and timeslice from RM; the interleave level from RM when it
/// exports a getter, else the level `own` says the process set.
pub fn channel_group(
    c: &mut RmClient<'_>,
    client: Handle,
    own: &OwnTsg,
) -> Result<ChannelGroup, RmApiError> {
    let mut info = NvA06cCtrlGetInfoParams::default();
    c.control(client, own.handle, NVA06C_CTRL_CMD_GET_INFO, &mut info)?;
    let mut ts = NvA06cCtrlTimesliceParams::default();
    c.control(client, own.handle, NVA06C_CTRL_CMD_GET_TIMESLICE, &mut ts)?;
    let mut il = NvA06cCtrlInterleaveLevelParams::default();
    let (interleave, source) = match c.control(
        client,
        own.handle,
        NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL,
        &mut il,
    ) {
        Ok(()) => (interleave_name(il.tsgInterleaveLevel), "rm"),
        Err(e) if e.status() == Some(NvStatus::ERR_NOT_SUPPORTED) => match own.interleave_set {
            Some(l) => (interleave_name(l), "set"),
            None => (
                interleave_name(NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM),
                "default",
            ),
        },
        Err(e) => return Err(e),
    };
    Ok(ChannelGroup {
        handle: own.handle,
        engine: engine_name(own.engine),
        tsg_id: info.tsgID,
        timeslice_us: ts.timesliceUs,
        interleave,
        interleave_source: source.into(),
    })
}

/// Gathers the report with a client of its own (freed again), plus `tsgs` of `tsg_client`.
pub fn gather(
    c: &mut RmClient<'_>,
    bus_id: &str,
    vgpu: DeviceInfo,
    counters: DeviceCounters,
    tsg_client: Handle,
    tsgs: &[OwnTsg],
) -> Result<SmiReport, RmApiError> {
    let client = c.alloc_root()?;
    let result = gather_with(c, client, bus_id, vgpu, counters, tsg_client, tsgs);
    c.free(client, client, client)?;
    result
}

fn gather_with(
    c: &mut RmClient<'_>,
    client: Handle,
    bus_id: &str,
    vgpu: DeviceInfo,
    counters: DeviceCounters,
    tsg_client: Handle,
    tsgs: &[OwnTsg],
) -> Result<SmiReport, RmApiError> {
    let device = c.alloc(
        client,
        client,
        class::NV01_DEVICE_0,
        &mut Nv0080AllocParameters::default(),
    )?;
    let sub = c.alloc(client, device, class::NV20_SUBDEVICE_0, &mut [0u8; 4])?;

    let strings = c.transport().buffer(3 * 256, 64)?;
    let mut bv = Nv0000CtrlSystemGetBuildVersionParams {
        sizeOfStrings: 256,
        pDriverVersionBuffer: strings.addr(),
        pVersionBuffer: strings.addr() + 256,
        pTitleBuffer: strings.addr() + 512,
        ..Default::default()
    };
    c.control(
        client,
        client,
        NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION,
        &mut bv,
    )?;
    let mut version = [0u8; 256];
    strings.read(0, &mut version)?;

    let mut name = Nv2080CtrlGpuGetNameStringParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_GPU_GET_NAME_STRING, &mut name)?;
    let mut gid = Nv2080CtrlGpuGetGidInfoParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_GPU_GET_GID_INFO, &mut gid)?;
    let mut arch = Nv2080CtrlMcGetArchInfoParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_MC_GET_ARCH_INFO, &mut arch)?;
    let mut pci = Nv2080CtrlBusGetPciInfoParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_BUS_GET_PCI_INFO, &mut pci)?;
    let mut fb = Nv2080CtrlFbGetInfoV2Params {
        fbInfoListSize: 2,
        ..Default::default()
    };
    fb.fbInfoList[0].index = FB_TOTAL_RAM_SIZE;
    fb.fbInfoList[1].index = FB_HEAP_FREE;
    c.control(client, sub, NV2080_CTRL_CMD_FB_GET_INFO_V2, &mut fb)?;
    let mut engines = Nv2080CtrlGpuGetEnginesV2Params::default();
    c.control(
        client,
        sub,
        NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
        &mut engines,
    )?;

    let (total_kib, free_kib) = (
        u64::from(fb.fbInfoList[0].data),
        u64::from(fb.fbInfoList[1].data),
    );
    let channel_groups = tsgs
        .iter()
        .map(|t| channel_group(c, tsg_client, t))
        .collect::<Result<_, _>>()?;
    Ok(SmiReport {
        driver_version: c_string(&version),
        bus_id: bus_id.to_string(),
        product_name: c_string(&name.gpuNameString),
        architecture: architecture_name(arch.architecture),
        uuid: c_string(&gid.data[..gid.length.min(256) as usize]),
        pci_device_id: pci.pciDeviceId,
        pci_subsystem_id: pci.pciSubSystemId,
        fb_total_mib: total_kib >> 10,
        fb_used_mib: total_kib.saturating_sub(free_kib) >> 10,
        fb_free_mib: free_kib >> 10,
        fb_used_kib: total_kib.saturating_sub(free_kib),
        engines: engines.engineList[..engines.engineCount.min(84) as usize]
            .iter()
            .map(|&e| engine_name(e))
            .collect(),
        vgpu,
        counters,
        channel_groups,
    })
}

impl SmiReport {
    /// The report in `nvidia-smi -q` style.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let mut line = |indent: usize, key: &str, value: &str| {
            let pad = 42usize.saturating_sub(indent * 4 + key.len());
            if value.is_empty() {
                s.push_str(&format!("{}{key}\n", "    ".repeat(indent)));
            } else {
                s.push_str(&format!(
                    "{}{key}{} : {value}\n",
                    "    ".repeat(indent),
                    " ".repeat(pad)
                ));
            }
        };
        line(0, "==============VGPU-SMI LOG==============", "");
        line(0, "", "");
        line(0, "Driver Version", &self.driver_version);
        line(0, "Attached GPUs", "1");
        line(0, &format!("GPU {}", self.bus_id), "");
        line(1, "Product Name", &self.product_name);
        line(1, "Product Architecture", &self.architecture);
        line(1, "GPU UUID", &self.uuid);
        line(
            1,
            "Virtualization Mode",
            "vGPU (mediated, userspace guest driver)",
        );
        line(1, "GPU Virtualization", "");
        line(2, "GFID", &self.vgpu.gfid.to_string());
        line(
            2,
            "Protocol Version",
            &format!("{}.{}", self.vgpu.version >> 16, self.vgpu.version & 0xffff),
        );
        line(2, "Window", &format!("{} MiB", self.vgpu.window_size >> 20));
        line(2, "Escape Requests", &self.counters.requests.to_string());
        line(
            2,
            "Malformed Requests",
            &self.counters.request_errors.to_string(),
        );
        line(2, "Doorbells", &self.counters.doorbells.to_string());
        line(
            2,
            "Doorbells Rejected",
            &self.counters.doorbells_rejected.to_string(),
        );
        line(1, "PCI", "");
        line(2, "Bus Id", &self.bus_id);
        line(2, "GPU Device Id", &format!("0x{:08X}", self.pci_device_id));
        line(
            2,
            "GPU Sub System Id",
            &format!("0x{:08X}", self.pci_subsystem_id),
        );
        line(1, "FB Memory Usage", "");
        line(2, "Total", &format!("{} MiB", self.fb_total_mib));
        line(2, "Used", &format!("{} MiB", self.fb_used_mib));
        line(2, "Free", &format!("{} MiB", self.fb_free_mib));
        line(1, "Engines", "");
        for e in &self.engines {
            line(2, e, "");
        }
        line(1, "Channel Groups", &self.channel_groups.len().to_string());
        for g in &self.channel_groups {
            line(2, &format!("Channel Group {:#010x}", g.handle), "");
            line(3, "Engine", &g.engine);
            line(3, "TSG Id", &g.tsg_id.to_string());
            line(3, "Timeslice", &format!("{} us", g.timeslice_us));
            let il = match g.interleave_source.as_str() {
                "rm" => g.interleave.clone(),
                src => format!("{} ({src})", g.interleave),
            };
            line(3, "Interleave Level", &il);
        }
        s
    }
}
