//! Control command ids (`ctrl/ctrlXXXX*.h`) and the param structs of the controls the core
//! validates or answers. A command id is `class << 16 | category << 8 | index`.

use super::nvos::abi_struct;
use super::Handle;
use crate::assert_layout;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `RM_GSS_LEGACY_MASK`: bit 15 of a command id marks a legacy (GSS) command.
pub const RM_GSS_LEGACY_MASK: u32 = 0x8000;

/// The class part (bits 31:16) of a command id.
pub const fn cmd_class(cmd: u32) -> u32 {
    cmd >> 16
}

macro_rules! commands {
    ($($name:ident = $v:expr;)*) => {
        $(#[doc = concat!("`", stringify!($name), "`")] pub const $name: u32 = $v;)*
    };
}

commands! {
    NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION = 0x0000_0101;
    NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS = 0x0000_0201;
    NV0000_CTRL_CMD_GPU_GET_ID_INFO = 0x0000_0202;
    NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2 = 0x0000_0205;
    NV0000_CTRL_CMD_GPU_GET_PROBED_IDS = 0x0000_0214;
    NV0000_CTRL_CMD_GPU_GET_PCI_INFO = 0x0000_021B;
    NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS = 0x0000_0288;
    NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO = 0x0000_0A04;
    NV0000_CTRL_CMD_GPU_ATTACH_IDS = 0x0000_0215;
    NV0000_CTRL_CMD_GPU_DETACH_IDS = 0x0000_0216;
    NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE = 0x0000_0D01;
    NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO = 0x0000_0D02;
    NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES = 0x0080_0280;
    NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2 = 0x0080_0292;
    NV0080_CTRL_CMD_HOST_GET_CAPS_V2 = 0x0080_1402;
    NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST = 0x0080_170D;
    NV2080_CTRL_CMD_GPU_GET_INFO_V2 = 0x2080_0102;
    NV2080_CTRL_CMD_GPU_GET_NAME_STRING = 0x2080_0110;
    NV2080_CTRL_CMD_GPU_GET_SHORT_NAME_STRING = 0x2080_0111;
    NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES = 0x2080_0131;
    NV2080_CTRL_CMD_GPU_GET_GID_INFO = 0x2080_014A;
    NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG = 0x2080_0195;
    NV2080_CTRL_CMD_GR_GET_INFO = 0x2080_1201;
    NV2080_CTRL_CMD_GR_GET_CAPS_V2 = 0x2080_1227;
    NV2080_CTRL_CMD_GR_GET_GPC_MASK = 0x2080_122A;
    NV2080_CTRL_CMD_GR_GET_TPC_MASK = 0x2080_122B;
    NV2080_CTRL_CMD_GPU_GET_ENGINES_V2 = 0x2080_0170;
    NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS = 0x2080_110B;
    NV2080_CTRL_CMD_FB_GET_INFO_V2 = 0x2080_1303;
    NV2080_CTRL_CMD_MC_GET_ARCH_INFO = 0x2080_1701;
    NV2080_CTRL_CMD_BUS_GET_PCI_INFO = 0x2080_1801;
    NV906F_CTRL_GET_CLASS_ENGINEID = 0x906F_0101;
    NVA06C_CTRL_CMD_GPFIFO_SCHEDULE = 0xA06C_0101;
    NVA06C_CTRL_CMD_BIND = 0xA06C_0102;
    NVA06C_CTRL_CMD_SET_TIMESLICE = 0xA06C_0103;
    NVA06C_CTRL_CMD_GET_TIMESLICE = 0xA06C_0104;
    NVA06C_CTRL_CMD_PREEMPT = 0xA06C_0105;
    NVA06C_CTRL_CMD_GET_INFO = 0xA06C_0106;
    NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL = 0xA06C_0107;
    NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL = 0xA06C_0108;
    NVA06C_CTRL_CMD_MAKE_REALTIME = 0xA06C_0110;
    NVA06C_CTRL_CMD_INTERNAL_GPFIFO_SCHEDULE = 0xA06C_0201;
    NVA06C_CTRL_CMD_INTERNAL_SET_TIMESLICE = 0xA06C_0202;
    NVA06F_CTRL_CMD_GPFIFO_SCHEDULE = 0xA06F_0103;
    NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN = 0xC36F_0108;
}

/// `NV0000_CTRL_GPU_MAX_ATTACHED_GPUS`.
pub const NV0000_CTRL_GPU_MAX_ATTACHED_GPUS: usize = 32;
/// `NV0000_CTRL_GPU_INVALID_ID`: terminates GPU id lists.
pub const NV0000_CTRL_GPU_INVALID_ID: u32 = 0xFFFF_FFFF;

abi_struct! {
    /// `NV0000_CTRL_SYSTEM_GET_BUILD_VERSION_PARAMS`: three guest string buffers (PTR).
    pub struct Nv0000CtrlSystemGetBuildVersionParams {
        /// Size of each of the three buffers.
        pub sizeOfStrings: u32,
        /// Padding.
        pub _pad: u32,
        /// Driver version buffer (PTR).
        pub pDriverVersionBuffer: u64,
        /// Version buffer (PTR).
        pub pVersionBuffer: u64,
        /// Title buffer (PTR).
        pub pTitleBuffer: u64,
        /// Changelist number.
        pub changelistNumber: u32,
        /// Official changelist number.
        pub officialChangelistNumber: u32,
    }
}
assert_layout!(Nv0000CtrlSystemGetBuildVersionParams, 40, pDriverVersionBuffer @ 8, pVersionBuffer @ 16,
    pTitleBuffer @ 24, changelistNumber @ 32);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_ATTACHED_IDS_PARAMS`.
    pub struct Nv0000CtrlGpuGetAttachedIdsParams {
        /// GPU ids, terminated by `NV0000_CTRL_GPU_INVALID_ID`.
        pub gpuIds: [u32; 32],
    }
}
assert_layout!(Nv0000CtrlGpuGetAttachedIdsParams, 128);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_ID_INFO_PARAMS` (deprecated form with a name pointer).
    pub struct Nv0000CtrlGpuGetIdInfoParams {
        /// GPU id, in.
        pub gpuId: u32,
        /// Flags.
        pub gpuFlags: u32,
        /// Device instance.
        pub deviceInstance: u32,
        /// Subdevice instance.
        pub subDeviceInstance: u32,
        /// Name buffer (PTR).
        pub szName: u64,
        /// SLI status.
        pub sliStatus: u32,
        /// Board id.
        pub boardId: u32,
        /// GPU instance.
        pub gpuInstance: u32,
        /// NUMA node.
        pub numaId: i32,
    }
}
assert_layout!(Nv0000CtrlGpuGetIdInfoParams, 40, szName @ 16, sliStatus @ 24, boardId @ 28, gpuInstance @ 32, numaId @ 36);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_ID_INFO_V2_PARAMS`.
    pub struct Nv0000CtrlGpuGetIdInfoV2Params {
        /// GPU id, in.
        pub gpuId: u32,
        /// Flags.
        pub gpuFlags: u32,
        /// Device instance.
        pub deviceInstance: u32,
        /// Subdevice instance.
        pub subDeviceInstance: u32,
        /// SLI status.
        pub sliStatus: u32,
        /// Board id.
        pub boardId: u32,
        /// GPU instance.
        pub gpuInstance: u32,
        /// NUMA node.
        pub numaId: i32,
    }
}
assert_layout!(Nv0000CtrlGpuGetIdInfoV2Params, 32, sliStatus @ 16, numaId @ 28);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_PROBED_IDS_PARAMS`.
    pub struct Nv0000CtrlGpuGetProbedIdsParams {
        /// Probed GPU ids, terminated by `NV0000_CTRL_GPU_INVALID_ID`.
        pub gpuIds: [u32; 32],
        /// Excluded GPU ids, terminated the same way.
        pub excludedGpuIds: [u32; 32],
        /// Per-GPU flags.
        pub gpuFlags: [u32; 32],
    }
}
assert_layout!(Nv0000CtrlGpuGetProbedIdsParams, 384, excludedGpuIds @ 128, gpuFlags @ 256);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_PCI_INFO_PARAMS`.
    pub struct Nv0000CtrlGpuGetPciInfoParams {
        /// GPU id, in.
        pub gpuId: u32,
        /// PCI domain.
        pub domain: u32,
        /// Bus.
        pub bus: u16,
        /// Slot.
        pub slot: u16,
    }
}
assert_layout!(Nv0000CtrlGpuGetPciInfoParams, 12, bus @ 8, slot @ 10);

/// `NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS`.
pub const NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS: u32 = 0x0000_FFFF;
/// `NV0000_CTRL_GPU_DETACH_ALL_ATTACHED_IDS`: in a detach list, every attached GPU (nvidia-smi
/// sends it).
pub const NV0000_CTRL_GPU_DETACH_ALL_ATTACHED_IDS: u32 = 0x0000_FFFF;

abi_struct! {
    /// `NV0000_CTRL_GPU_ATTACH_IDS_PARAMS`.
    pub struct Nv0000CtrlGpuAttachIdsParams {
        /// GPU ids to attach (`NV0000_CTRL_GPU_ATTACH_ALL_PROBED_IDS` = 0x0000ffff attaches all).
        pub gpuIds: [u32; 32],
        /// Out: the id that failed.
        pub failedId: u32,
    }
}
assert_layout!(Nv0000CtrlGpuAttachIdsParams, 132, failedId @ 128);

abi_struct! {
    /// `NV0000_CTRL_GPU_DETACH_IDS_PARAMS`.
    pub struct Nv0000CtrlGpuDetachIdsParams {
        /// GPU ids to detach.
        pub gpuIds: [u32; 32],
    }
}
assert_layout!(Nv0000CtrlGpuDetachIdsParams, 128);

abi_struct! {
    /// `NV0000_CTRL_CLIENT_GET_ADDR_SPACE_TYPE_PARAMS`.
    pub struct Nv0000CtrlClientGetAddrSpaceTypeParams {
        /// Object (H).
        pub hObject: Handle,
        /// Mapping flags.
        pub mapFlags: u32,
        /// `NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_*` out.
        pub addrSpaceType: u32,
    }
}
assert_layout!(Nv0000CtrlClientGetAddrSpaceTypeParams, 12);

abi_struct! {
    /// `NV0000_CTRL_CLIENT_GET_HANDLE_INFO_PARAMS`: what one object of the calling client is.
    pub struct Nv0000CtrlClientGetHandleInfoParams {
        /// The object looked up (H).
        pub hObject: Handle,
        /// `NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_*`.
        pub index: u32,
        /// Out: the parent handle (`_PARENT`) or the class id (`_CLASSID`).
        pub data: u64,
    }
}
assert_layout!(Nv0000CtrlClientGetHandleInfoParams, 16, index @ 4, data @ 8);
/// `NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_PARENT`.
pub const NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_PARENT: u32 = 1;
/// `NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_CLASSID`.
pub const NV0000_CTRL_CMD_CLIENT_GET_HANDLE_INFO_INDEX_CLASSID: u32 = 2;

/// Address space type: invalid.
pub const NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_INVALID: u32 = 0;
/// Address space type: system memory.
pub const NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_SYSMEM: u32 = 1;
/// Address space type: video memory.
pub const NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_VIDMEM: u32 = 2;
/// Address space type: register aperture.
pub const NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_REGMEM: u32 = 3;

abi_struct! {
    /// `NV0080_CTRL_GPU_GET_NUM_SUBDEVICES_PARAMS`.
    pub struct Nv0080CtrlGpuGetNumSubdevicesParams {
        /// Number of subdevices, out.
        pub numSubDevices: u32,
    }
}
assert_layout!(Nv0080CtrlGpuGetNumSubdevicesParams, 4);

/// `NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE`.
pub const NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE: usize = 200;

abi_struct! {
    /// `NV0080_CTRL_GPU_GET_CLASSLIST_V2_PARAMS`.
    pub struct Nv0080CtrlGpuGetClasslistV2Params {
        /// Number of classes, out.
        pub numClasses: u32,
        /// Class ids, out.
        pub classList: [u32; NV0080_CTRL_GPU_CLASSLIST_MAX_SIZE],
    }
}
assert_layout!(Nv0080CtrlGpuGetClasslistV2Params, 804, classList @ 4);

abi_struct! {
    /// `NVXXXX_CTRL_XXX_INFO`: one `{index, data}` pair of an info list.
    pub struct NvCtrlInfo {
        /// Info index, in.
        pub index: u32,
        /// Value, out.
        pub data: u32,
    }
}
assert_layout!(NvCtrlInfo, 8);

/// `NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE`.
pub const NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE: usize = 0x46;

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_INFO_V2_PARAMS`.
    pub struct Nv2080CtrlGpuGetInfoV2Params {
        /// Entries used.
        pub gpuInfoListSize: u32,
        /// Entries.
        pub gpuInfoList: [NvCtrlInfo; NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE],
    }
}
assert_layout!(Nv2080CtrlGpuGetInfoV2Params, 564, gpuInfoList @ 4);

