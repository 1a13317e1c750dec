//! The controls the core answers for a simulated H200 beyond identity and FIFO scheduling
//! (active device ids, sync-boost groups, host caps, channel list, GPU info), through the
//! dispatcher on the sim backend: the answers, and the driver's errors on bad input.

use rm_abi::ctrl::*;
use rm_abi::NvStatus;
use rm_core::testing::rm_client::{Buffer, RmClient, Transport};
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::{full_tree, RmCalls, Tree};
use rm_core::{Rm, VgpuConfig};
use rm_sim::{SimBackend, SimConfig};
use zerocopy::FromZeros;

const GFID: u32 = 3;

/// The sim with the vGPU `GFID` (1 GiB), as a transport.
fn setup() -> CoreTransport<SimBackend> {
    CoreTransport::new(
        Rm::new(SimBackend::new(SimConfig::default())),
        GFID,
        VgpuConfig::with_quota(1 << 30),
    )
    .unwrap()
}

/// A client of the vGPU with its [`full_tree`].
fn guest(core: &CoreTransport<SimBackend>) -> (RmClient<'_>, Tree) {
    let mut g = RmClient::open(core).unwrap();
    let t = full_tree(&mut g);
    (g, t)
}

#[test]
fn active_device_ids_name_the_vgpu_without_mig_instances() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.client,
        NV0000_CTRL_CMD_GPU_GET_ACTIVE_DEVICE_IDS,
        &Nv0000CtrlGpuGetActiveDeviceIdsParams::new_zeroed(),
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(p.numDevices, 1);
    assert_eq!(p.devices[0].gpuId, 0x600, "the vGPU's configured gpu id");
    assert_eq!(p.devices[0].gpuInstanceId, NV0000_CTRL_GPU_INVALID_ID);
    assert_eq!(p.devices[0].computeInstanceId, NV0000_CTRL_GPU_INVALID_ID);
    assert!(p.devices[1..]
        .iter()
        .all(|d| *d == Nv0000CtrlGpuActiveDevice::default()));
}

#[test]
fn boost_groups_and_host_caps_are_empty_even_over_guest_garbage() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let mut junk = Nv0000SyncGpuBoostGroupInfoParams {
        groupCount: 7,
        ..Default::default()
    };
    junk.pBoostGroups.fill(0xAB);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.client,
        NV0000_CTRL_CMD_SYNC_GPU_BOOST_GROUP_INFO,
        &junk,
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(p, Nv0000SyncGpuBoostGroupInfoParams::default());

    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.device,
        NV0080_CTRL_CMD_HOST_GET_CAPS_V2,
        &Nv0080CtrlHostGetCapsV2Params { capsTbl: [0xFF; 3] },
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(p.capsTbl, [0; 3]);
    // A device control on the subdevice is not the device's.
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV0080_CTRL_CMD_HOST_GET_CAPS_V2,
        &Nv0080CtrlHostGetCapsV2Params::default(),
    );
    assert_eq!(s, NvStatus::ERR_NOT_SUPPORTED);
}

/// Offset of the channel id list in the lists buffer (the handle list is at 0).
const CHIDS: usize = 0x1000;

/// GET_CHANNELLIST of `handles`, written at the start of `lists`; `p` points at `lists`.
fn channel_list(
    g: &mut RmClient<'_>,
    lists: &Buffer,
    t: &Tree,
    handles: &[u32],
    p: Nv0080CtrlFifoGetChannellistParams,
) -> (NvStatus, Vec<u32>) {
    let raw: Vec<u8> = handles.iter().flat_map(|h| h.to_le_bytes()).collect();
    lists.write(0, &raw).unwrap();
    lists.write(CHIDS, &vec![0x5A; raw.len()]).unwrap();
    let (s, _) = RmCalls::control(
        g,
        t.client,
        t.device,
        NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST,
        &p,
    );
    let mut out = vec![0u8; raw.len()];
    lists.read(CHIDS, &mut out).unwrap();
    let ids = out
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (s, ids)
}

