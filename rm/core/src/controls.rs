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

use super::dispatch::Caller;
use super::guest_memory::GuestMemory;
use super::objects::ObjectKind;
use super::vgpu::Vgpu;
use super::Rm;
use crate::backend::{Backend, GpuInfo};
use rm_abi::class;
use rm_abi::ctrl::*;
use rm_abi::ioctl::RMAPI_PARAM_COPY_MAX_PARAMS_SIZE;
use rm_abi::nvos::{Nvos30Parameters, Nvos54Parameters, NVOS54_FLAGS_IRQL_RAISED};
use rm_abi::{read_struct, write_struct, Handle, NvStatus, NV_VERSION_STRING};
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
const GR_INFO: &str = "every GR info index (SM, TPC and GPC counts, warp, register and cache limits) is GR hardware the sim does not model";
const BAR_INFO: &str = "BAR sizes and CPU physical addresses belong to the VMM's virtual PCI device, which neither GpuInfo nor VgpuConfig carries";
const BUS_INFO: &str =
    "bus info indices (PCIe link, coherency, apertures) describe the physical bus";
const VBIOS: &str = "VBIOS revision and OEM data of a physical board";
const SIMULATION: &str = "the honest answer is a simulator type, which moves CUDA onto simulator paths; NONE would be false";
const ENGINE_IDS: &str = "which physical engine a copy object on a GR channel runs on is not recorded by the core's engine objects";
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
    0x0000_0101, "NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION", Nv0000CtrlSystemGetBuildVersionParams, Core(build_version);
    0x0000_013A, "NV0000_CTRL_CMD_SYSTEM_GET_P2P_CAPS_MATRIX", Nv0000CtrlSystemGetP2pCapsMatrixParams, Rejected(MULTI_GPU);
    0x0000_01F0, "NV0000_CTRL_CMD_SYSTEM_GET_FEATURES", Nv0000CtrlSystemGetFeaturesParams, Rejected(HOST_STATE);
    0x0000_0201, "NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS", Nv0000CtrlGpuGetAttachedIdsParams, Core(attached_ids);
    0x0000_0202, "NV0000_CTRL_CMD_GPU_GET_ID_INFO", Nv0000CtrlGpuGetIdInfoParams, Core(id_info);
    0x0000_0205, "NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2", Nv0000CtrlGpuGetIdInfoV2Params, Core(id_info_v2);
    0x0000_0214, "NV0000_CTRL_CMD_GPU_GET_PROBED_IDS", Nv0000CtrlGpuGetProbedIdsParams, Core(probed_ids);
    0x0000_0215, "NV0000_CTRL_CMD_GPU_ATTACH_IDS", Nv0000CtrlGpuAttachIdsParams, Core(attach_ids);
    0x0000_0216, "NV0000_CTRL_CMD_GPU_DETACH_IDS", Nv0000CtrlGpuDetachIdsParams, Core(detach_ids);
    0x0000_021B, "NV0000_CTRL_CMD_GPU_GET_PCI_INFO", Nv0000CtrlGpuGetPciInfoParams, Core(gpu_pci_info);
    0x0000_0279, "NV0000_CTRL_CMD_GPU_QUERY_DRAIN_STATE", Nv0000CtrlGpuQueryDrainStateParams, Rejected(HOST_STATE);
    0x0000_027B, "NV0000_CTRL_CMD_GPU_GET_MEMOP_ENABLE", Nv0000CtrlGpuGetMemopEnableParams, Rejected(HOST_STATE);
    0x0000_0288, "NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS", Nv0000CtrlGpuGetActiveDeviceIdsParams, Core(active_device_ids);
    0x0000_0289, "NV0000_CTRL_CMD_GPU_ASYNC_ATTACH_ID", Nv0000CtrlGpuAsyncAttachIdParams, Rejected(HOST_STATE);
    0x0000_0A04, "NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO", Nv0000SyncGpuBoostGroupInfoParams, Core(boost_group_info);
    0x0000_0B02, "NV0000_CTRL_CMD_GPUACCT_GET_ACCOUNTING_STATE", Nv0000CtrlGpuacctGetAccountingStateParams, Rejected(ACCOUNTING);
    0x0000_0D01, "NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE", Nv0000CtrlClientGetAddrSpaceTypeParams, Core(addr_space_type);
    0x0000_0D04, "NV0000_CTRL_CMD_CLIENT_SET_INHERITED_SHARE_POLICY", Nv0000CtrlClientSetInheritedSharePolicyParams, Rejected("object sharing between clients is not offered to guests");
    0x0080_0280, "NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES", Nv0080CtrlGpuGetNumSubdevicesParams, Core(num_subdevices);
    0x0080_0288, "NV0080_CTRL_CMD_GPU_QUERY_SW_STATE_PERSISTENCE", Nv0080CtrlGpuQuerySwStatePersistenceParams, Rejected(HOST_STATE);
    0x0080_0289, "NV0080_CTRL_CMD_GPU_GET_VIRTUALIZATION_MODE", Nv0080CtrlGpuGetVirtualizationModeParams, Rejected(VIRT_MODE);
    0x0080_0292, "NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2", Nv0080CtrlGpuGetClasslistV2Params, Core(classlist_v2);
    0x0080_1307, "NV0080_CTRL_CMD_FB_GET_CAPS_V2", Nv0080CtrlFbGetCapsV2Params, Rejected(FB_CAPS);
    0x0080_1402, "NV0080_CTRL_CMD_HOST_GET_CAPS_V2", Nv0080CtrlHostGetCapsV2Params, Core(host_caps_v2);
    0x0080_170D, "NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST", Nv0080CtrlFifoGetChannellistParams, Core(fifo_channel_list);
    0x0080_1909, "NV0080_CTRL_CMD_PERF_CUDA_LIMIT_SET_CONTROL", Nv0080CtrlPerfCudaLimitControlParams, Rejected(HOST_STATE);
    0x00DE_0001, "NV00DE_CTRL_CMD_REQUEST_DATA_POLL", Nv00deCtrlRequestDataPollParams, Rejected(OTHER_CLASS);
    0x2080_0102, "NV2080_CTRL_CMD_GPU_GET_INFO_V2", Nv2080CtrlGpuGetInfoV2Params, Core(gpu_info_v2);
    0x2080_0110, "NV2080_CTRL_CMD_GPU_GET_NAME_STRING", Nv2080CtrlGpuGetNameStringParams, Core(name_string);
    0x2080_0111, "NV2080_CTRL_CMD_GPU_GET_SHORT_NAME_STRING", Nv2080CtrlGpuGetShortNameStringParams, Rejected(SHORT_NAME);
    0x2080_0119, "NV2080_CTRL_CMD_GPU_GET_SIMULATION_INFO", Nv2080CtrlGpuGetSimulationInfoParams, Rejected(SIMULATION);
    0x2080_012F, "NV2080_CTRL_CMD_GPU_QUERY_ECC_STATUS", Nv2080CtrlGpuQueryEccStatusParams, Rejected(HOST_STATE);
    0x2080_0131, "NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES", Nv2080CtrlGpuQueryComputeModeRulesParams, Core(compute_mode_rules);
    0x2080_0133, "NV2080_CTRL_CMD_GPU_QUERY_ECC_CONFIGURATION", Nv2080CtrlGpuQueryEccConfigurationParams, Rejected(HOST_STATE);
    0x2080_013F, "NV2080_CTRL_CMD_GPU_GET_OEM_BOARD_INFO", Nv2080CtrlGpuGetOemBoardInfoParams, Rejected(HOST_STATE);
    0x2080_0145, "NV2080 private GPU control 0x45", (), Rejected(PRIVATE);
    0x2080_014A, "NV2080_CTRL_CMD_GPU_GET_GID_INFO", Nv2080CtrlGpuGetGidInfoParams, Core(gid_info);
    0x2080_014B, "NV2080_CTRL_CMD_GPU_GET_INFOROM_OBJECT_VERSION", Nv2080CtrlGpuGetInforomObjectVersionParams, Rejected(HOST_STATE);
    0x2080_0156, "NV2080_CTRL_CMD_GPU_GET_INFOROM_IMAGE_VERSION", Nv2080CtrlGpuGetInforomImageVersionParams, Rejected(HOST_STATE);
    0x2080_0157, "NV2080_CTRL_CMD_GPU_QUERY_INFOROM_ECC_SUPPORT", (), Rejected(HOST_STATE);
    0x2080_016D, "NV2080_CTRL_GPU_GET_NVENC_SW_SESSION_STATS", Nv2080CtrlGpuGetNvencSwSessionStatsParams, Rejected(ACCOUNTING);
    0x2080_0170, "NV2080_CTRL_CMD_GPU_GET_ENGINES_V2", Nv2080CtrlGpuGetEnginesV2Params, Core(engines_v2);
    0x2080_017B, "NV2080_CTRL_GPU_GET_NVFBC_SW_SESSION_STATS", Nv2080CtrlGpuGetNvfbcSwSessionStatsParams, Rejected(ACCOUNTING);
    0x2080_018D, "NV2080_CTRL_CMD_GPU_GET_PIDS", Nv2080CtrlGpuGetPidsParams, Rejected(ACCOUNTING);
    0x2080_0195, "NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG", Nv2080CtrlGpuGetComputePolicyConfigParams, Core(compute_policy_config);
    0x2080_01A3, "NV2080_CTRL_CMD_GET_GPU_FABRIC_PROBE_INFO", Nv2080CtrlCmdGetGpuFabricProbeInfoParams, Rejected(MULTI_GPU);
    0x2080_01A4, "NV2080_CTRL_CMD_GPU_GET_CHIP_DETAILS", Nv2080CtrlGpuGetChipDetailsParams, Rejected(HOST_STATE);
    0x2080_01B2, "NV2080_CTRL_CMD_GPU_GET_RECOVERY_ACTION", Nv2080CtrlGpuGetRecoveryActionParams, Rejected(HOST_STATE);
    0x2080_0406, "NV2080_CTRL_CMD_TIMER_GET_GPU_CPU_TIME_CORRELATION_INFO", Nv2080CtrlTimerGetGpuCpuTimeCorrelationInfoParams, Rejected("the sim's GPU clock is not correlated with a host CPU clock");
    0x2080_0802, "NV2080_CTRL_CMD_BIOS_GET_INFO", Nv2080CtrlBiosGetInfoParams, Rejected(VBIOS);
    0x2080_110B, "NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS", Nv2080CtrlFifoDisableChannelsParams, Be(Some(disable_channels_prepare), Some(disable_channels_finish));
    0x2080_1201, "NV2080_CTRL_CMD_GR_GET_INFO", Nv2080CtrlGrGetInfoParams, Rejected(GR_INFO);
    0x2080_1210, "NV2080_CTRL_CMD_GR_SET_CTXSW_PREEMPTION_MODE", Nv2080CtrlGrSetCtxswPreemptionModeParams, Rejected(GR_DETAIL);
    0x2080_1218, "NV2080_CTRL_CMD_GR_GET_CTX_BUFFER_SIZE", Nv2080CtrlGrGetCtxBufferSizeParams, Rejected(GR_DETAIL);
    0x2080_121B, "NV2080_CTRL_CMD_GR_GET_GLOBAL_SM_ORDER", Nv2080CtrlGrGetGlobalSmOrderParams, Rejected(GR_DETAIL);
    0x2080_1227, "NV2080_CTRL_CMD_GR_GET_CAPS_V2", Nv0080CtrlGrGetCapsV2Params, Rejected(GR_DETAIL);
    0x2080_122A, "NV2080_CTRL_CMD_GR_GET_GPC_MASK", Nv2080CtrlGrGetGpcMaskParams, Rejected(GR_DETAIL);
    0x2080_122B, "NV2080_CTRL_CMD_GR_GET_TPC_MASK", Nv2080CtrlGrGetTpcMaskParams, Rejected(GR_DETAIL);
    0x2080_1230, "NV2080_CTRL_CMD_GR_GET_SM_ISSUE_RATE_MODIFIER", Nv2080CtrlGrGetSmIssueRateModifierParams, Rejected(GR_DETAIL);
    0x2080_1303, "NV2080_CTRL_CMD_FB_GET_INFO_V2", Nv2080CtrlFbGetInfoV2Params, Core(fb_info_v2);
    0x2080_1322, "NV2080_CTRL_CMD_FB_GET_OFFLINED_PAGES", Nv2080CtrlFbGetOfflinedPagesParams, Rejected(HOST_STATE);
    0x2080_1357, "NV2080_CTRL_CMD_FB_QUERY_DRAM_ENCRYPTION_INFOROM_SUPPORT", Nv2080CtrlFbDramEncryptionInforomSupportParams, Rejected(HOST_STATE);
    0x2080_1701, "NV2080_CTRL_CMD_MC_GET_ARCH_INFO", Nv2080CtrlMcGetArchInfoParams, Core(arch_info);
    0x2080_1801, "NV2080_CTRL_CMD_BUS_GET_PCI_INFO", Nv2080CtrlBusGetPciInfoParams, Core(bus_pci_info);
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
    0x906F_0101, "NV906F_CTRL_GET_CLASS_ENGINEID", Nv906fCtrlGetClassEngineidParams, Rejected(ENGINE_IDS);
    0x90E6_0102, "NV90E6_CTRL_CMD_MASTER_GET_VIRTUAL_FUNCTION_ERROR_CONT_INTR_MASK", Nv90e6CtrlMasterGetVirtualFunctionErrorContIntrMaskParams, Rejected(OTHER_CLASS);
    0x90E7_0113, "NV90E7_CTRL_CMD_BBX_GET_LAST_FLUSH_TIME", Nv90e7CtrlBbxGetLastFlushTimeParams, Rejected(OTHER_CLASS);
    0xA06C_0101, "NVA06C_CTRL_CMD_GPFIFO_SCHEDULE", NvA06cCtrlGpfifoScheduleParams, Be(None, None);
    0xA06C_0102, "NVA06C_CTRL_CMD_BIND", NvA06cCtrlBindParams, Be(Some(bind_prepare), None);
    0xA06C_0103, "NVA06C_CTRL_CMD_SET_TIMESLICE", NvA06cCtrlTimesliceParams, Be(None, Some(timeslice_finish));
    0xA06C_0104, "NVA06C_CTRL_CMD_GET_TIMESLICE", NvA06cCtrlTimesliceParams, Be(None, None);
    0xA06C_0105, "NVA06C_CTRL_CMD_PREEMPT", NvA06cCtrlPreemptParams, Be(Some(preempt_prepare), None);
    0xA06C_0106, "NVA06C_CTRL_CMD_GET_INFO", NvA06cCtrlGetInfoParams, Be(None, None);
    0xA06C_0107, "NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL", NvA06cCtrlInterleaveLevelParams, Be(Some(interleave_prepare), Some(interleave_finish));
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