/// `NV2080_CTRL_GPU_MAX_NAME_STRING_LENGTH`.
pub const NV2080_GPU_MAX_NAME_STRING_LENGTH: usize = 64;
/// `NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_ASCII`.
pub const NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_ASCII: u32 = 0;
/// `NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_UNICODE`.
pub const NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_UNICODE: u32 = 1;

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_NAME_STRING_PARAMS` (580: ascii/unicode union, 132 bytes).
    pub struct Nv2080CtrlGpuGetNameStringParams {
        /// `NV2080_CTRL_GPU_GET_NAME_STRING_FLAGS_TYPE_*`.
        pub gpuNameStringFlags: u32,
        /// The union: `NvU8 ascii[64]` or `NvU16 unicode[64]`.
        pub gpuNameString: [u8; 2 * NV2080_GPU_MAX_NAME_STRING_LENGTH],
    }
}
assert_layout!(Nv2080CtrlGpuGetNameStringParams, 132, gpuNameString @ 4);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_SHORT_NAME_STRING_PARAMS`.
    pub struct Nv2080CtrlGpuGetShortNameStringParams {
        /// ASCII short name.
        pub gpuShortNameString: [u8; NV2080_GPU_MAX_NAME_STRING_LENGTH],
    }
}
assert_layout!(Nv2080CtrlGpuGetShortNameStringParams, 64);

/// `NV2080_GPU_MAX_GID_LENGTH`.
pub const NV2080_GPU_MAX_GID_LENGTH: usize = 0x100;
/// `NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY` (bit 1): 16 raw UUID bytes instead of ASCII.
pub const NV2080_GPU_CMD_GPU_GET_GID_FLAGS_FORMAT_BINARY: u32 = 1 << 1;

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_GID_INFO_PARAMS` (the GPU UUID).
    pub struct Nv2080CtrlGpuGetGidInfoParams {
        /// Reserved, must be 0.
        pub index: u32,
        /// `NV2080_GPU_CMD_GPU_GET_GID_FLAGS_*`.
        pub flags: u32,
        /// Bytes written, out.
        pub length: u32,
        /// The GID, out.
        pub data: [u8; NV2080_GPU_MAX_GID_LENGTH],
    }
}
assert_layout!(Nv2080CtrlGpuGetGidInfoParams, 268, length @ 8, data @ 12);

/// `NV2080_GPU_MAX_ENGINES_LIST_SIZE`.
pub const NV2080_GPU_MAX_ENGINES_LIST_SIZE: usize = 0x54;

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_ENGINES_V2_PARAMS`.
    pub struct Nv2080CtrlGpuGetEnginesV2Params {
        /// Entries used.
        pub engineCount: u32,
        /// `NV2080_ENGINE_TYPE_*` values.
        pub engineList: [u32; NV2080_GPU_MAX_ENGINES_LIST_SIZE],
    }
}
assert_layout!(Nv2080CtrlGpuGetEnginesV2Params, 340, engineList @ 4);

