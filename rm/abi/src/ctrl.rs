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