#[test]
fn channel_list_maps_own_channels_to_their_ids_and_others_to_invalid() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let (s, tok) = RmCalls::control(
        &mut g,
        t.client,
        t.channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    let (s, copy_tok) = RmCalls::control(
        &mut g,
        t.client,
        t.copy_channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);

    // A second client of the same guest, with its own tree under the same handles.
    let lists = core.buffer(0x2000, 64).unwrap();
    let other = full_tree(&mut g);
    let handles = [t.channel, t.tsg, t.copy_channel, 0xdead_beef, 0];
    let p = Nv0080CtrlFifoGetChannellistParams {
        numChannels: handles.len() as u32,
        pChannelHandleList: lists.addr(),
        pChannelList: lists.addr() + CHIDS as u64,
        ..Default::default()
    };
    let (s, ids) = channel_list(&mut g, &lists, &t, &handles, p);
    assert_eq!(s, NvStatus::OK);
    let inv = NV0080_CTRL_FIFO_GET_CHANNELLIST_INVALID_CHANNEL;
    assert_eq!(
        ids,
        [
            tok.workSubmitToken & 0xFFFF,
            inv,
            copy_tok.workSubmitToken & 0xFFFF,
            inv,
            inv
        ]
    );
    // The lookup is in the calling client: the other client's same handle is its own channel,
    // with its own id.
    let (s, ids) = channel_list(&mut g, &lists, &other, &[other.channel], {
        let mut q = p;
        q.numChannels = 1;
        q
    });
    assert_eq!(s, NvStatus::OK);
    assert_ne!(ids[0], inv);
    assert_ne!(ids[0], tok.workSubmitToken & 0xFFFF);

    // The driver's errors: no entries, NULL lists, lists outside guest memory.
    for (bad, want) in [
        (
            Nv0080CtrlFifoGetChannellistParams {
                numChannels: 0,
                ..p
            },
            NvStatus::ERR_INVALID_ARGUMENT,
        ),
        (
            Nv0080CtrlFifoGetChannellistParams {
                pChannelHandleList: 0,
                ..p
            },
            NvStatus::ERR_INVALID_ARGUMENT,
        ),
        (
            Nv0080CtrlFifoGetChannellistParams {
                numChannels: u32::MAX,
                ..p
            },
            NvStatus::ERR_INVALID_ARGUMENT,
        ),
        (
            Nv0080CtrlFifoGetChannellistParams {
                pChannelHandleList: 0xffff_ffff_ffff_0000,
                ..p
            },
            NvStatus::ERR_INVALID_ADDRESS,
        ),
        (
            Nv0080CtrlFifoGetChannellistParams {
                pChannelList: 0xffff_ffff_ffff_0000,
                ..p
            },
            NvStatus::ERR_INVALID_ADDRESS,
        ),
    ] {
        let (s, _) = RmCalls::control(
            &mut g,
            t.client,
            t.device,
            NV0080_CTRL_CMD_FIFO_GET_CHANNELLIST,
            &bad,
        );
        assert_eq!(s, want, "{bad:?}");
    }
}

fn gpu_info(
    g: &mut RmClient<'_>,
    t: &Tree,
    indices: &[u32],
    size: u32,
) -> (NvStatus, Nv2080CtrlGpuGetInfoV2Params) {
    let mut p = Nv2080CtrlGpuGetInfoV2Params {
        gpuInfoListSize: size,
        ..Default::default()
    };
    for (e, &i) in p.gpuInfoList.iter_mut().zip(indices) {
        e.index = i;
        e.data = 0xEEEE_EEEE;
    }
    RmCalls::control(
        g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_INFO_V2,
        &p,
    )
}