/// `NV2080_CTRL_FB_INFO_MAX_LIST_SIZE`.
pub const NV2080_CTRL_FB_INFO_MAX_LIST_SIZE: usize = 0x80;

abi_struct! {
    /// `NV2080_CTRL_FB_GET_INFO_V2_PARAMS`.
    pub struct Nv2080CtrlFbGetInfoV2Params {
        /// Entries used.
        pub fbInfoListSize: u32,
        /// Entries.
        pub fbInfoList: [NvCtrlInfo; NV2080_CTRL_FB_INFO_MAX_LIST_SIZE],
    }
}
assert_layout!(Nv2080CtrlFbGetInfoV2Params, 1028, fbInfoList @ 4);

abi_struct! {
    /// `NV2080_CTRL_MC_GET_ARCH_INFO_PARAMS`.
    pub struct Nv2080CtrlMcGetArchInfoParams {
        /// `NV2080_CTRL_MC_ARCH_INFO_ARCHITECTURE_*` (GH100 = 0x180).
        pub architecture: u32,
        /// Implementation within the architecture.
        pub implementation: u32,
        /// Revision.
        pub revision: u32,
        /// `NvU8 subRevision`.
        pub subRevision: u8,
        /// Padding.
        pub _pad: [u8; 3],
    }
}
assert_layout!(Nv2080CtrlMcGetArchInfoParams, 16, subRevision @ 12);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_PCI_INFO_PARAMS`.
    pub struct Nv2080CtrlBusGetPciInfoParams {
        /// Device id << 16 | vendor id.
        pub pciDeviceId: u32,
        /// Subsystem id << 16 | subsystem vendor id.
        pub pciSubSystemId: u32,
        /// Revision id.
        pub pciRevisionId: u32,
        /// Extended device id.
        pub pciExtDeviceId: u32,
    }
}
assert_layout!(Nv2080CtrlBusGetPciInfoParams, 16);

/// `NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES`.
pub const NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES: usize = 64;

abi_struct! {
    /// `NV2080_CTRL_FIFO_DISABLE_CHANNELS_PARAMS`: carries *client* and channel handle lists.
    pub struct Nv2080CtrlFifoDisableChannelsParams {
        /// `NvBool`: disable (1) or enable (0).
        pub bDisable: u8,
        /// Padding.
        pub _pad0: [u8; 3],
        /// Entries used in both lists.
        pub numChannels: u32,
        /// `NvBool`: only stop scheduling.
        pub bOnlyDisableScheduling: u8,
        /// `NvBool`: rewind GP_PUT.
        pub bRewindGpPut: u8,
        /// Padding.
        pub _pad1: [u8; 6],
        /// Must be NULL from user space (PTR).
        pub pRunlistPreemptEvent: u64,
        /// Client handles (H, clients).
        pub hClientList: [Handle; NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES],
        /// Channel handles (H).
        pub hChannelList: [Handle; NV2080_CTRL_FIFO_DISABLE_CHANNELS_MAX_ENTRIES],
    }
}
assert_layout!(Nv2080CtrlFifoDisableChannelsParams, 536, numChannels @ 4, bOnlyDisableScheduling @ 8,
    bRewindGpPut @ 9, pRunlistPreemptEvent @ 16, hClientList @ 24, hChannelList @ 280);

abi_struct! {
    /// `NV906F_CTRL_GET_CLASS_ENGINEID_PARAMS`.
    pub struct Nv906fCtrlGetClassEngineidParams {
        /// Engine object on the channel (H).
        pub hObject: Handle,
        /// Class engine id, out.
        pub classEngineID: u32,
        /// Class id, out.
        pub classID: u32,
        /// Engine id, out.
        pub engineID: u32,
    }
}
assert_layout!(Nv906fCtrlGetClassEngineidParams, 16);

abi_struct! {
    /// `NVA06C_CTRL_GPFIFO_SCHEDULE_PARAMS` (also `NVA06F_CTRL_GPFIFO_SCHEDULE_PARAMS`).
    pub struct NvA06cCtrlGpfifoScheduleParams {
        /// `NvBool`: enable scheduling.
        pub bEnable: u8,
        /// `NvBool`: skip the runlist submit.
        pub bSkipSubmit: u8,
        /// `NvBool`: skip enabling channels.
        pub bSkipEnable: u8,
    }
}
assert_layout!(NvA06cCtrlGpfifoScheduleParams, 3);

abi_struct! {
    /// `NVA06C_CTRL_BIND_PARAMS`.
    pub struct NvA06cCtrlBindParams {
        /// `NV2080_ENGINE_TYPE_*`.
        pub engineType: u32,
    }
}
assert_layout!(NvA06cCtrlBindParams, 4);

abi_struct! {
    /// `NVA06C_CTRL_TIMESLICE_PARAMS` (SET/GET_TIMESLICE).
    pub struct NvA06cCtrlTimesliceParams {
        /// Timeslice in µs.
        pub timesliceUs: u64,
    }
}
assert_layout!(NvA06cCtrlTimesliceParams, 8);

/// `NVA06C_CTRL_CMD_PREEMPT_MAX_MANUAL_TIMEOUT_US`.
pub const NVA06C_PREEMPT_MAX_MANUAL_TIMEOUT_US: u32 = 1_000_000;

abi_struct! {
    /// `NVA06C_CTRL_PREEMPT_PARAMS`.
    pub struct NvA06cCtrlPreemptParams {
        /// `NvBool`: wait for completion.
        pub bWait: u8,
        /// `NvBool`: use `timeoutUs`.
        pub bManualTimeout: u8,
        /// Padding.
        pub _pad: [u8; 2],
        /// Timeout (at most 1 s).
        pub timeoutUs: u32,
    }
}
assert_layout!(NvA06cCtrlPreemptParams, 8, timeoutUs @ 4);

abi_struct! {
    /// `NVA06C_CTRL_GET_INFO_PARAMS`.
    pub struct NvA06cCtrlGetInfoParams {
        /// TSG id, out.
        pub tsgID: u32,
    }
}
assert_layout!(NvA06cCtrlGetInfoParams, 4);

/// `NVA06C_CTRL_INTERLEAVE_LEVEL_LOW`.
pub const NVA06C_CTRL_INTERLEAVE_LEVEL_LOW: u32 = 0;
/// `NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM` (default of new TSGs).
pub const NVA06C_CTRL_INTERLEAVE_LEVEL_MEDIUM: u32 = 1;
/// `NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH`.
pub const NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH: u32 = 2;

abi_struct! {
    /// `NVA06C_CTRL_INTERLEAVE_LEVEL_PARAMS`.
    pub struct NvA06cCtrlInterleaveLevelParams {
        /// `NVA06C_CTRL_INTERLEAVE_LEVEL_*`.
        pub tsgInterleaveLevel: u32,
    }
}
assert_layout!(NvA06cCtrlInterleaveLevelParams, 4);

abi_struct! {
    /// `NVA06C_CTRL_MAKE_REALTIME_PARAMS`.
    pub struct NvA06cCtrlMakeRealtimeParams {
        /// `NvBool`.
        pub bRealtime: u8,
    }
}
assert_layout!(NvA06cCtrlMakeRealtimeParams, 1);

abi_struct! {
    /// `NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN_PARAMS`.
    pub struct NvC36fCtrlGpfifoGetWorkSubmitTokenParams {
        /// `runlist << 16 | chid`, out.
        pub workSubmitToken: u32,
    }
}
assert_layout!(NvC36fCtrlGpfifoGetWorkSubmitTokenParams, 4);

/// `NV0000_CTRL_GPU_MAX_ACTIVE_DEVICES`.
pub const NV0000_CTRL_GPU_MAX_ACTIVE_DEVICES: usize = 256;

abi_struct! {
    /// `NV0000_CTRL_GPU_ACTIVE_DEVICE`: a GPU, or one MIG compute instance of it.
    pub struct Nv0000CtrlGpuActiveDevice {
        /// GPU id.
        pub gpuId: u32,
        /// MIG GPU instance (`0xFFFFFFFF` when MIG is off).
        pub gpuInstanceId: u32,
        /// MIG compute instance (`0xFFFFFFFF` when MIG is off).
        pub computeInstanceId: u32,
    }
}
assert_layout!(Nv0000CtrlGpuActiveDevice, 12, gpuInstanceId @ 4, computeInstanceId @ 8);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_ACTIVE_DEVICE_IDS_PARAMS`.
    pub struct Nv0000CtrlGpuGetActiveDeviceIdsParams {
        /// Entries used, out.
        pub numDevices: u32,
        /// Devices, out.
        pub devices: [Nv0000CtrlGpuActiveDevice; NV0000_CTRL_GPU_MAX_ACTIVE_DEVICES],
    }
}
assert_layout!(Nv0000CtrlGpuGetActiveDeviceIdsParams, 3076, devices @ 4);