/// `RM_IDLE_CHANNELS`: waits for the caller's own channels to idle. With `numChannels == 0`
/// the single `hChannel`; otherwise the three guest lists, every client entry of which must be
/// the caller's own client.
pub(super) fn idle_channels<B: Backend>(
    rm: &mut Rm<B>,
    c: Caller,
    p: &Nvos30Parameters,
    mem: &mut dyn GuestMemory,
) -> NvStatus {
    const MAX_IDLE_CHANNELS: u32 = 64;
    let Some((backend, client)) = rm
        .parts(c.gfid)
        .and_then(|(backend, _, v)| Some((backend, v.client_for(c.fd, p.hClient)?)))
    else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let is_channel =
        |h: Handle| matches!(client.get(h).map(|o| &o.kind), Some(ObjectKind::Channel(_)));
    let channels: Vec<Handle> = if p.numChannels == 0 {
        vec![p.hChannel]
    } else {
        if p.numChannels > MAX_IDLE_CHANNELS {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        let n = p.numChannels as usize;
        let (Some(clients), Some(_devices), Some(chans)) = (
            read_list(mem, p.phClients, n),
            read_list(mem, p.phDevices, n),
            read_list(mem, p.phChannels, n),
        ) else {
            return NvStatus::ERR_INVALID_ADDRESS;
        };
        if clients.iter().any(|&h| h != p.hClient) {
            return NvStatus::ERR_INSUFFICIENT_PERMISSIONS;
        }
        chans
    };
    if let Some(&bad) = channels.iter().find(|&&h| !is_channel(h)) {
        tracing::debug!(
            channel = bad,
            "idle of a handle that is not the caller's channel"
        );
        return NvStatus::ERR_INVALID_CHANNEL;
    }
    backend.idle_channels(c.gfid, client.host, &channels, p.timeout)
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

fn guest_gpu_id(ctx: &ControlCtx<'_>) -> u32 {
    ctx.vgpu.config.gpu_id
}

fn id_list(first: Option<u32>) -> [u32; 32] {
    let mut ids = [NV0000_CTRL_GPU_INVALID_ID; 32];
    if let Some(id) = first {
        ids[0] = id;
    }
    ids
}

fn build_version(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlSystemGetBuildVersionParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let title = format!("vGPU RM core {NV_VERSION_STRING}");
    let strings = [NV_VERSION_STRING, NV_VERSION_STRING, title.as_str()];
    let needed = strings.iter().map(|s| s.len() + 1).max().unwrap_or(0) as u32;
    let ptrs = [p.pDriverVersionBuffer, p.pVersionBuffer, p.pTitleBuffer];
    if ptrs.contains(&0) {
        p.sizeOfStrings = needed;
    } else if p.sizeOfStrings < needed {
        return NvStatus::ERR_BUFFER_TOO_SMALL;
    } else {
        for (s, addr) in strings.iter().zip(ptrs) {
            let mut b = s.as_bytes().to_vec();
            b.push(0);
            if ctx.mem.write(addr, &b).is_err() {
                return NvStatus::ERR_INVALID_ADDRESS;
            }
        }
    }
    p.changelistNumber = 0;
    p.officialChangelistNumber = 0;
    put(&p, params)
}

fn attached_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv0000CtrlGpuGetAttachedIdsParams {
            gpuIds: id_list(Some(guest_gpu_id(ctx))),
        },
        params,
    )
}