#[test]
fn gpu_info_answers_what_the_sim_models_and_refuses_the_rest_like_rm() {
    let core = setup();
    let (mut g, t) = guest(&core);
    // SYSMEM_ACCESS yes; SMC (MIG) unsupported; debugging, dma-buf, self-hosted, EGM, FLA no.
    let idx = [0x1F, 0x2A, 0x37, 0x3D, 0x3B, 0x3A, 0x2D, 0x22, 0x3C];
    let (s, p) = gpu_info(&mut g, &t, &idx, idx.len() as u32);
    assert_eq!(s, NvStatus::OK);
    let data: Vec<u32> = p.gpuInfoList[..idx.len()].iter().map(|e| e.data).collect();
    assert_eq!(data, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(p.gpuInfoList[idx.len()..]
        .iter()
        .all(|e| e.index == 0 && e.data == 0));

    // The driver's argument checks (`getGpuInfos`).
    let max = NV2080_CTRL_GPU_INFO_MAX_LIST_SIZE as u32;
    assert_eq!(
        gpu_info(&mut g, &t, &[0x1F], 0).0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        gpu_info(&mut g, &t, &[0x1F], max + 1).0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        gpu_info(&mut g, &t, &[max], 1).0,
        NvStatus::ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        gpu_info(&mut g, &t, &[0x1F | 1 << 24], 1).0,
        NvStatus::ERR_INVALID_ARGUMENT,
        "GPU group 1 does not exist"
    );
    // ECID (0x01), SM version (0x2C): silicon the sim does not model.
    for i in [0x01, 0x2C] {
        assert_eq!(
            gpu_info(&mut g, &t, &[0x1F, i], 2).0,
            NvStatus::ERR_NOT_SUPPORTED,
            "{i:#x}"
        );
    }
}

#[test]
fn compute_mode_has_no_rules_and_the_timeslice_policy_is_the_default() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_QUERY_COMPUTE_MODE_RULES,
        &Nv2080CtrlGpuQueryComputeModeRulesParams { rules: 0x55 },
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(p.rules, NV2080_CTRL_GPU_COMPUTE_MODE_RULES_NONE);

    let mut junk = Nv2080CtrlGpuGetComputePolicyConfigParams {
        numConfigs: 32,
        ..Default::default()
    };
    junk.configList.iter_mut().for_each(|c| c.data = 3);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_COMPUTE_POLICY_CONFIG,
        &junk,
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(p.numConfigs, 1);
    assert_eq!(
        p.configList[0],
        Nv2080CtrlGpuComputePolicyConfig {
            r#type: NV2080_CTRL_GPU_COMPUTE_POLICY_TIMESLICE,
            data: NV2080_CTRL_CMD_GPU_COMPUTE_TIMESLICE_DEFAULT,
        }
    );
    assert!(p.configList[1..]
        .iter()
        .all(|c| *c == Nv2080CtrlGpuComputePolicyConfig::default()));
}

#[test]
fn detach_accepts_its_own_gpu_and_detach_all_but_no_other_gpu() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let ids = |first: u32| {
        let mut p = Nv0000CtrlGpuDetachIdsParams {
            gpuIds: [NV0000_CTRL_GPU_INVALID_ID; 32],
        };
        p.gpuIds[0] = first;
        p
    };
    for (id, want) in [
        (NV0000_CTRL_GPU_DETACH_ALL_ATTACHED_IDS, NvStatus::OK),
        (0x600, NvStatus::OK),
        (0x700, NvStatus::ERR_INVALID_ARGUMENT),
    ] {
        let (s, _) = RmCalls::control(
            &mut g,
            t.client,
            t.client,
            NV0000_CTRL_CMD_GPU_DETACH_IDS,
            &ids(id),
        );
        assert_eq!(s, want, "{id:#x}");
    }
}

#[test]
fn id_info_reports_a_lone_gpu_board_that_cannot_do_sli() {
    let core = setup();
    let (mut g, t) = guest(&core);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.client,
        NV0000_CTRL_CMD_GPU_GET_ID_INFO_V2,
        &Nv0000CtrlGpuGetIdInfoV2Params {
            gpuId: 0x600,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::OK);
    // GPU_NOT_SUPPORTED | INVALID_GPU_COUNT; board id = GPU id; no NUMA node.
    assert_eq!((p.sliStatus, p.boardId, p.numaId), (0x41, 0x600, -1));
}