/// `NV0000_CTRL_SYNC_GPU_BOOST_MAX_GROUPS`.
pub const NV0000_SYNC_GPU_BOOST_MAX_GROUPS: usize = 16;
/// `sizeof(NV0000_SYNC_GPU_BOOST_GROUP_CONFIG)` in 580.
pub const NV0000_SYNC_GPU_BOOST_GROUP_CONFIG_SIZE: usize = 140;

abi_struct! {
    /// `NV0000_SYNC_GPU_BOOST_GROUP_INFO_PARAMS`: the sync-boost groups of the system. The core
    /// only ever reports zero groups, so the group configs are kept opaque.
    pub struct Nv0000SyncGpuBoostGroupInfoParams {
        /// Groups, out.
        pub groupCount: u32,
        /// `NV0000_SYNC_GPU_BOOST_GROUP_CONFIG pBoostGroups[16]`, out (opaque).
        pub pBoostGroups: [u8; NV0000_SYNC_GPU_BOOST_MAX_GROUPS * NV0000_SYNC_GPU_BOOST_GROUP_CONFIG_SIZE],
    }
}
assert_layout!(Nv0000SyncGpuBoostGroupInfoParams, 2244, pBoostGroups @ 4);

/// `NV0080_CTRL_HOST_CAPS_TBL_SIZE`.
pub const NV0080_CTRL_HOST_CAPS_TBL_SIZE: usize = 3;

abi_struct! {
    /// `NV0080_CTRL_HOST_GET_CAPS_V2_PARAMS`: a bit table of host-interface (FIFO) caps.
    pub struct Nv0080CtrlHostGetCapsV2Params {
        /// Caps bits, out.
        pub capsTbl: [u8; NV0080_CTRL_HOST_CAPS_TBL_SIZE],
    }
}
assert_layout!(Nv0080CtrlHostGetCapsV2Params, 3);

/// `NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL`: the chid of a handle that is no channel.
pub const NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL: u32 = 0xFFFF_FFFF;

abi_struct! {
    /// `NV0080_CTRL_FIFO_GET_CHANNELLIST_PARAMS`: channel handles in, channel ids out, both in
    /// guest arrays of `numChannels` `NvU32`s.
    pub struct Nv0080CtrlFifoGetChannellistParams {
        /// Entries in both lists.
        pub numChannels: u32,
        /// Padding.
        pub _pad: u32,
        /// Channel handles, in (PTR).
        pub pChannelHandleList: u64,
        /// Channel ids, out (PTR).
        pub pChannelList: u64,
    }
}
assert_layout!(Nv0080CtrlFifoGetChannellistParams, 24, pChannelHandleList @ 8, pChannelList @ 16);

/// `NV2080_CTRL_GPU_COMPUTE_MODE_RULES_NONE`: no restriction on compute contexts.
pub const NV2080_CTRL_GPU_COMPUTE_MODE_RULES_NONE: u32 = 0;

abi_struct! {
    /// `NV2080_CTRL_GPU_QUERY_COMPUTE_MODE_RULES_PARAMS`.
    pub struct Nv2080CtrlGpuQueryComputeModeRulesParams {
        /// `NV2080_CTRL_GPU_COMPUTE_MODE_RULES_*`, out.
        pub rules: u32,
    }
}
assert_layout!(Nv2080CtrlGpuQueryComputeModeRulesParams, 4);

/// `NV2080_CTRL_GPU_COMPUTE_POLICY_MAX`.
pub const NV2080_CTRL_GPU_COMPUTE_POLICY_MAX: usize = 32;
/// `NV2080_CTRL_GPU_COMPUTE_POLICY_TIMESLICE`: the compute timeslice policy.
pub const NV2080_CTRL_GPU_COMPUTE_POLICY_TIMESLICE: u32 = 0;
/// `NV2080_CTRL_CMD_GPU_COMPUTE_TIMESLICE_DEFAULT`: the driver's default timeslice.
pub const NV2080_CTRL_CMD_GPU_COMPUTE_TIMESLICE_DEFAULT: u32 = 0;