fn probed_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p = Nv0000CtrlGpuGetProbedIdsParams {
        gpuIds: id_list(Some(guest_gpu_id(ctx))),
        excludedGpuIds: id_list(None),
        gpuFlags: [0; 32],
    };
    put(&p, params)
}

fn id_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlGpuGetIdInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    if p.szName != 0 {
        let mut name = gpu_name(ctx).into_bytes();
        name.truncate(NV2080_GPU_MAX_NAME_STRING_LENGTH - 1);
        name.push(0);
        if ctx.mem.write(p.szName, &name).is_err() {
            return NvStatus::ERR_INVALID_ADDRESS;
        }
    }
    (
        p.gpuFlags,
        p.deviceInstance,
        p.subDeviceInstance,
        p.sliStatus,
        p.boardId,
        p.gpuInstance,
        p.numaId,
    ) = (0, 0, 0, SINGLE_GPU_SLI_STATUS, p.gpuId, 0, -1);
    put(&p, params)
}

/// `sliStatus` of a GPU that is alone and cannot do SLI: `NV0000_CTRL_SLI_STATUS_GPU_NOT_SUPPORTED
/// | NV0000_CTRL_SLI_STATUS_INVALID_GPU_COUNT`, what the traced H200 reports. The board id of a
/// single-GPU board is the GPU id, as there too.
const SINGLE_GPU_SLI_STATUS: u32 = 0x40 | 0x01;

