//! `RM_CONTROL`: the control table and its dispatch.
//!
//! [`CONTROLS`] is the one table saying, per command, its params type (a struct of
//! [`rm_abi::ctrl`], whose size RM requires `paramsSize` to equal) and who answers it:
//! * `Core`: answered by the core from the backend's [`GpuInfo`], the vGPU's configuration
//!   (name, UUID, framebuffer quota) and the object tree, the same for every backend;
//! * `Backend`: validated and translated by the core, executed by the backend;
//! * `Rejected`: `NV_ERR_NOT_SUPPORTED`, with the reason;
//! * `Denied`: `NV_ERR_INSUFFICIENT_PERMISSIONS` (needs a privilege no guest has).
//!
//! A command missing from the table answers `NV_ERR_NOT_SUPPORTED`, as a command missing from
//! RM's exported-method table does. The table lists every control the shared traces issue.
//!
//! This file holds the table, its types and the dispatch; the handlers it names live by area:
//! `system` (class 0x0000), `device` (0x0080), `subdevice` (0x2080 identity), `info_lists`
//! (the 0x2080 GPU and FB info lists) and `fifo` (TSG and channel controls, `RM_IDLE_CHANNELS`).

mod device;
mod fifo;
mod gr;
mod info_lists;
mod subdevice;
mod system;

pub(super) use fifo::idle_channels;
pub use fifo::MAX_IDLE_WAIT;
pub use info_lists::unmodelled_info_index;
pub use subdevice::uuid_string;

use super::dispatch::Caller;
use super::guest_memory::GuestMemory;
use super::vgpu::Vgpu;
use super::Rm;
use crate::backend::{Backend, GpuInfo};
use rm_abi::class;
use rm_abi::ctrl::*;
use rm_abi::ioctl::RMAPI_PARAM_COPY_MAX_PARAMS_SIZE;
use rm_abi::nvos::{Nvos54Parameters, NVOS54_FLAGS_IRQL_RAISED};
use rm_abi::{read_struct, write_struct, Handle, NvStatus};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// What a core-answered control or a backend control's hooks see.
pub struct ControlCtx<'a> {
    /// The GPU.
    pub gpu: &'a GpuInfo,
    /// The caller's vGPU.
    pub vgpu: &'a mut Vgpu,
    /// The caller's client (guest handle).
    pub client: Handle,
    /// The target object (guest handle).
    pub object: Handle,
    /// Guest memory, for params with embedded pointers.
    pub mem: &'a mut dyn GuestMemory,
}

impl<'a> std::fmt::Debug for ControlCtx<'a> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlCtx").finish_non_exhaustive()
    }
}