abi_struct! {
    /// `NV2080_CTRL_GPU_COMPUTE_POLICY_CONFIG`: one policy and its value.
    pub struct Nv2080CtrlGpuComputePolicyConfig {
        /// `NV2080_CTRL_GPU_COMPUTE_POLICY_*`.
        pub r#type: u32,
        /// The value (`data.timeslice` for the timeslice policy).
        pub data: u32,
    }
}
assert_layout!(Nv2080CtrlGpuComputePolicyConfig, 8);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_COMPUTE_POLICY_CONFIG_PARAMS`: every compute policy and its value.
    pub struct Nv2080CtrlGpuGetComputePolicyConfigParams {
        /// Entries used, out.
        pub numConfigs: u32,
        /// Policies, out.
        pub configList: [Nv2080CtrlGpuComputePolicyConfig; NV2080_CTRL_GPU_COMPUTE_POLICY_MAX],
    }
}
assert_layout!(Nv2080CtrlGpuGetComputePolicyConfigParams, 260, configList @ 4);

// The params of the controls the core rejects (the control table takes their sizes from them): real
// fields where they are few and flat, an opaque array of the C size where they nest.

/// The params of a control absent from the open 580 headers (private, legacy-GSS and BINAPI
/// controls): `N` bytes of unknown layout, `N` as the real driver's traces show it.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PrivateParams<const N: usize> {
    /// The `N` bytes, opaque.
    pub bytes: [u8; N],
}

abi_struct! {
    /// `RS_SHARE_POLICY`: with whom an object is shared, and which rights.
    pub struct RsSharePolicy {
        /// Share target (a client handle, a PID, ...).
        pub target: u32,
        /// `RS_ACCESS_MASK` (one limb): the rights shared.
        pub accessMask: u32,
        /// `RS_SHARE_TYPE_*`.
        pub r#type: u16,
        /// `RS_SHARE_ACTION_*`.
        pub action: u8,
        /// Padding.
        pub _pad: u8,
    }
}
assert_layout!(RsSharePolicy, 12, accessMask @ 4, r#type @ 8, action @ 10);

abi_struct! {
    /// `NV0000_CTRL_CLIENT_SET_INHERITED_SHARE_POLICY_PARAMS`.
    pub struct Nv0000CtrlClientSetInheritedSharePolicyParams {
        /// The policy to apply, in.
        pub sharePolicy: RsSharePolicy,
    }
}
assert_layout!(Nv0000CtrlClientSetInheritedSharePolicyParams, 12);

abi_struct! {
    /// `NV0080_CTRL_GR_ROUTE_INFO` (also `NV2080_CTRL_GR_ROUTE_INFO`): which GR engine a GR
    /// control addresses.
    pub struct Nv0080CtrlGrRouteInfo {
        /// `NV2080_CTRL_GR_ROUTE_INFO_FLAGS_*`.
        pub flags: u32,
        /// Padding.
        pub _pad: u32,
        /// Route data (a channel handle or an engine id).
        pub route: u64,
    }
}
assert_layout!(Nv0080CtrlGrRouteInfo, 16, route @ 8);

abi_struct! {
    /// `NV0000_CTRL_SYSTEM_GET_P2P_CAPS_MATRIX_PARAMS`: peer capabilities between two GPU groups
    /// (opaque: nested capability rows).
    pub struct Nv0000CtrlSystemGetP2pCapsMatrixParams {
        /// The 1352 bytes, opaque.
        pub bytes: [u8; 1352],
    }
}
assert_layout!(Nv0000CtrlSystemGetP2pCapsMatrixParams, 1352);

abi_struct! {
    /// `NV0000_CTRL_SYSTEM_GET_FEATURES_PARAMS`.
    pub struct Nv0000CtrlSystemGetFeaturesParams {
        /// Feature bits, out.
        pub featuresMask: u32,
    }
}
assert_layout!(Nv0000CtrlSystemGetFeaturesParams, 4);

abi_struct! {
    /// `NV0000_CTRL_GPU_QUERY_DRAIN_STATE_PARAMS`.
    pub struct Nv0000CtrlGpuQueryDrainStateParams {
        /// GPU id.
        pub gpuId: u32,
        /// Drain state, out.
        pub drainState: u32,
        /// Flags.
        pub flags: u32,
    }
}
assert_layout!(Nv0000CtrlGpuQueryDrainStateParams, 12, drainState @ 4, flags @ 8);

abi_struct! {
    /// `NV0000_CTRL_GPU_GET_MEMOP_ENABLE_PARAMS`.
    pub struct Nv0000CtrlGpuGetMemopEnableParams {
        /// Memory-operation enable bits, out.
        pub enableMask: u32,
    }
}
assert_layout!(Nv0000CtrlGpuGetMemopEnableParams, 4);

abi_struct! {
    /// `NV0000_CTRL_GPU_ASYNC_ATTACH_ID_PARAMS`.
    pub struct Nv0000CtrlGpuAsyncAttachIdParams {
        /// GPU id.
        pub gpuId: u32,
    }
}
assert_layout!(Nv0000CtrlGpuAsyncAttachIdParams, 4);

abi_struct! {
    /// `NV0000_CTRL_GPUACCT_GET_ACCOUNTING_STATE_PARAMS`.
    pub struct Nv0000CtrlGpuacctGetAccountingStateParams {
        /// GPU id.
        pub gpuId: u32,
        /// Process id.
        pub pid: u32,
        /// State.
        pub state: u32,
    }
}
assert_layout!(Nv0000CtrlGpuacctGetAccountingStateParams, 12, pid @ 4, state @ 8);

abi_struct! {
    /// `NV0080_CTRL_GPU_QUERY_SW_STATE_PERSISTENCE_PARAMS`.
    pub struct Nv0080CtrlGpuQuerySwStatePersistenceParams {
        /// Software state persistence, out.
        pub swStatePersistence: u32,
    }
}
assert_layout!(Nv0080CtrlGpuQuerySwStatePersistenceParams, 4);

abi_struct! {
    /// `NV0080_CTRL_GPU_GET_VIRTUALIZATION_MODE_PARAMS`.
    pub struct Nv0080CtrlGpuGetVirtualizationModeParams {
        /// `NV0080_CTRL_GPU_VIRTUALIZATION_MODE_*`, out.
        pub virtualizationMode: u32,
        /// `NvBool`: a GRID driver build, out.
        pub isGridBuild: u8,
        /// Padding.
        pub _pad0: [u8; 3],
    }
}
assert_layout!(Nv0080CtrlGpuGetVirtualizationModeParams, 8, isGridBuild @ 4);

abi_struct! {
    /// `NV0080_CTRL_FB_GET_CAPS_V2_PARAMS`: a bit table of FB caps.
    pub struct Nv0080CtrlFbGetCapsV2Params {
        /// Caps bits, out.
        pub capsTbl: [u8; 3],
    }
}
assert_layout!(Nv0080CtrlFbGetCapsV2Params, 3);

abi_struct! {
    /// `NV0080_CTRL_PERF_CUDA_LIMIT_CONTROL_PARAMS` (`PERF_CUDA_LIMIT_SET_CONTROL`).
    pub struct Nv0080CtrlPerfCudaLimitControlParams {
        /// `NvBool`: limit CUDA clocks.
        pub bCudaLimit: u8,
    }
}
assert_layout!(Nv0080CtrlPerfCudaLimitControlParams, 1);

abi_struct! {
    /// `NV00DE_CTRL_REQUEST_DATA_POLL_PARAMS`.
    pub struct Nv00deCtrlRequestDataPollParams {
        /// Data to poll.
        pub polledDataMask: u64,
    }
}
assert_layout!(Nv00deCtrlRequestDataPollParams, 8);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_SIMULATION_INFO_PARAMS`.
    pub struct Nv2080CtrlGpuGetSimulationInfoParams {
        /// Type, out.
        pub r#type: u32,
    }
}
assert_layout!(Nv2080CtrlGpuGetSimulationInfoParams, 4);

abi_struct! {
    /// `NV2080_CTRL_GPU_QUERY_ECC_STATUS_PARAMS`: per-unit ECC counts (opaque: nested unit records).
    pub struct Nv2080CtrlGpuQueryEccStatusParams {
        /// The 1464 bytes, opaque.
        pub bytes: [u8; 1464],
    }
}
assert_layout!(Nv2080CtrlGpuQueryEccStatusParams, 1464);

abi_struct! {
    /// `NV2080_CTRL_GPU_QUERY_ECC_CONFIGURATION_PARAMS`.
    pub struct Nv2080CtrlGpuQueryEccConfigurationParams {
        /// Current ECC configuration, out.
        pub currentConfiguration: u32,
        /// Default ECC configuration, out.
        pub defaultConfiguration: u32,
    }
}
assert_layout!(Nv2080CtrlGpuQueryEccConfigurationParams, 8, defaultConfiguration @ 4);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_OEM_BOARD_INFO_PARAMS`.
    pub struct Nv2080CtrlGpuGetOemBoardInfoParams {
        /// Board build date, out.
        pub buildDate: u32,
        /// Marketing name, out.
        pub marketingName: [u8; 24],
        /// Serial number, out.
        pub serialNumber: [u8; 16],
        /// Memory manufacturer, out.
        pub memoryManufacturer: u8,
        /// Memory part id, out.
        pub memoryPartID: [u8; 20],
        /// Memory date code, out.
        pub memoryDateCode: [u8; 6],
        /// Product part number, out.
        pub productPartNumber: [u8; 20],
        /// Board revision, out.
        pub boardRevision: [u8; 3],
        /// Board type, out.
        pub boardType: u8,
        /// 699 part number, out.
        pub board699PartNumber: [u8; 20],
        /// 965 part number, out.
        pub board965PartNumber: [u8; 20],
        /// Padding.
        pub _pad0: [u8; 1],
    }
}
assert_layout!(Nv2080CtrlGpuGetOemBoardInfoParams, 136, marketingName @ 4, serialNumber @ 28,
    memoryManufacturer @ 44, memoryPartID @ 45, memoryDateCode @ 65, productPartNumber @ 71,
    boardRevision @ 91, boardType @ 94, board699PartNumber @ 95, board965PartNumber @ 115);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_INFOROM_OBJECT_VERSION_PARAMS`.
    pub struct Nv2080CtrlGpuGetInforomObjectVersionParams {
        /// InfoROM object type (3 chars), in.
        pub objectType: [u8; 3],
        /// Version, out.
        pub version: u8,
        /// Subversion, out.
        pub subversion: u8,
    }
}
assert_layout!(Nv2080CtrlGpuGetInforomObjectVersionParams, 5, version @ 3, subversion @ 4);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_INFOROM_IMAGE_VERSION_PARAMS`.
    pub struct Nv2080CtrlGpuGetInforomImageVersionParams {
        /// Version, out.
        pub version: [u8; 16],
    }
}
assert_layout!(Nv2080CtrlGpuGetInforomImageVersionParams, 16);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_NVENC_SW_SESSION_STATS_PARAMS`.
    pub struct Nv2080CtrlGpuGetNvencSwSessionStatsParams {
        /// Encoder sessions, out.
        pub encoderSessionCount: u32,
        /// Average encode FPS, out.
        pub averageEncodeFps: u32,
        /// Average encode latency, out.
        pub averageEncodeLatency: u32,
    }
}
assert_layout!(Nv2080CtrlGpuGetNvencSwSessionStatsParams, 12, averageEncodeFps @ 4,
    averageEncodeLatency @ 8);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_NVFBC_SW_SESSION_STATS_PARAMS`.
    pub struct Nv2080CtrlGpuGetNvfbcSwSessionStatsParams {
        /// Sessions, out.
        pub sessionCount: u32,
        /// Average FPS, out.
        pub averageFPS: u32,
        /// Average latency, out.
        pub averageLatency: u32,
    }
}
assert_layout!(Nv2080CtrlGpuGetNvfbcSwSessionStatsParams, 12, averageFPS @ 4, averageLatency @ 8);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_PIDS_PARAMS`.
    pub struct Nv2080CtrlGpuGetPidsParams {
        /// What `id` names.
        pub idType: u32,
        /// Id.
        pub id: u32,
        /// Entries used, out.
        pub pidTblCount: u32,
        /// Process ids, out.
        pub pidTbl: [u32; 950],
    }
}
assert_layout!(Nv2080CtrlGpuGetPidsParams, 3812, id @ 4, pidTblCount @ 8, pidTbl @ 12);