fn id_info_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuGetIdInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    put(
        &Nv0000CtrlGpuGetIdInfoV2Params {
            gpuId: p.gpuId,
            sliStatus: SINGLE_GPU_SLI_STATUS,
            boardId: p.gpuId,
            numaId: -1,
            ..Default::default()
        },
        params,
    )
}

fn attach_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlGpuAttachIdsParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let mine = guest_gpu_id(ctx);
    for &id in p
        .gpuIds
        .iter()
        .take_while(|&&id| id != NV0000_CTRL_GPU_INVALID_ID)
    {
        if id != mine && id != NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS {
            p.failedId = id;
            write_struct(&p, params);
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
    }
    put(&p, params)
}

fn detach_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuDetachIdsParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let mine = guest_gpu_id(ctx);
    let ok = p
        .gpuIds
        .iter()
        .take_while(|&&id| id != NV0000_CTRL_GPU_INVALID_ID)
        .all(|&id| id == mine || id == NV0000_CTRL_GPU_DETACH_ALL_ATTACHED_IDS);
    if ok {
        NvStatus::OK
    } else {
        NvStatus::ERR_INVALID_ARGUMENT
    }
}

fn gpu_pci_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0000CtrlGpuGetPciInfoParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.gpuId != guest_gpu_id(ctx) {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let cfg = &ctx.vgpu.config;
    put(
        &Nv0000CtrlGpuGetPciInfoParams {
            gpuId: p.gpuId,
            domain: 0,
            bus: cfg.pci_bus.into(),
            slot: cfg.pci_slot.into(),
        },
        params,
    )
}