/// `GR_GET_INFO` of `indices` through a list in guest memory: the status and the data.
fn gr_info(
    core: &CoreTransport<SimBackend>,
    g: &mut RmClient<'_>,
    t: &Tree,
    indices: &[u32],
    size: u32,
) -> (NvStatus, Vec<u32>) {
    let list = core.buffer(8 * 64, 8).unwrap();
    let raw: Vec<u8> = indices
        .iter()
        .flat_map(|&i| [i.to_le_bytes(), 0xEEEE_EEEEu32.to_le_bytes()].concat())
        .collect();
    list.write(0, &raw).unwrap();
    let p = Nv2080CtrlGrGetInfoParams {
        grInfoListSize: size,
        grInfoList: list.addr(),
        ..Default::default()
    };
    let (s, _) = RmCalls::control(g, t.client, t.subdevice, NV2080_CTRL_CMD_GR_GET_INFO, &p);
    let mut out = vec![0u8; raw.len()];
    list.read(0, &mut out).unwrap();
    let data = out
        .chunks_exact(8)
        .map(|e| u32::from_le_bytes([e[4], e[5], e[6], e[7]]))
        .collect();
    (s, data)
}

/// The oracle is the H200's own answer to every index (`rm-trace probe-gr`, the fixture), and
/// arithmetic between them and the traced TPC masks: 8 GPCs of at most 9 TPCs, 2 SMs per TPC,
/// 128 cores per Hopper SM.
#[test]
fn gr_info_is_the_h200s_for_every_index_and_bad_lists_are_refused_like_rm() {
    let Some(path) = rm_core::testing::traces::h200_probe("gr-probe.json") else {
        return;
    };
    let probe: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let real: Vec<(u32, u32)> = probe["gr_info"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_u64().unwrap() as u32, e[1].as_u64().unwrap() as u32))
        .collect();
    assert_eq!(real.len(), 0x3A, "the probe asked every index");
    let core = setup();
    let (mut g, t) = guest(&core);
    // In lists of up to 20, in the order given, as CUDA asks (it asks all 0x3A at once).
    for chunk in real.chunks(20) {
        let idx: Vec<u32> = chunk.iter().map(|e| e.0).rev().collect();
        let (s, data) = gr_info(&core, &mut g, &t, &idx, idx.len() as u32);
        assert_eq!(s, NvStatus::OK);
        let want: Vec<u32> = chunk.iter().map(|e| e.1).rev().collect();
        assert_eq!(data, want);
    }
    let all: Vec<u32> = (0..0x3A).collect();
    let (s, data) = gr_info(&core, &mut g, &t, &all, 0x3A);
    assert_eq!(s, NvStatus::OK);
    let tpc_masks = [0x1FFu32, 0x1F8, 0x1BF, 0x1FF, 0x1FF, 0x1FF, 0x1FD, 0x0FF];
    let tpcs: u32 = tpc_masks.iter().map(|m| m.count_ones()).sum();
    assert_eq!(data[0x0C], 0x900, "SM 9.0");
    assert_eq!((data[0x14], data[0x17], data[0x20]), (8, 9, 2));
    assert_eq!(
        data[0x1D],
        tpcs * data[0x20] * 128,
        "cores = TPCs x SMs per TPC x 128"
    );

    // `NV0080_CTRL_GR_INFO_MAX_SIZE` bounds both the list and each index; nothing is written.
    for (idx, size) in [
        (vec![0], 0),
        (vec![0], 0x3B),
        (vec![0x3A], 1),
        (vec![1, 0x40], 2),
    ] {
        let (s, data) = gr_info(&core, &mut g, &t, &idx, size);
        assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT, "{idx:?} / {size}");
        assert!(data.iter().all(|&d| d == 0xEEEE_EEEE));
    }
    let p = Nv2080CtrlGrGetInfoParams {
        grInfoListSize: 1,
        grInfoList: 0xdead_0000_0000,
        ..Default::default()
    };
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GR_GET_INFO,
        &p,
    );
    assert_eq!(
        s,
        NvStatus::ERR_INVALID_ADDRESS,
        "a list outside guest memory"
    );
}