abi_struct! {
    /// `NV2080_CTRL_CMD_GET_GPU_FABRIC_PROBE_INFO_PARAMS`.
    pub struct Nv2080CtrlCmdGetGpuFabricProbeInfoParams {
        /// Probe state, out.
        pub state: u8,
        /// Padding.
        pub _pad0: [u8; 3],
        /// Probe status, out.
        pub status: u32,
        /// Cluster UUID, out.
        pub clusterUuid: [u8; 16],
        /// Fabric partition id, out.
        pub fabricPartitionId: u16,
        /// Padding.
        pub _pad1: [u8; 6],
        /// Fabric caps, out.
        pub fabricCaps: u64,
        /// Fabric clique id, out.
        pub fabricCliqueId: u32,
        /// Fabric health bits, out.
        pub fabricHealthMask: u32,
        /// Fabric health summary, out.
        pub fabricHealthSummary: u8,
        /// Padding.
        pub _pad2: [u8; 7],
    }
}
assert_layout!(Nv2080CtrlCmdGetGpuFabricProbeInfoParams, 56, status @ 4, clusterUuid @ 8,
    fabricPartitionId @ 24, fabricCaps @ 32, fabricCliqueId @ 40, fabricHealthMask @ 44,
    fabricHealthSummary @ 48);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_CHIP_DETAILS_PARAMS`.
    pub struct Nv2080CtrlGpuGetChipDetailsParams {
        /// PCI device id, out.
        pub pciDevId: u32,
        /// Chip SKU, out.
        pub chipSku: [u8; 4],
        /// Chip major revision, out.
        pub chipMajor: u32,
        /// Chip minor revision, out.
        pub chipMinor: u32,
    }
}
assert_layout!(Nv2080CtrlGpuGetChipDetailsParams, 16, chipSku @ 4, chipMajor @ 8, chipMinor @ 12);

abi_struct! {
    /// `NV2080_CTRL_GPU_GET_RECOVERY_ACTION_PARAMS`.
    pub struct Nv2080CtrlGpuGetRecoveryActionParams {
        /// `NV2080_CTRL_GPU_RECOVERY_ACTION`, out.
        pub action: u32,
    }
}
assert_layout!(Nv2080CtrlGpuGetRecoveryActionParams, 4);

abi_struct! {
    /// `NV2080_CTRL_TIMER_GET_GPU_CPU_TIME_CORRELATION_INFO_PARAMS` (opaque: nested samples).
    pub struct Nv2080CtrlTimerGetGpuCpuTimeCorrelationInfoParams {
        /// The 264 bytes, opaque.
        pub bytes: [u8; 264],
    }
}
assert_layout!(Nv2080CtrlTimerGetGpuCpuTimeCorrelationInfoParams, 264);

abi_struct! {
    /// `NV2080_CTRL_BIOS_GET_INFO_PARAMS`.
    pub struct Nv2080CtrlBiosGetInfoParams {
        /// Entries in the list.
        pub biosInfoListSize: u32,
        /// Padding.
        pub _pad0: [u8; 4],
        /// `{index, data}` list (PTR).
        pub biosInfoList: u64,
    }
}
assert_layout!(Nv2080CtrlBiosGetInfoParams, 16, biosInfoList @ 8);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_INFO_PARAMS`.
    pub struct Nv2080CtrlGrGetInfoParams {
        /// Entries in the list.
        pub grInfoListSize: u32,
        /// Padding.
        pub _pad0: [u8; 4],
        /// `{index, data}` list (PTR).
        pub grInfoList: u64,
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
    }
}
assert_layout!(Nv2080CtrlGrGetInfoParams, 32, grInfoList @ 8, grRouteInfo @ 16);

abi_struct! {
    /// `NV2080_CTRL_GR_SET_CTXSW_PREEMPTION_MODE_PARAMS`.
    pub struct Nv2080CtrlGrSetCtxswPreemptionModeParams {
        /// Flags.
        pub flags: u32,
        /// Channel (H).
        pub hChannel: Handle,
        /// Graphics preemption mode.
        pub gfxpPreemptMode: u32,
        /// Compute preemption mode.
        pub cilpPreemptMode: u32,
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
    }
}
assert_layout!(Nv2080CtrlGrSetCtxswPreemptionModeParams, 32, hChannel @ 4, gfxpPreemptMode @ 8,
    cilpPreemptMode @ 12, grRouteInfo @ 16);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_CTX_BUFFER_SIZE_PARAMS`.
    pub struct Nv2080CtrlGrGetCtxBufferSizeParams {
        /// Channel (H).
        pub hChannel: Handle,
        /// Padding.
        pub _pad0: [u8; 4],
        /// Context buffer size, out.
        pub totalBufferSize: u64,
    }
}
assert_layout!(Nv2080CtrlGrGetCtxBufferSizeParams, 16, totalBufferSize @ 8);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_GLOBAL_SM_ORDER_PARAMS` (opaque: nested per-SM records).
    pub struct Nv2080CtrlGrGetGlobalSmOrderParams {
        /// The 9240 bytes, opaque.
        pub bytes: [u8; 9240],
    }
}
assert_layout!(Nv2080CtrlGrGetGlobalSmOrderParams, 9240);

abi_struct! {
    /// `NV0080_CTRL_GR_GET_CAPS_V2_PARAMS` (also `NV2080_CTRL_GR_GET_CAPS_V2_PARAMS`).
    pub struct Nv0080CtrlGrGetCapsV2Params {
        /// Caps bits, out.
        pub capsTbl: [u8; 23],
        /// Padding.
        pub _pad0: [u8; 1],
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
        /// `NvBool`: the table is filled, out.
        pub bCapsPopulated: u8,
        /// Padding.
        pub _pad1: [u8; 7],
    }
}
assert_layout!(Nv0080CtrlGrGetCapsV2Params, 48, grRouteInfo @ 24, bCapsPopulated @ 40);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_GPC_MASK_PARAMS`.
    pub struct Nv2080CtrlGrGetGpcMaskParams {
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
        /// GPC mask, out.
        pub gpcMask: u32,
        /// Padding.
        pub _pad0: [u8; 4],
    }
}
assert_layout!(Nv2080CtrlGrGetGpcMaskParams, 24, gpcMask @ 16);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_TPC_MASK_PARAMS`.
    pub struct Nv2080CtrlGrGetTpcMaskParams {
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
        /// GPC, in.
        pub gpcId: u32,
        /// TPC mask, out.
        pub tpcMask: u32,
    }
}
assert_layout!(Nv2080CtrlGrGetTpcMaskParams, 24, gpcId @ 16, tpcMask @ 20);