/// A control answered by the core.
pub type CoreFn = fn(&mut ControlCtx<'_>, &mut [u8]) -> NvStatus;
/// Validates guest params and rewrites them into the host's view before the backend runs.
pub type PrepareFn = fn(&ControlCtx<'_>, &mut [u8]) -> Result<(), NvStatus>;
/// After the backend succeeded: restores the guest's view (`guest` holds the params as the guest
/// sent them) and mirrors state the core keeps.
pub type FinishFn = fn(&mut ControlCtx<'_>, &[u8], &mut [u8]);

/// Who answers a control.
#[derive(Clone, Copy)]
pub enum Handling {
    /// The core.
    Core(CoreFn),
    /// The backend, with optional validation/translation and completion hooks.
    Backend(Option<PrepareFn>, Option<FinishFn>),
    /// `NV_ERR_NOT_SUPPORTED`, with the reason.
    Rejected(&'static str),
    /// `NV_ERR_INSUFFICIENT_PERMISSIONS`, with the reason.
    Denied(&'static str),
}

impl Handling {
    /// "core", "backend", "rejected" or "denied".
    pub fn kind(&self) -> &'static str {
        match self {
            Handling::Core(_) => "core",
            Handling::Backend(..) => "backend",
            Handling::Rejected(_) => "rejected",
            Handling::Denied(_) => "denied",
        }
    }

    /// The reason of a rejection or denial.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Handling::Rejected(r) | Handling::Denied(r) => Some(r),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Handling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{}({r:?})", self.kind()),
            None => f.write_str(self.kind()),
        }
    }
}

/// One row of the control table.
#[derive(Debug, Clone, Copy)]
pub struct ControlInfo {
    /// Command id.
    pub cmd: u32,
    /// Header name (or a description for private controls).
    pub name: &'static str,
    /// `sizeof` the param struct in 580; RM requires `paramsSize` to equal it.
    pub size: u32,
    /// Who answers it.
    pub handling: Handling,
}

const HOST_STATE: &str = "physical-GPU state (ECC, InfoROM, PCIe, NVLink, power, clocks) a vGPU does not have and must not see";
const PRIVATE: &str = "private control absent from the open 580 headers; layout unknown";
const BAR_INFO: &str = "BAR sizes and CPU physical addresses belong to the VMM's virtual PCI device, which neither GpuInfo nor VgpuConfig carries";
const BUS_INFO: &str =
    "bus info indices (PCIe link, coherency, apertures) describe the physical bus";
const VBIOS: &str = "VBIOS revision and OEM data of a physical board";
const SIMULATION: &str = "the honest answer is a simulator type, which moves CUDA onto simulator paths; NONE would be false";
const FB_CAPS: &str = "FB capability bits (compression, page sizes, sysmem rendering) of physical memory the sim does not model";
const SHORT_NAME: &str =
    "GpuInfo declares no chip short name (adding one changes the vgpu crate's GpuInfo builders)";
const GR_DETAIL: &str = "GR floorsweeping / context-switch detail the sim does not model";
const OTHER_CLASS: &str = "issued on a class the core does not model";
const MULTI_GPU: &str = "peer / multi-GPU / MIG / fabric features a single vGPU does not have";
const ACCOUNTING: &str = "host process and accounting data; would expose other tenants";
const INTERNAL: &str = "RM-internal control: NOT_SUPPORTED from user space on the real driver too";
const NOT_EXPORTED: &str =
    "not in the driver's exported method table: NOT_SUPPORTED on the real driver too";
const VIRT_MODE: &str =
    "would describe the host's virtualization mode; guests get no vGPU-guest RPC path";
const WATCHDOG: &str = "RM channel watchdog / recovery of the physical GPU";

/// Rows of `command id, name, params type, handling`; a row's size is `size_of` its params type.
macro_rules! table {
    ($($cmd:expr, $name:expr, $params:ty, $h:expr;)*) => {
        /// Every control the core knows, sorted by command id.
        pub const CONTROLS: &[ControlInfo] = &[$(ControlInfo {
            cmd: $cmd,
            name: $name,
            size: core::mem::size_of::<$params>() as u32,
            handling: $h,
        },)*];
    };
}

use Handling::{Backend as Be, Core, Denied, Rejected};

table! {
    0x0000_0101, "NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION", Nv0000CtrlSystemGetBuildVersionParams, Core(system::build_version);
    0x0000_013A, "NV0000_CTRL_CMD_SYSTEM_GET_P2P_CAPS_MATRIX", Nv0000CtrlSystemGetP2pCapsMatrixParams, Rejected(MULTI_GPU);
    0x0000_01F0, "NV0000_CTRL_CMD_SYSTEM_GET_FEATURES", Nv0000CtrlSystemGetFeaturesParams, Rejected(HOST_STATE);
    0x0000_0201, "NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS", Nv0000CtrlGpuGetAttachedIdsParams, Core(system::attached_ids);
    0x0000_0202, "NV0000_CTRL_CMD_GPU_GET_ID_INFO", Nv0000CtrlGpuGetIdInfoParams, Core(system::id_info);
    0x0000_0205, "NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2", Nv0000CtrlGpuGetIdInfoV2Params, Core(system::id_info_v2);
    0x0000_0214, "NV0000_CTRL_CMD_GPU_GET_PROBED_IDS", Nv0000CtrlGpuGetProbedIdsParams, Core(system::probed_ids);
    0x0000_0215, "NV0000_CTRL_CMD_GPU_ATTACH_IDS", Nv0000CtrlGpuAttachIdsParams, Core(system::attach_ids);
    0x0000_0216, "NV0000_CTRL_CMD_GPU_DETACH_IDS", Nv0000CtrlGpuDetachIdsParams, Core(system::detach_ids);
    0x0000_021B, "NV0000_CTRL_CMD_GPU_GET_PCI_INFO", Nv0000CtrlGpuGetPciInfoParams, Core(system::gpu_pci_info);
    0x0000_0279, "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE", Nv0000CtrlGpuQueryDrainStateParams, Rejected(HOST_STATE);
    0x0000_027B, "NV0000_CTRL_CMD_GPU_GET_MEMOP_ENABLE", Nv0000CtrlGpuGetMemopEnableParams, Rejected(HOST_STATE);
    0x0000_0288, "NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS", Nv0000CtrlGpuGetActiveDeviceIdsParams, Core(system::active_device_ids);
    0x0000_0289, "NV0000_CTRL_CMD_GPU_ASYNC_ATTACH_ID", Nv0000CtrlGpuAsyncAttachIdParams, Rejected(HOST_STATE);
    0x0000_0A04, "NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO", Nv0000SyncGpuBoostGroupInfoParams, Core(system::boost_group_info);
    0x0000_0B02, "NV0000_CTRL_CMD_GPUACCT_GET_ACCOUNTING_STATE", Nv0000CtrlGpuacctGetAccountingStateParams, Rejected(ACCOUNTING);
    0x0000_0D01, "NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE", Nv0000CtrlClientGetAddrSpaceTypeParams, Core(system::addr_space_type);
    0x0000_0D04, "NV0000_CTRL_CMD_CLIENT_SET_INHERITED_SHARE_POLICY", Nv0000CtrlClientSetInheritedSharePolicyParams, Rejected("object sharing between clients is not offered to guests");
    0x0080_0280, "NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES", Nv0080CtrlGpuGetNumSubdevicesParams, Core(device::num_subdevices);
    0x0080_0288, "NV0080_CTRL_CMD_GPU_QUERY_SW_STATE_PERSISTENCE", Nv0080CtrlGpuQuerySwStatePersistenceParams, Rejected(HOST_STATE);
    0x0080_0289, "NV0080_CTRL_CMD_GPU_GET_VIRTUALIZATION_MODE", Nv0080CtrlGpuGetVirtualizationModeParams, Rejected(VIRT_MODE);
    0x0080_0292, "NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2", Nv0080CtrlGpuGetClasslistV2Params, Core(device::classlist_v2);
    0x0080_1307, "NV0080_CTRL_CMD_FB_GET_CAPS_V2", Nv0080CtrlFbGetCapsV2Params, Rejected(FB_CAPS);
    0x0080_1402, "NV0080_CTRL_CMD_HOST_GET_CAPS_V2", Nv0080CtrlHostGetCapsV2Params, Core(device::host_caps_v2);
    0x0080_170D, "NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST", Nv0080CtrlFifoGetChannellistParams, Core(device::fifo_channel_list);
    0x0080_1909, "NV0080_CTRL_CMD_PERF_CUDA_LIMIT_SET_CONTROL", Nv0080CtrlPerfCudaLimitControlParams, Rejected(HOST_STATE);
    0x00DE_0001, "NV00DE_CTRL_CMD_REQUEST_DATA_POLL", Nv00deCtrlRequestDataPollParams, Rejected(OTHER_CLASS);
    0x2080_0102, "NV2080_CTRL_CMD_GPU_GET_INFO_V2", Nv2080CtrlGpuGetInfoV2Params, Core(info_lists::gpu_info_v2);
    0x2080_0110, "NV2080_CTRL_CMD_GPU_GET_NAME_STRING", Nv2080CtrlGpuGetNameStringParams, Core(subdevice::name_string);
    0x2080_0111, "NV2080_CTRL_CMD_GPU_GET_SHORT_NAME_STRING", Nv2080CtrlGpuGetShortNameStringParams, Rejected(SHORT_NAME);
    0x2080_0119, "NV2080_CTRL_CMD_GPU_GET_SIMULATION_INFO", Nv2080CtrlGpuGetSimulationInfoParams, Rejected(SIMULATION);
    0x2080_012F, "NV2080_CTRL_CMD_GPU_QUERY_ECC_STATUS", Nv2080CtrlGpuQueryEccStatusParams, Rejected(HOST_STATE);
    0x2080_0131, "NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES", Nv2080CtrlGpuQueryComputeModeRulesParams, Core(subdevice::compute_mode_rules);
    0x2080_0133, "NV2080_CTRL_CMD_GPU_QUERY_ECC_CONFIGURATION", Nv2080CtrlGpuQueryEccConfigurationParams, Rejected(HOST_STATE);
    0x2080_013F, "NV2080_CTRL_CMD_GPU_GET_OEM_BOARD_INFO", Nv2080CtrlGpuGetOemBoardInfoParams, Rejected(HOST_STATE);
    0x2080_0145, "NV2080 private GPU control 0x45", (), Rejected(PRIVATE);
    0x2080_014A, "NV2080_CTRL_CMD_GPU_GET_GID_INFO", Nv2080CtrlGpuGetGidInfoParams, Core(subdevice::gid_info);
    0x2080_014B, "NV2080_CTRL_CMD_GPU_GET_INFOROM_OBJECT_VERSION", Nv2080CtrlGpuGetInforomObjectVersionParams, Rejected(HOST_STATE);
    0x2080_0156, "NV2080_CTRL_CMD_GPU_GET_INFOROM_IMAGE_VERSION", Nv2080CtrlGpuGetInforomImageVersionParams, Rejected(HOST_STATE);
    0x2080_0157, "NV2080_CTRL_CMD_GPU_QUERY_INFOROM_ECC_SUPPORT", (), Rejected(HOST_STATE);
    0x2080_016D, "NV2080_CTRL_GPU_GET_NVENC_SW_SESSION_STATS", Nv2080CtrlGpuGetNvencSwSessionStatsParams, Rejected(ACCOUNTING);
    0x2080_0170, "NV2080_CTRL_CMD_GPU_GET_ENGINES_V2", Nv2080CtrlGpuGetEnginesV2Params, Core(subdevice::engines_v2);
    0x2080_017B, "NV2080_CTRL_GPU_GET_NVFBC_SW_SESSION_STATS", Nv2080CtrlGpuGetNvfbcSwSessionStatsParams, Rejected(ACCOUNTING);
    0x2080_018D, "NV2080_CTRL_CMD_GPU_GET_PIDS", Nv2080CtrlGpuGetPidsParams, Rejected(ACCOUNTING);
    0x2080_0195, "NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG", Nv2080CtrlGpuGetComputePolicyConfigParams, Core(subdevice::compute_policy_config);
    0x2080_01A3, "NV2080_CTRL_CMD_GET_GPU_FABRIC_PROBE_INFO", Nv2080CtrlCmdGetGpuFabricProbeInfoParams, Rejected(MULTI_GPU);
    0x2080_01A4, "NV2080_CTRL_CMD_GPU_GET_CHIP_DETAILS", Nv2080CtrlGpuGetChipDetailsParams, Rejected(HOST_STATE);
    0x2080_01B2, "NV2080_CTRL_CMD_GPU_GET_RECOVERY_ACTION", Nv2080CtrlGpuGetRecoveryActionParams, Rejected(HOST_STATE);
    0x2080_0406, "NV2080_CTRL_CMD_TIMER_GET_GPU_CPU_TIME_CORRELATION_INFO", Nv2080CtrlTimerGetGpuCpuTimeCorrelationInfoParams, Rejected("the sim's GPU clock is not correlated with a host CPU clock");
    0x2080_0802, "NV2080_CTRL_CMD_BIOS_GET_INFO", Nv2080CtrlBiosGetInfoParams, Rejected(VBIOS);
    0x2080_110B, "NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS", Nv2080CtrlFifoDisableChannelsParams, Be(Some(fifo::disable_channels_prepare), Some(fifo::disable_channels_finish));
    0x2080_1201, "NV2080_CTRL_CMD_GR_GET_INFO", Nv2080CtrlGrGetInfoParams, Core(gr::info);
    0x2080_1210, "NV2080_CTRL_CMD_GR_SET_CTXSW_PREEMPTION_MODE", Nv2080CtrlGrSetCtxswPreemptionModeParams, Rejected(GR_DETAIL);
    0x2080_1218, "NV2080_CTRL_CMD_GR_GET_CTX_BUFFER_SIZE", Nv2080CtrlGrGetCtxBufferSizeParams, Rejected(GR_DETAIL);
    0x2080_121B, "NV2080_CTRL_CMD_GR_GET_GLOBAL_SM_ORDER", Nv2080CtrlGrGetGlobalSmOrderParams, Rejected(GR_DETAIL);
    0x2080_1227, "NV2080_CTRL_CMD_GR_GET_CAPS_V2", Nv0080CtrlGrGetCapsV2Params, Core(gr::caps_v2);
    0x2080_122A, "NV2080_CTRL_CMD_GR_GET_GPC_MASK", Nv2080CtrlGrGetGpcMaskParams, Core(gr::gpc_mask);
    0x2080_122B, "NV2080_CTRL_CMD_GR_GET_TPC_MASK", Nv2080CtrlGrGetTpcMaskParams, Core(gr::tpc_mask);
    0x2080_1230, "NV2080_CTRL_CMD_GR_GET_SM_ISSUE_RATE_MODIFIER", Nv2080CtrlGrGetSmIssueRateModifierParams, Rejected(GR_DETAIL);
    0x2080_1303, "NV2080_CTRL_CMD_FB_GET_INFO_V2", Nv2080CtrlFbGetInfoV2Params, Core(info_lists::fb_info_v2);
    0x2080_1322, "NV2080_CTRL_CMD_FB_GET_OFFLINED_PAGES", Nv2080CtrlFbGetOfflinedPagesParams, Rejected(HOST_STATE);
    0x2080_1357, "NV2080_CTRL_CMD_FB_QUERY_DRAM_ENCRYPTION_INFOROM_SUPPORT", Nv2080CtrlFbDramEncryptionInforomSupportParams, Rejected(HOST_STATE);
    0x2080_1701, "NV2080_CTRL_CMD_MC_GET_ARCH_INFO", Nv2080CtrlMcGetArchInfoParams, Core(subdevice::arch_info);
    0x2080_1801, "NV2080_CTRL_CMD_BUS_GET_PCI_INFO", Nv2080CtrlBusGetPciInfoParams, Core(subdevice::bus_pci_info);
    0x2080_1802, "NV2080_CTRL_CMD_BUS_GET_INFO", Nv2080CtrlBusGetInfoParams, Rejected(BUS_INFO);
    0x2080_1803, "NV2080_CTRL_CMD_BUS_GET_PCI_BAR_INFO", Nv2080CtrlBusGetPciBarInfoParams, Rejected(BAR_INFO);
    0x2080_1813, "NV2080_CTRL_CMD_BUS_GET_PEX_COUNTERS", Nv2080CtrlBusGetPexCountersParams, Rejected(HOST_STATE);
    0x2080_1819, "NV2080_CTRL_CMD_BUS_GET_PEX_UTIL_COUNTERS", Nv2080CtrlBusGetPexUtilCountersParams, Rejected(HOST_STATE);
    0x2080_1823, "NV2080_CTRL_CMD_BUS_GET_INFO_V2", Nv2080CtrlBusGetInfoV2Params, Rejected(HOST_STATE);
    0x2080_1829, "NV2080_CTRL_CMD_BUS_GET_PCIE_REQ_ATOMICS_CAPS", Nv2080CtrlCmdBusGetPcieReqAtomicsCapsParams, Rejected(HOST_STATE);
    0x2080_182A, "NV2080_CTRL_CMD_BUS_GET_PCIE_SUPPORTED_GPU_ATOMICS", Nv2080CtrlCmdBusGetPcieSupportedGpuAtomicsParams, Rejected(HOST_STATE);
    0x2080_182B, "NV2080_CTRL_CMD_BUS_GET_C2C_INFO", Nv2080CtrlCmdBusGetC2cInfoParams, Rejected(HOST_STATE);
    0x2080_1830, "NV2080_CTRL_CMD_BUS_GET_PCIE_CPL_ATOMICS_CAPS", Nv2080CtrlCmdBusGetPcieCplAtomicsCapsParams, Rejected(HOST_STATE);
    0x2080_200A, "NV2080_CTRL_CMD_PERF_BOOST", Nv2080CtrlPerfBoostParams, Rejected(HOST_STATE);
    0x2080_220C, "NV2080_CTRL_CMD_RC_RELEASE_WATCHDOG_REQUESTS", (), Rejected(WATCHDOG);
    0x2080_2210, "NV2080_CTRL_CMD_RC_SOFT_DISABLE_WATCHDOG", (), Rejected(WATCHDOG);
    0x2080_2A0A, "NV2080_CTRL_CMD_CE_GET_ALL_CAPS", Nv2080CtrlCeGetAllCapsParams, Rejected("copy-engine capability bits of the physical CEs the sim does not model");
    0x2080_3002, "NV2080_CTRL_CMD_NVLINK_GET_NVLINK_STATUS", Nv2080CtrlCmdNvlinkGetNvlinkStatusParams, Rejected(MULTI_GPU);
    0x2080_3083, "NV2080_CTRL_CMD_NVLINK_GET_PLATFORM_INFO", Nv2080CtrlNvlinkGetPlatformInfoParams, Rejected(MULTI_GPU);
    0x2080_3404, "NV2080_CTRL_CMD_ECC_GET_REPAIR_STATUS", Nv2080CtrlEccGetRepairStatusParams, Rejected(HOST_STATE);
    0x2080_3406, "NV2080 private ECC control 0x06", PrivateParams<1>, Rejected(PRIVATE);
    0x2080_3601, "NV2080_CTRL_CMD_GSP_GET_FEATURES", Nv2080CtrlGspGetFeaturesParams, Rejected(HOST_STATE);
    0x2080_3801, "NV2080_CTRL_CMD_GRMGR_GET_GR_FS_INFO", Nv2080CtrlGrmgrGetGrFsInfoParams, Rejected(GR_DETAIL);
    0x2080_8159, "NV2080 legacy-GSS GPU control 0x59", PrivateParams<332>, Rejected(PRIVATE);
    0x2080_8162, "NV2080 legacy-GSS GPU control 0x62", PrivateParams<1>, Rejected(PRIVATE);
    0x2080_852A, "NV2080 legacy-GSS thermal/power control 0x2a", PrivateParams<1784>, Rejected(PRIVATE);
    0x2080_852B, "NV2080 legacy-GSS thermal/power control 0x2b", PrivateParams<2836>, Rejected(PRIVATE);
    0x2080_852E, "NV2080 legacy-GSS thermal/power control 0x2e", PrivateParams<528>, Rejected(PRIVATE);
    0x2080_852F, "NV2080 legacy-GSS thermal/power control 0x2f", PrivateParams<776>, Rejected(PRIVATE);
    0x2080_8536, "NV2080 legacy-GSS thermal/power control 0x36", PrivateParams<1812>, Rejected(PRIVATE);
    0x2080_853A, "NV2080 legacy-GSS thermal/power control 0x3a", PrivateParams<1456>, Rejected(PRIVATE);
    0x2080_8542, "NV2080 legacy-GSS thermal/power control 0x42", PrivateParams<504>, Rejected(PRIVATE);
    0x2080_8546, "NV2080 legacy-GSS thermal/power control 0x46", PrivateParams<24>, Rejected(PRIVATE);
    0x2080_9009, "NV2080 legacy-GSS clock control 0x09", PrivateParams<8>, Rejected(PRIVATE);
    0x2080_9019, "NV2080 legacy-GSS clock control 0x19", PrivateParams<10800>, Rejected(PRIVATE);
    0x2080_9038, "NV2080 legacy-GSS clock control 0x38", PrivateParams<4>, Rejected(PRIVATE);
    0x2080_9064, "NV2080 legacy-GSS clock control 0x64", PrivateParams<520>, Rejected(PRIVATE);
    0x2080_A060, "NV2080 legacy-GSS perf control 0x60", PrivateParams<28>, Rejected(PRIVATE);
    0x2080_A06E, "NV2080 legacy-GSS perf control 0x6e", PrivateParams<1>, Rejected(PRIVATE);
    0x2080_A06F, "NV2080 legacy-GSS perf control 0x6f", PrivateParams<4>, Rejected(PRIVATE);
    0x2080_A080, "NV2080 legacy-GSS perf control 0x80", PrivateParams<52>, Rejected(PRIVATE);
    0x2080_A0A4, "NV2080 legacy-GSS perf control 0xa4", PrivateParams<67396>, Rejected(PRIVATE);
    0x2080_A0A6, "NV2080 legacy-GSS perf control 0xa6", PrivateParams<34720>, Rejected(PRIVATE);
    0x2080_A0A7, "NV2080 legacy-GSS perf control 0xa7", PrivateParams<14988>, Rejected(PRIVATE);
    0x2080_A0A8, "NV2080 legacy-GSS perf control 0xa8", PrivateParams<19724>, Rejected(PRIVATE);
    0x2080_A0F2, "NV2080 legacy-GSS perf control 0xf2", PrivateParams<96>, Rejected(PRIVATE);
    0x2080_A612, "NV2080 legacy-GSS power control 0x12", PrivateParams<11680>, Rejected(PRIVATE);
    0x2080_A618, "NV2080 legacy-GSS power control 0x18", PrivateParams<8620>, Rejected(PRIVATE);
    0x2080_A63C, "NV2080 legacy-GSS power control 0x3c", PrivateParams<28>, Rejected(PRIVATE);
    0x2081_0108, "NV2081 BINAPI control 0x0108", PrivateParams<992>, Rejected(OTHER_CLASS);
    0x2081_0110, "NV2081 BINAPI control 0x0110", PrivateParams<1>, Rejected(OTHER_CLASS);
    0x2081_0111, "NV2081 BINAPI control 0x0111", PrivateParams<4>, Rejected(OTHER_CLASS);
    0x208F_1105, "NV208F_CTRL_CMD_GPU_VERIFY_INFOROM", Nv208fCtrlGpuVerifyInforomParams, Rejected(OTHER_CLASS);
    0x503C_0102, "NV503C_CTRL_CMD_REGISTER_VA_SPACE", Nv503cCtrlRegisterVaSpaceParams, Rejected(OTHER_CLASS);
    0x503C_0104, "NV503C_CTRL_CMD_REGISTER_VIDMEM", Nv503cCtrlRegisterVidmemParams, Rejected(OTHER_CLASS);
    0x503C_0105, "NV503C_CTRL_CMD_UNREGISTER_VIDMEM", Nv503cCtrlUnregisterVidmemParams, Rejected(OTHER_CLASS);
    0x83DE_0309, "NV83DE_CTRL_CMD_DEBUG_SET_EXCEPTION_MASK", Nv83deCtrlDebugSetExceptionMaskParams, Rejected(OTHER_CLASS);
    0x906F_0101, "NV906F_CTRL_GET_CLASS_ENGINEID", Nv906fCtrlGetClassEngineidParams, Core(fifo::class_engine_id);
    0x90E6_0102, "NV90E6_CTRL_CMD_MASTER_GET_VIRTUAL_FUNCTION_ERROR_CONT_INTR_MASK", Nv90e6CtrlMasterGetVirtualFunctionErrorContIntrMaskParams, Rejected(OTHER_CLASS);
    0x90E7_0113, "NV90E7_CTRL_CMD_BBX_GET_LAST_FLUSH_TIME", Nv90e7CtrlBbxGetLastFlushTimeParams, Rejected(OTHER_CLASS);
    0xA06C_0101, "NVA06C_CTRL_CMD_GPFIFO_SCHEDULE", NvA06cCtrlGpfifoScheduleParams, Be(None, None);
    0xA06C_0102, "NVA06C_CTRL_CMD_BIND", NvA06cCtrlBindParams, Be(Some(fifo::bind_prepare), None);
    0xA06C_0103, "NVA06C_CTRL_CMD_SET_TIMESLICE", NvA06cCtrlTimesliceParams, Be(None, Some(fifo::timeslice_finish));
    0xA06C_0104, "NVA06C_CTRL_CMD_GET_TIMESLICE", NvA06cCtrlTimesliceParams, Be(None, None);
    0xA06C_0105, "NVA06C_CTRL_CMD_PREEMPT", NvA06cCtrlPreemptParams, Be(Some(fifo::preempt_prepare), None);
    0xA06C_0106, "NVA06C_CTRL_CMD_GET_INFO", NvA06cCtrlGetInfoParams, Be(None, None);
    0xA06C_0107, "NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL", NvA06cCtrlInterleaveLevelParams, Be(Some(fifo::interleave_prepare), Some(fifo::interleave_finish));
    0xA06C_0108, "NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL", NvA06cCtrlInterleaveLevelParams, Rejected(NOT_EXPORTED);
    0xA06C_0110, "NVA06C_CTRL_CMD_MAKE_REALTIME", NvA06cCtrlMakeRealtimeParams, Denied("needs CAP_SYS_NICE (RS_ACCESS_NICE); guests have no host privileges");
    0xA06C_0201, "NVA06C_CTRL_CMD_INTERNAL_GPFIFO_SCHEDULE", NvA06cCtrlGpfifoScheduleParams, Rejected(INTERNAL);
    0xA06C_0202, "NVA06C_CTRL_CMD_INTERNAL_SET_TIMESLICE", NvA06cCtrlTimesliceParams, Rejected(INTERNAL);
    0xA06F_0103, "NVA06F_CTRL_CMD_GPFIFO_SCHEDULE", NvA06cCtrlGpfifoScheduleParams, Be(None, None);
    0xC36F_0108, "NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN", NvC36fCtrlGpfifoGetWorkSubmitTokenParams, Be(None, None);
    0xCB33_0101, "NV_CONF_COMPUTE_CTRL_CMD_SYSTEM_GET_CAPABILITIES", NvConfComputeCtrlCmdSystemGetCapabilitiesParams, Rejected(OTHER_CLASS);
}

/// The table row for `cmd`.
pub fn control_info(cmd: u32) -> Option<&'static ControlInfo> {
    CONTROLS
        .binary_search_by_key(&cmd, |c| c.cmd)
        .ok()
        .map(|i| &CONTROLS[i])
}

/// Whether a command of `cmd`'s class can be issued on an object of class `object_class`.
pub fn object_accepts(cmd: u32, object_class: u32) -> bool {
    let is_channel = matches!(
        object_class,
        class::VOLTA_CHANNEL_GPFIFO_A
            | class::AMPERE_CHANNEL_GPFIFO_A
            | class::HOPPER_CHANNEL_GPFIFO_A
    );
    match cmd_class(cmd) {
        0x0000 => object_class == class::NV01_ROOT_CLIENT,
        0x906F | 0xA06F | 0xC36F => is_channel,
        c => c == object_class,
    }
}

/// `RM_CONTROL`: flags, size/pointer consistency, client and object, the table, exact param
/// size, copy in, run, copy out.
pub(super) fn rm_control<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &Nvos54Parameters,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    if p.flags & !NVOS54_FLAGS_IRQL_RAISED != 0 {
        return NvStatus::ERR_INVALID_FLAGS;
    }
    if p.paramsSize > RMAPI_PARAM_COPY_MAX_PARAMS_SIZE || ((p.params == 0) != (p.paramsSize == 0)) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let Some((backend, gpu, vgpu)) = rm.parts(c.gfid) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(client) = vgpu.client_for(c.fd, p.hClient) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let Some(obj) = client.get(p.hObject) else {
        return NvStatus::ERR_INVALID_OBJECT_HANDLE;
    };
    let host_client = client.host;
    let Some(info) = control_info(p.cmd).filter(|i| object_accepts(i.cmd, obj.class)) else {
        return NvStatus::ERR_NOT_SUPPORTED;
    };
    match info.handling {
        Handling::Rejected(_) => return NvStatus::ERR_NOT_SUPPORTED,
        Handling::Denied(_) => return NvStatus::ERR_INSUFFICIENT_PERMISSIONS,
        _ => {}
    }
    if p.paramsSize != info.size {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let mut params = vec![0u8; p.paramsSize as usize];
    if p.params != 0 && mem.read(p.params, &mut params).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    let mut ctx = ControlCtx {
        gpu,
        vgpu,
        client: p.hClient,
        object: p.hObject,
        mem,
    };
    let status = match info.handling {
        Handling::Core(f) => f(&mut ctx, &mut params),
        Handling::Backend(prepare, finish) => {
            let guest = params.clone();
            if let Some(prep) = prepare {
                if let Err(s) = prep(&ctx, &mut params) {
                    return s;
                }
            }
            let s = backend.control(c.gfid, host_client, p.hObject, p.cmd, &mut params);
            if s.is_ok() {
                if let Some(fin) = finish {
                    fin(&mut ctx, &guest, &mut params);
                }
            } else {
                params = guest;
            }
            s
        }
        Handling::Rejected(_) | Handling::Denied(_) => unreachable!("handled above"),
    };
    if p.params != 0 && ctx.mem.write(p.params, &params).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    status
}

fn read_list(mem: &dyn GuestMemory, addr: u64, n: usize) -> Option<Vec<u32>> {
    let mut raw = vec![0u8; n * 4];
    mem.read(addr, &mut raw).ok()?;
    Some(
        raw.chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

fn get<T: FromBytes>(params: &[u8]) -> Result<T, NvStatus> {
    read_struct(params).ok_or(NvStatus::ERR_INVALID_PARAM_STRUCT)
}

fn put<T: IntoBytes + Immutable>(v: &T, params: &mut [u8]) -> NvStatus {
    write_struct(v, params);
    NvStatus::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        assert!(
            CONTROLS.windows(2).all(|w| w[0].cmd < w[1].cmd),
            "table must be sorted and unique"
        );
        assert_eq!(
            control_info(NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL)
                .unwrap()
                .handling
                .kind(),
            "rejected"
        );
    }

    #[test]
    fn commands_reach_only_their_class() {
        assert!(object_accepts(
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            class::HOPPER_CHANNEL_GPFIFO_A
        ));
        assert!(!object_accepts(
            NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
            class::KEPLER_CHANNEL_GROUP_A
        ));
        assert!(object_accepts(
            NVA06C_CTRL_CMD_PREEMPT,
            class::KEPLER_CHANNEL_GROUP_A
        ));
        assert!(!object_accepts(
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            class::NV01_DEVICE_0
        ));
        assert!(object_accepts(
            NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS,
            class::NV01_ROOT_CLIENT
        ));
    }
}