/// The vGPU as the one active device: no MIG, so no GPU or compute instance.
fn active_device_ids(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv0000CtrlGpuGetActiveDeviceIdsParams {
        numDevices: 1,
        ..Default::default()
    };
    p.devices[0] = Nv0000CtrlGpuActiveDevice {
        gpuId: guest_gpu_id(ctx),
        gpuInstanceId: NV0000_CTRL_GPU_INVALID_ID,
        computeInstanceId: NV0000_CTRL_GPU_INVALID_ID,
    };
    put(&p, params)
}

/// A single vGPU is in no sync-boost group: zero groups.
fn boost_group_info(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(&Nv0000SyncGpuBoostGroupInfoParams::default(), params)
}

/// Every host caps bit is a workaround flag for a bug of an older chip's host interface (semaphore
/// acquire, duplicate completion, CPU write WARs); the sim's Hopper FIFO has none, as the H200
/// itself reports: an all-zero table.
fn host_caps_v2(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(&Nv0080CtrlHostGetCapsV2Params::default(), params)
}

/// Channel handles to channel ids, as `deviceCtrlCmdFifoGetChannelList` does: `numChannels`
/// must be nonzero; both lists are guest arrays; a handle that is not one of the caller's
/// channels gets `NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL`. The id is the channel's id
/// in its runlist (the low 16 bits of its work-submit token).
fn fifo_channel_list(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p: Nv0080CtrlFifoGetChannellistParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let n = p.numChannels as usize;
    if n == 0
        || n > RMAPI_PARAM_COPY_MAX_PARAMS_SIZE as usize / 4
        || p.pChannelHandleList == 0
        || p.pChannelList == 0
    {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let Some(handles) = read_list(ctx.mem, p.pChannelHandleList, n) else {
        return NvStatus::ERR_INVALID_ADDRESS;
    };
    let Some(client) = ctx.vgpu.clients.get(&ctx.client) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    let chids: Vec<u8> = handles
        .iter()
        .flat_map(|&h| {
            let chid = match client.get(h).map(|o| &o.kind) {
                Some(ObjectKind::Channel(ch)) => ch
                    .work_submit_token
                    .map_or(NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL, |t| {
                        t & 0xFFFF
                    }),
                _ => NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL,
            };
            chid.to_le_bytes()
        })
        .collect();
    if ctx.mem.write(p.pChannelList, &chids).is_err() {
        return NvStatus::ERR_INVALID_ADDRESS;
    }
    NvStatus::OK
}

/// `NV2080_CTRL_GPU_INFO_INDEX_*` values the sim answers, and the fields of an index word.
mod gpu_info_index {
    /// `_INDEX` field (23:0) of an entry's index word.
    pub const INDEX_MASK: u32 = 0x00FF_FFFF;
    /// `_GROUP_ID` field (30:24): the GPU of a multi-GPU group; a vGPU is group 0 only.
    pub const GROUP_ID_SHIFT: u32 = 24;
    /// `_GROUP_ID` width mask.
    pub const GROUP_ID_MASK: u32 = 0x7F;
    pub const SYSMEM_ACCESS: u32 = 0x1F;
    pub const GEMINI_BOARD: u32 = 0x22;
    pub const GLOBAL_POISON_FUSE_ENABLED: u32 = 0x27;
    pub const NVSWITCH_PROXY_DETECTED: u32 = 0x28;
    pub const GPU_SMC_MODE: u32 = 0x2A;
    pub const GPU_FLA_CAPABILITY: u32 = 0x2D;
    pub const GPU_ATS_CAPABILITY: u32 = 0x30;
    pub const DISPLAY_ENABLED: u32 = 0x34;
    pub const MOBILE_CONFIG_ENABLED: u32 = 0x35;
    pub const GPU_PROFILING_CAPABILITY: u32 = 0x36;
    pub const GPU_DEBUGGING_CAPABILITY: u32 = 0x37;
    pub const GPU_LOCAL_EGM_CAPABILITY: u32 = 0x3A;
    pub const GPU_SELF_HOSTED_CAPABILITY: u32 = 0x3B;
    pub const CMP_SKU: u32 = 0x3C;
    pub const DMABUF_CAPABILITY: u32 = 0x3D;
    pub const IS_RESETLESS_MIG_SUPPORTED: u32 = 0x3F;
}

/// The value of one `GPU_GET_INFO_V2` index on the sim GPU, `None` when the sim cannot answer it
/// honestly (ECID, netlist and minor revisions, SM version, per-runlist CHRAM and the indices
/// this core cannot name; the driver answers `NV_ERR_NOT_SUPPORTED` for an index it cannot serve,
/// as for the ECID indices without GSP).
///
/// Every answered index is a capability the sim does not have, so the value is the `_NO` /
/// `_DISABLED` / `_UNSUPPORTED` one, except `SYSMEM_ACCESS`, which RM hard-codes to YES and the
/// sim does (system memory objects): no MIG (SMC mode UNSUPPORTED, as a vGPU without MIG reports),
/// no fabric, ATS, EGM, display, C2C self-hosting, poison containment or NVSwitch; no debugger or
/// profiler classes (a vGPU reports DISABLED unless its profile enables them); no dma-buf (RM
/// reports NO for any vGPU); one board, not a Gemini or mobile one, not a CMP SKU.
fn gpu_info_value(index: u32) -> Option<u32> {
    use gpu_info_index::*;
    match index {
        SYSMEM_ACCESS => Some(1),
        GEMINI_BOARD
        | GLOBAL_POISON_FUSE_ENABLED
        | NVSWITCH_PROXY_DETECTED
        | GPU_SMC_MODE
        | GPU_FLA_CAPABILITY
        | GPU_ATS_CAPABILITY
        | DISPLAY_ENABLED
        | MOBILE_CONFIG_ENABLED
        | GPU_PROFILING_CAPABILITY
        | GPU_DEBUGGING_CAPABILITY
        | GPU_LOCAL_EGM_CAPABILITY
        | GPU_SELF_HOSTED_CAPABILITY
        | CMP_SKU
        | DMABUF_CAPABILITY
        | IS_RESETLESS_MIG_SUPPORTED => Some(0),
        _ => None,
    }
}

/// `GPU_GET_INFO_V2` with the driver's checks (`getGpuInfos`): list size 1..=MAX, every index
/// below MAX and in group 0, else `NV_ERR_INVALID_ARGUMENT`; stops at the first index it cannot
/// answer with `NV_ERR_NOT_SUPPORTED`.
fn gpu_info_v2(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    use gpu_info_index::*;
    let mut p: Nv2080CtrlGpuGetInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let n = p.gpuInfoListSize as usize;
    if n == 0 || n > NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    for e in p.gpuInfoList.iter_mut().take(n) {
        let index = e.index & INDEX_MASK;
        let group = (e.index >> GROUP_ID_SHIFT) & GROUP_ID_MASK;
        if index as usize >= NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE || group != 0 {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        match gpu_info_value(index) {
            Some(v) => e.data = v,
            None => {
                tracing::debug!(index, "GPU info index the sim does not model");
                return NvStatus::ERR_NOT_SUPPORTED;
            }
        }
    }
    put(&p, params)
}

fn addr_space_type(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv0000CtrlClientGetAddrSpaceTypeParams = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    let Some(client) = ctx.vgpu.clients.get(&ctx.client) else {
        return NvStatus::ERR_INVALID_CLIENT;
    };
    p.addrSpaceType = match client.get(p.hObject).map(|o| &o.kind) {
        Some(ObjectKind::Memory(m)) if m.video => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_VIDMEM,
        Some(ObjectKind::Memory(_)) => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_SYSMEM,
        Some(ObjectKind::Usermode) => NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_REGMEM,
        Some(_) => return NvStatus::ERR_INVALID_ARGUMENT,
        None => return NvStatus::ERR_INVALID_OBJECT_HANDLE,
    };
    put(&p, params)
}

fn num_subdevices(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv0080CtrlGpuGetNumSubdevicesParams { numSubDevices: 1 },
        params,
    )
}

fn classlist_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv0080CtrlGpuGetClasslistV2Params::default();
    let classes = ctx
        .gpu
        .classes
        .iter()
        .filter(|c| super::objects::MODELED_CLASSES.contains(c))
        .take(NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE);
    for (slot, &c) in p.classList.iter_mut().zip(classes) {
        *slot = c;
        p.numClasses += 1;
    }
    put(&p, params)
}