abi_struct! {
    /// `NV2080_CTRL_GR_GET_SM_ISSUE_RATE_MODIFIER_PARAMS`.
    pub struct Nv2080CtrlGrGetSmIssueRateModifierParams {
        /// GR engine routing.
        pub grRouteInfo: Nv0080CtrlGrRouteInfo,
        /// IMLA0 issue-rate modifier, out.
        pub imla0: u8,
        /// FMLA16 issue-rate modifier, out.
        pub fmla16: u8,
        /// DP issue-rate modifier, out.
        pub dp: u8,
        /// FMLA32 issue-rate modifier, out.
        pub fmla32: u8,
        /// FFMA issue-rate modifier, out.
        pub ffma: u8,
        /// IMLA1 issue-rate modifier, out.
        pub imla1: u8,
        /// IMLA2 issue-rate modifier, out.
        pub imla2: u8,
        /// IMLA3 issue-rate modifier, out.
        pub imla3: u8,
        /// IMLA4 issue-rate modifier, out.
        pub imla4: u8,
        /// Padding.
        pub _pad0: [u8; 7],
    }
}
assert_layout!(Nv2080CtrlGrGetSmIssueRateModifierParams, 32, imla0 @ 16, fmla16 @ 17, dp @ 18,
    fmla32 @ 19, ffma @ 20, imla1 @ 21, imla2 @ 22, imla3 @ 23, imla4 @ 24);

abi_struct! {
    /// `NV2080_CTRL_FB_GET_OFFLINED_PAGES_PARAMS` (opaque: nested address records).
    pub struct Nv2080CtrlFbGetOfflinedPagesParams {
        /// The 2056 bytes, opaque.
        pub bytes: [u8; 2056],
    }
}
assert_layout!(Nv2080CtrlFbGetOfflinedPagesParams, 2056);

abi_struct! {
    /// `NV2080_CTRL_FB_DRAM_ENCRYPTION_INFOROM_SUPPORT_PARAMS`.
    pub struct Nv2080CtrlFbDramEncryptionInforomSupportParams {
        /// Supported, out.
        pub isSupported: u32,
    }
}
assert_layout!(Nv2080CtrlFbDramEncryptionInforomSupportParams, 4);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_INFO_PARAMS`.
    pub struct Nv2080CtrlBusGetInfoParams {
        /// Entries in the list.
        pub busInfoListSize: u32,
        /// Padding.
        pub _pad0: [u8; 4],
        /// `{index, data}` list (PTR).
        pub busInfoList: u64,
    }
}
assert_layout!(Nv2080CtrlBusGetInfoParams, 16, busInfoList @ 8);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_PCI_BAR_INFO_PARAMS` (opaque: nested BAR records).
    pub struct Nv2080CtrlBusGetPciBarInfoParams {
        /// The 200 bytes, opaque.
        pub bytes: [u8; 200],
    }
}
assert_layout!(Nv2080CtrlBusGetPciBarInfoParams, 200);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_PEX_COUNTERS_PARAMS`.
    pub struct Nv2080CtrlBusGetPexCountersParams {
        /// Counters wanted.
        pub pexCounterMask: u32,
        /// Correctable errors, out.
        pub pexTotalCorrectableErrors: u32,
        /// Correctable errors since the last query, out.
        pub pexCorrectableErrors: u16,
        /// Non-fatal errors, out.
        pub pexTotalNonFatalErrors: u8,
        /// Fatal errors, out.
        pub pexTotalFatalErrors: u8,
        /// Unsupported requests, out.
        pub pexTotalUnsupportedReqs: u8,
        /// Padding.
        pub _pad0: [u8; 1],
        /// Counters, out.
        pub pexCounters: [u16; 31],
    }
}
assert_layout!(Nv2080CtrlBusGetPexCountersParams, 76, pexTotalCorrectableErrors @ 4,
    pexCorrectableErrors @ 8, pexTotalNonFatalErrors @ 10, pexTotalFatalErrors @ 11,
    pexTotalUnsupportedReqs @ 12, pexCounters @ 14);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_PEX_UTIL_COUNTERS_PARAMS`.
    pub struct Nv2080CtrlBusGetPexUtilCountersParams {
        /// Counters wanted.
        pub pexCounterMask: u32,
        /// Counters, out.
        pub pexCounters: [u32; 7],
    }
}
assert_layout!(Nv2080CtrlBusGetPexUtilCountersParams, 32, pexCounters @ 4);

abi_struct! {
    /// `NV2080_CTRL_BUS_GET_INFO_V2_PARAMS`.
    pub struct Nv2080CtrlBusGetInfoV2Params {
        /// Entries in the list.
        pub busInfoListSize: u32,
        /// Entries.
        pub busInfoList: [NvCtrlInfo; 52],
    }
}
assert_layout!(Nv2080CtrlBusGetInfoV2Params, 420, busInfoList @ 4);

abi_struct! {
    /// `NV2080_CTRL_CMD_BUS_GET_PCIE_REQ_ATOMICS_CAPS_PARAMS`.
    pub struct Nv2080CtrlCmdBusGetPcieReqAtomicsCapsParams {
        /// Which caps.
        pub capType: u32,
        /// Domain/bus/device/function.
        pub dbdf: u32,
        /// Atomics caps, out.
        pub atomicsCaps: u32,
    }
}
assert_layout!(Nv2080CtrlCmdBusGetPcieReqAtomicsCapsParams, 12, dbdf @ 4, atomicsCaps @ 8);

abi_struct! {
    /// `NV2080_CTRL_CMD_BUS_GET_PCIE_SUPPORTED_GPU_ATOMICS_PARAMS` (opaque: nested per-op records).
    pub struct Nv2080CtrlCmdBusGetPcieSupportedGpuAtomicsParams {
        /// The 112 bytes, opaque.
        pub bytes: [u8; 112],
    }
}
assert_layout!(Nv2080CtrlCmdBusGetPcieSupportedGpuAtomicsParams, 112);

abi_struct! {
    /// `NV2080_CTRL_CMD_BUS_GET_C2C_INFO_PARAMS`.
    pub struct Nv2080CtrlCmdBusGetC2cInfoParams {
        /// `NvBool`: link up, out.
        pub bIsLinkUp: u8,
        /// `NvBool`: link in high speed, out.
        pub bLinkInHS: u8,
        /// Padding.
        pub _pad0: [u8; 2],
        /// Links up, out.
        pub nrLinks: u32,
        /// Links, out.
        pub maxNrLinks: u32,
        /// Link mask, out.
        pub linkMask: u32,
        /// Bandwidth per link (MB/s), out.
        pub perLinkBwMBps: u32,
        /// Lanes per link, out.
        pub perLinkLaneWidth: u32,
        /// Remote end type, out.
        pub remoteType: u32,
    }
}
assert_layout!(Nv2080CtrlCmdBusGetC2cInfoParams, 28, bLinkInHS @ 1, nrLinks @ 4, maxNrLinks @ 8,
    linkMask @ 12, perLinkBwMBps @ 16, perLinkLaneWidth @ 20, remoteType @ 24);

abi_struct! {
    /// `NV2080_CTRL_CMD_BUS_GET_PCIE_CPL_ATOMICS_CAPS_PARAMS`.
    pub struct Nv2080CtrlCmdBusGetPcieCplAtomicsCapsParams {
        /// Atomics caps, out.
        pub atomicsCaps: u32,
    }
}
assert_layout!(Nv2080CtrlCmdBusGetPcieCplAtomicsCapsParams, 4);

abi_struct! {
    /// `NV2080_CTRL_PERF_BOOST_PARAMS`.
    pub struct Nv2080CtrlPerfBoostParams {
        /// Flags.
        pub flags: u32,
        /// Duration.
        pub duration: u32,
    }
}
assert_layout!(Nv2080CtrlPerfBoostParams, 8, duration @ 4);