fn gpu_name(ctx: &ControlCtx<'_>) -> String {
    ctx.vgpu
        .config
        .name
        .clone()
        .unwrap_or_else(|| ctx.gpu.name.clone())
}

fn name_string(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
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

fn gid_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
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

fn engines_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p = Nv2080CtrlGpuGetEnginesV2Params::default();
    for (slot, &e) in p.engineList.iter_mut().zip(ctx.gpu.engines.iter()) {
        *slot = e;
        p.engineCount += 1;
    }
    put(&p, params)
}

/// `NV2080_CTRL_FB_INFO_INDEX_*` values answered from the vGPU's quota (in KiB).
mod fb_index {
    pub const RAM_SIZE: u32 = 0x07;
    pub const TOTAL_RAM_SIZE: u32 = 0x08;
    pub const HEAP_SIZE: u32 = 0x09;
    pub const MAPPABLE_HEAP_SIZE: u32 = 0x0A;
    pub const FB_TAX_SIZE_KB: u32 = 0x10;
    pub const HEAP_FREE: u32 = 0x16;
    pub const RAM_LOCATION: u32 = 0x17;
    pub const FB_IS_BROKEN: u32 = 0x18;
    pub const USABLE_RAM_SIZE: u32 = 0x20;
    pub const IS_ZERO_FB: u32 = 0x36;
}

/// The value of one `FB_GET_INFO_V2` index for a vGPU with `quota` bytes of which `free` are
/// unallocated, `None` for indices the sim cannot answer honestly: memory geometry (bus width,
/// RAM type, FBP/LTC/LTS counts and masks, L2 size), BAR1 and the physical FB's reservations.
/// The sizes are the quota; the FB tax is 0 because nothing is carved out of a vGPU's quota; the
/// FB is dedicated (RAM_LOCATION 0), not broken, not zero-sized.
fn fb_info_value(index: u32, quota: u64, free: u64) -> Option<u32> {
    let kib = |b: u64| u32::try_from(b >> 10).unwrap_or(u32::MAX);
    Some(match index {
        fb_index::RAM_SIZE
        | fb_index::TOTAL_RAM_SIZE
        | fb_index::HEAP_SIZE
        | fb_index::MAPPABLE_HEAP_SIZE
        | fb_index::USABLE_RAM_SIZE => kib(quota),
        fb_index::HEAP_FREE => kib(free),
        fb_index::FB_TAX_SIZE_KB
        | fb_index::RAM_LOCATION
        | fb_index::FB_IS_BROKEN
        | fb_index::IS_ZERO_FB => 0,
        _ => return None,
    })
}

/// `FB_GET_INFO_V2`: list size at most MAX and every index below MAX, else
/// `NV_ERR_INVALID_ARGUMENT`; stops at the first index the sim cannot answer with
/// `NV_ERR_NOT_SUPPORTED`.
fn fb_info_v2(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let mut p: Nv2080CtrlFbGetInfoV2Params = match get(params) {
        Ok(p) => p,
        Err(s) => return s,
    };
    if p.fbInfoListSize as usize > NV2080_CTRL_FB_INFO_MAX_LIST_SIZE {
        return NvStatus::ERR_INVALID_ARGUMENT;
    }
    let quota = ctx.vgpu.config.fb_quota;
    let free = quota.saturating_sub(ctx.vgpu.fb_used);
    for e in p.fbInfoList.iter_mut().take(p.fbInfoListSize as usize) {
        if e.index as usize >= NV2080_CTRL_FB_INFO_MAX_LIST_SIZE {
            return NvStatus::ERR_INVALID_ARGUMENT;
        }
        match fb_info_value(e.index, quota, free) {
            Some(v) => e.data = v,
            None => {
                tracing::debug!(index = e.index, "FB info index the sim does not model");
                return NvStatus::ERR_NOT_SUPPORTED;
            }
        }
    }
    put(&p, params)
}

/// For the info-list controls the core answers index by index (`GPU_GET_INFO_V2`,
/// `FB_GET_INFO_V2`): the first index in `params` that the sim does not model, for which the
/// control answers `NV_ERR_NOT_SUPPORTED`. `None` for other commands or when every index is
/// answered.
pub fn unmodelled_info_index(cmd: u32, params: &[u8]) -> Option<u32> {
    let (n, list) = match cmd {
        NV2080_CTRL_CMD_GPU_GET_INFO_V2 => {
            let p: Nv2080CtrlGpuGetInfoV2Params = get(params).ok()?;
            (p.gpuInfoListSize as usize, p.gpuInfoList.to_vec())
        }
        NV2080_CTRL_CMD_FB_GET_INFO_V2 => {
            let p: Nv2080CtrlFbGetInfoV2Params = get(params).ok()?;
            (p.fbInfoListSize as usize, p.fbInfoList.to_vec())
        }
        _ => return None,
    };
    let answered = |i: u32| match cmd {
        NV2080_CTRL_CMD_GPU_GET_INFO_V2 => gpu_info_value(i & gpu_info_index::INDEX_MASK),
        _ => fb_info_value(i, 0, 0),
    };
    list.iter()
        .take(n)
        .map(|e| e.index)
        .find(|&i| answered(i).is_none())
}

/// The core lets a guest create any number of compute contexts, so no compute-mode rule
/// (exclusive thread/process, prohibited) applies: `NONE`.
fn compute_mode_rules(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    put(
        &Nv2080CtrlGpuQueryComputeModeRulesParams {
            rules: NV2080_CTRL_GPU_COMPUTE_MODE_RULES_NONE,
        },
        params,
    )
}

/// The one compute policy, the timeslice: a guest cannot change it and new TSGs get RM's
/// default timeslice, so `DEFAULT`. Inputs are ignored, as in RM.
fn compute_policy_config(_ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
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

fn arch_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
    let p = Nv2080CtrlMcGetArchInfoParams {
        architecture: ctx.gpu.architecture,
        implementation: ctx.gpu.implementation,
        ..Default::default()
    };
    put(&p, params)
}