abi_struct! {
    /// `NV2080_CTRL_CE_GET_ALL_CAPS_PARAMS`.
    pub struct Nv2080CtrlCeGetAllCapsParams {
        /// Caps bits, out.
        pub capsTbl: [[u8; 2]; 64],
        /// Mask of the CEs present, out.
        pub present: u64,
    }
}
assert_layout!(Nv2080CtrlCeGetAllCapsParams, 136, present @ 128);

abi_struct! {
    /// `NV2080_CTRL_CMD_NVLINK_GET_NVLINK_STATUS_PARAMS` (opaque: nested per-link records).
    pub struct Nv2080CtrlCmdNvlinkGetNvlinkStatusParams {
        /// The 13344 bytes, opaque.
        pub bytes: [u8; 13344],
    }
}
assert_layout!(Nv2080CtrlCmdNvlinkGetNvlinkStatusParams, 13344);

abi_struct! {
    /// `NV2080_CTRL_NVLINK_GET_PLATFORM_INFO_PARAMS`.
    pub struct Nv2080CtrlNvlinkGetPlatformInfoParams {
        /// InfiniBand GUID, out.
        pub ibGuid: [u8; 16],
        /// Rack GUID, out.
        pub rackGuid: [u8; 16],
        /// Chassis slot, out.
        pub chassisPhysicalSlotNumber: u8,
        /// Compute slot, out.
        pub computeSlotIndex: u8,
        /// Node, out.
        pub nodeIndex: u8,
        /// Peer type, out.
        pub peerType: u8,
        /// Module id, out.
        pub moduleId: u8,
        /// NVLink signaling protocol, out.
        pub nvlinkSignalingProtocol: u8,
        /// Lanes per link, out.
        pub lanesPerLink: u8,
    }
}
assert_layout!(Nv2080CtrlNvlinkGetPlatformInfoParams, 39, rackGuid @ 16,
    chassisPhysicalSlotNumber @ 32, computeSlotIndex @ 33, nodeIndex @ 34, peerType @ 35,
    moduleId @ 36, nvlinkSignalingProtocol @ 37, lanesPerLink @ 38);

abi_struct! {
    /// `NV2080_CTRL_ECC_GET_REPAIR_STATUS_PARAMS`.
    pub struct Nv2080CtrlEccGetRepairStatusParams {
        /// `NvBool`: TPC repair pending, out.
        pub bTpcRepairPending: u8,
        /// `NvBool`: channel repair pending, out.
        pub bChannelRepairPending: u8,
    }
}
assert_layout!(Nv2080CtrlEccGetRepairStatusParams, 2, bChannelRepairPending @ 1);

abi_struct! {
    /// `NV2080_CTRL_GSP_GET_FEATURES_PARAMS`.
    pub struct Nv2080CtrlGspGetFeaturesParams {
        /// Feature bits, out.
        pub gspFeatures: u32,
        /// `NvBool`: GSP firmware is in use, out.
        pub bValid: u8,
        /// `NvBool`: GSP-RM by default on this GPU, out.
        pub bDefaultGspRmGpu: u8,
        /// Firmware version string, out.
        pub firmwareVersion: [u8; 64],
        /// Padding.
        pub _pad0: [u8; 2],
    }
}
assert_layout!(Nv2080CtrlGspGetFeaturesParams, 72, bValid @ 4, bDefaultGspRmGpu @ 5,
    firmwareVersion @ 6);

abi_struct! {
    /// `NV2080_CTRL_GRMGR_GET_GR_FS_INFO_PARAMS` (opaque: nested query unions).
    pub struct Nv2080CtrlGrmgrGetGrFsInfoParams {
        /// The 1928 bytes, opaque.
        pub bytes: [u8; 1928],
    }
}
assert_layout!(Nv2080CtrlGrmgrGetGrFsInfoParams, 1928);

abi_struct! {
    /// `NV208F_CTRL_GPU_VERIFY_INFOROM_PARAMS`.
    pub struct Nv208fCtrlGpuVerifyInforomParams {
        /// Result, out.
        pub result: u32,
        /// Checksum, out.
        pub checksum: u32,
    }
}
assert_layout!(Nv208fCtrlGpuVerifyInforomParams, 8, checksum @ 4);

abi_struct! {
    /// `NV503C_CTRL_REGISTER_VA_SPACE_PARAMS`.
    pub struct Nv503cCtrlRegisterVaSpaceParams {
        /// VA space (H).
        pub hVASpace: Handle,
        /// Padding.
        pub _pad0: [u8; 4],
        /// VA space token, out.
        pub vaSpaceToken: u64,
    }
}
assert_layout!(Nv503cCtrlRegisterVaSpaceParams, 16, vaSpaceToken @ 8);

abi_struct! {
    /// `NV503C_CTRL_REGISTER_VIDMEM_PARAMS`.
    pub struct Nv503cCtrlRegisterVidmemParams {
        /// Memory (H).
        pub hMemory: Handle,
        /// Padding.
        pub _pad0: [u8; 4],
        /// Address.
        pub address: u64,
        /// Size.
        pub size: u64,
        /// Offset.
        pub offset: u64,
    }
}
assert_layout!(Nv503cCtrlRegisterVidmemParams, 32, address @ 8, size @ 16, offset @ 24);

abi_struct! {
    /// `NV503C_CTRL_UNREGISTER_VIDMEM_PARAMS`.
    pub struct Nv503cCtrlUnregisterVidmemParams {
        /// Memory (H).
        pub hMemory: Handle,
    }
}
assert_layout!(Nv503cCtrlUnregisterVidmemParams, 4);

abi_struct! {
    /// `NV83DE_CTRL_DEBUG_SET_EXCEPTION_MASK_PARAMS`.
    pub struct Nv83deCtrlDebugSetExceptionMaskParams {
        /// Exception mask.
        pub exceptionMask: u32,
    }
}
assert_layout!(Nv83deCtrlDebugSetExceptionMaskParams, 4);

abi_struct! {
    /// `NV90E6_CTRL_MASTER_GET_VIRTUAL_FUNCTION_ERROR_CONT_INTR_MASK_PARAMS`.
    pub struct Nv90e6CtrlMasterGetVirtualFunctionErrorContIntrMaskParams {
        /// ECC interrupt mask, out.
        pub eccMask: u32,
        /// NVLink interrupt mask, out.
        pub nvlinkMask: u32,
    }
}
assert_layout!(Nv90e6CtrlMasterGetVirtualFunctionErrorContIntrMaskParams, 8, nvlinkMask @ 4);

abi_struct! {
    /// `NV90E7_CTRL_BBX_GET_LAST_FLUSH_TIME_PARAMS`.
    pub struct Nv90e7CtrlBbxGetLastFlushTimeParams {
        /// Last flush time, out.
        pub timestamp: u64,
        /// Flush duration (µs), out.
        pub durationUs: u32,
        /// Padding.
        pub _pad0: [u8; 4],
    }
}
assert_layout!(Nv90e7CtrlBbxGetLastFlushTimeParams, 16, durationUs @ 8);

abi_struct! {
    /// `NV_CONF_COMPUTE_CTRL_CMD_SYSTEM_GET_CAPABILITIES_PARAMS`.
    pub struct NvConfComputeCtrlCmdSystemGetCapabilitiesParams {
        /// CPU CC capability, out.
        pub cpuCapability: u8,
        /// GPUs CC capability, out.
        pub gpusCapability: u8,
        /// CC environment, out.
        pub environment: u8,
        /// CC feature, out.
        pub ccFeature: u8,
        /// Dev-tools mode, out.
        pub devToolsMode: u8,
        /// Multi-GPU mode, out.
        pub multiGpuMode: u8,
    }
}
assert_layout!(NvConfComputeCtrlCmdSystemGetCapabilitiesParams, 6, gpusCapability @ 1,
    environment @ 2, ccFeature @ 3, devToolsMode @ 4, multiGpuMode @ 5);