fn bus_pci_info(ctx: &mut ControlCtx<'_>, params: &mut [u8]) -> NvStatus {
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

fn tsg<'a>(ctx: &'a ControlCtx<'_>) -> Option<&'a super::objects::channel_group::ChannelGroup> {
    match &ctx.vgpu.clients.get(&ctx.client)?.get(ctx.object)?.kind {
        ObjectKind::ChannelGroup(g) => Some(g),
        _ => None,
    }
}

fn tsg_mut<'a>(
    ctx: &'a mut ControlCtx<'_>,
) -> Option<&'a mut super::objects::channel_group::ChannelGroup> {
    match &mut ctx
        .vgpu
        .clients
        .get_mut(&ctx.client)?
        .get_mut(ctx.object)?
        .kind
    {
        ObjectKind::ChannelGroup(g) => Some(g),
        _ => None,
    }
}

fn bind_prepare(ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlBindParams = get(params)?;
    match tsg(ctx) {
        Some(g) if g.engine_type == p.engineType => Ok(()),
        _ => Err(NvStatus::ERR_INVALID_ARGUMENT),
    }
}

fn timeslice_finish(ctx: &mut ControlCtx<'_>, guest: &[u8], _host: &mut [u8]) {
    if let (Ok(p), Some(g)) = (get::<NvA06cCtrlTimesliceParams>(guest), tsg_mut(ctx)) {
        g.timeslice_us = p.timesliceUs;
    }
}

fn preempt_prepare(_ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlPreemptParams = get(params)?;
    if p.bManualTimeout != 0 && p.timeoutUs > NVA06C_PREEMPT_MAX_MANUAL_TIMEOUT_US {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    Ok(())
}

fn interleave_prepare(_ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let p: NvA06cCtrlInterleaveLevelParams = get(params)?;
    if p.tsgInterleaveLevel > NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    Ok(())
}

fn interleave_finish(ctx: &mut ControlCtx<'_>, guest: &[u8], _host: &mut [u8]) {
    if let (Ok(p), Some(g)) = (get::<NvA06cCtrlInterleaveLevelParams>(guest), tsg_mut(ctx)) {
        g.interleave_level = p.tsgInterleaveLevel;
    }
}

/// `FIFO_DISABLE_CHANNELS` carries client *and* channel handles: every client entry must be
/// the caller's own client (else `NV_ERR_INSUFFICIENT_PERMISSIONS`), every channel one of its
/// channels (else `NV_ERR_INVALID_CHANNEL`), and `pRunlistPreemptEvent` NULL. The client
/// entries are rewritten to the host handle; unused entries are zeroed.
fn disable_channels_prepare(ctx: &ControlCtx<'_>, params: &mut [u8]) -> Result<(), NvStatus> {
    let mut p: Nv2080CtrlFifoDisableChannelsParams = get(params)?;
    if p.pRunlistPreemptEvent != 0 {
        return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    }
    let n = p.numChannels as usize;
    if n > NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
        return Err(NvStatus::ERR_INVALID_ARGUMENT);
    }
    let client = ctx
        .vgpu
        .clients
        .get(&ctx.client)
        .ok_or(NvStatus::ERR_INVALID_CLIENT)?;
    for i in 0..n {
        if p.hClientList[i] != ctx.client {
            return Err(NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
        }
        if !matches!(
            client.get(p.hChannelList[i]).map(|o| &o.kind),
            Some(ObjectKind::Channel(_))
        ) {
            return Err(NvStatus::ERR_INVALID_CHANNEL);
        }
        p.hClientList[i] = client.host;
    }
    for i in n..NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES {
        p.hClientList[i] = 0;
        p.hChannelList[i] = 0;
    }
    write_struct(&p, params);
    Ok(())
}

fn disable_channels_finish(_ctx: &mut ControlCtx<'_>, guest: &[u8], host: &mut [u8]) {
    host.copy_from_slice(guest);
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

    #[test]
    fn unmodelled_info_indices_are_found_in_the_list_used() {
        let mut p = Nv2080CtrlGpuGetInfoV2Params {
            gpuInfoListSize: 2,
            ..Default::default()
        };
        p.gpuInfoList[0].index = gpu_info_index::SYSMEM_ACCESS;
        p.gpuInfoList[1].index = gpu_info_index::GPU_SMC_MODE;
        p.gpuInfoList[2].index = 0x2C;
        let cmd = NV2080_CTRL_CMD_GPU_GET_INFO_V2;
        assert_eq!(unmodelled_info_index(cmd, p.as_bytes()), None);
        p.gpuInfoListSize = 3;
        assert_eq!(unmodelled_info_index(cmd, p.as_bytes()), Some(0x2C));

        let mut f = Nv2080CtrlFbGetInfoV2Params {
            fbInfoListSize: 1,
            ..Default::default()
        };
        f.fbInfoList[0].index = fb_index::HEAP_FREE;
        f.fbInfoList[1].index = 0x0B;
        let cmd = NV2080_CTRL_CMD_FB_GET_INFO_V2;
        assert_eq!(unmodelled_info_index(cmd, f.as_bytes()), None);
        f.fbInfoListSize = 2;
        assert_eq!(unmodelled_info_index(cmd, f.as_bytes()), Some(0x0B));
        assert_eq!(
            unmodelled_info_index(NV2080_CTRL_CMD_GPU_GET_NAME_STRING, f.as_bytes()),
            None
        );
    }

    #[test]
    fn uuid_prints_like_rm() {
        let u = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        assert_eq!(uuid_string(&u), "GPU-12345678-9abc-def0-0102-030405060708");
    }
}
