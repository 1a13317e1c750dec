//! Isolation between vGPUs (and between clients of one vGPU): a second GFID cannot use, free,
//! control or disable the first one's objects, including through handle lists inside params.

use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::nvos::Nvos30Parameters;
use rm_abi::{class, escape::Escape, NvStatus};
use rm_client::{RmClient, Transport};
use rm_core::backend::Gfid;
use rm_core::testing::fixtures::{Call, FakeBackend};
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::{full_tree, RmCalls, Tree};
use rm_core::{Rm, VgpuConfig};
use zerocopy::IntoBytes;

const GIB: u64 = 1 << 30;

/// A core with the vGPU `gfid` (1 GiB), as a transport.
fn core(gfid: Gfid) -> CoreTransport<FakeBackend> {
    CoreTransport::new(
        Rm::new(FakeBackend::default()),
        gfid,
        VgpuConfig::with_quota(GIB),
    )
    .unwrap()
}

/// Transports of the vGPUs 1 and 2 of one core.
fn two_vgpus() -> (CoreTransport<FakeBackend>, CoreTransport<FakeBackend>) {
    let a = core(1);
    let b = a.another(2, VgpuConfig::with_quota(GIB)).unwrap();
    (a, b)
}

/// A client of each vGPU with its [`full_tree`].
fn two_guests<'t>(
    va: &'t CoreTransport<FakeBackend>,
    vb: &'t CoreTransport<FakeBackend>,
) -> (RmClient<'t>, Tree, RmClient<'t>, Tree) {
    let mut a = RmClient::open(va).unwrap();
    let ta = full_tree(&mut a);
    let mut b = RmClient::open(vb).unwrap();
    let tb = full_tree(&mut b);
    (a, ta, b, tb)
}

#[test]
fn guests_see_the_same_handles_but_get_different_host_clients() {
    let (va, vb) = two_vgpus();
    let (_a, ta, _b, tb) = two_guests(&va, &vb);
    let rm = va.rm();
    assert_eq!(
        ta.client, tb.client,
        "both guests see the first client handle"
    );
    let (ha, hb) = (
        rm.host_client(1, ta.client).unwrap(),
        rm.host_client(2, tb.client).unwrap(),
    );
    assert_ne!(ha, hb);
    assert_eq!(rm.backend().clients_touched_by(1), [ha].into());
    assert_eq!(rm.backend().clients_touched_by(2), [hb].into());
}

#[test]
fn another_gfid_cannot_name_the_first_ones_client() {
    let (va, vb) = two_vgpus();
    let (_a, ta, mut b, _tb) = two_guests(&va, &vb);
    let host_a = va.rm().host_client(1, ta.client).unwrap();
    let before = va.rm().object_count(1);
    for h in [host_a, ta.client + 1, 0xC1D0_0000] {
        let (s, _) = RmCalls::control(
            &mut b,
            h,
            ta.tsg,
            NVA06C_CTRL_CMD_GET_TIMESLICE,
            &NvA06cCtrlTimesliceParams::default(),
        );
        assert_eq!(s, NvStatus::ERR_INVALID_CLIENT, "control via {h:#x}");
        assert_eq!(
            b.free_status(h, h, h).unwrap(),
            NvStatus::ERR_INVALID_CLIENT,
            "free via {h:#x}"
        );
        let (s, _) = RmCalls::alloc(
            &mut b,
            h,
            ta.device,
            0,
            class::FERMI_VASPACE_A,
            NvVaspaceAllocationParameters::default().as_bytes(),
        );
        assert_eq!(s, NvStatus::ERR_INVALID_CLIENT, "alloc via {h:#x}");
    }
    assert_eq!(va.rm().object_count(1), before);
    let rm = va.rm();
    assert_eq!(
        rm.backend().clients_touched_by(2),
        [rm.host_client(2, ta.client).unwrap()].into()
    );
}

#[test]
fn freeing_in_one_gfid_leaves_the_other_whole() {
    let (va, vb) = two_vgpus();
    let (mut a, ta, mut b, tb) = two_guests(&va, &vb);
    let before = va.rm().object_count(1);
    assert_eq!(
        b.free_status(tb.client, tb.device, tb.tsg).unwrap(),
        NvStatus::OK
    );
    assert_eq!(va.rm().object_count(1), before);
    let (s, p) = RmCalls::control(
        &mut a,
        ta.client,
        ta.tsg,
        NVA06C_CTRL_CMD_GET_TIMESLICE,
        &NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::OK, "{p:?}");
}

fn disable(client_list: &[u32], channel_list: &[u32]) -> Nv2080CtrlFifoDisableChannelsParams {
    let mut p = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: 1,
        numChannels: client_list.len() as u32,
        ..Default::default()
    };
    p.hClientList[..client_list.len()].copy_from_slice(client_list);
    p.hChannelList[..channel_list.len()].copy_from_slice(channel_list);
    p
}

#[test]
fn disable_channels_refuses_foreign_clients_in_its_lists() {
    let (va, vb) = two_vgpus();
    let (_a, ta, mut b, tb) = two_guests(&va, &vb);
    let host_a = va.rm().host_client(1, ta.client).unwrap();
    let controls_before = va
        .rm()
        .backend()
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Control(..)))
        .count();
    // The first guest's host client handle, its guest handle used from a different client,
    // and a mix of own and foreign entries: all refused before the backend sees them.
    let b2 = RmCalls::alloc_ok(&mut b, 0, 0, 0, class::NV01_ROOT, &[]);
    for (clients, channels) in [
        (vec![host_a], vec![ta.channel]),
        (vec![b2], vec![tb.channel]),
        (vec![tb.client, host_a], vec![tb.channel, ta.channel]),
    ] {
        let (s, out) = RmCalls::control(
            &mut b,
            tb.client,
            tb.subdevice,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            &disable(&clients, &channels),
        );
        assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS, "{clients:x?}");
        assert_eq!(
            out.hClientList[..clients.len()],
            clients[..],
            "guest view unchanged"
        );
    }
    let controls_after = va
        .rm()
        .backend()
        .calls
        .iter()
        .filter(|c| matches!(c, Call::Control(..)))
        .count();
    assert_eq!(
        controls_before, controls_after,
        "no refused disable reached the backend"
    );

    // A channel handle that is not one of the caller's channels.
    let (s, _) = RmCalls::control(
        &mut b,
        tb.client,
        tb.subdevice,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        &disable(&[tb.client], &[tb.tsg]),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_CHANNEL);
    // More entries than the lists hold.
    let mut too_many = disable(&[tb.client], &[tb.channel]);
    too_many.numChannels = 65;
    let (s, _) = RmCalls::control(
        &mut b,
        tb.client,
        tb.subdevice,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        &too_many,
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    // A kernel-only preempt event pointer.
    let mut ev = disable(&[tb.client], &[tb.channel]);
    ev.pRunlistPreemptEvent = 0x1000;
    let (s, _) = RmCalls::control(
        &mut b,
        tb.client,
        tb.subdevice,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        &ev,
    );
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS);

    // The caller's own channel works, reaches the backend with the host client handle, and
    // the guest reads back its own view.
    let (s, out) = RmCalls::control(
        &mut b,
        tb.client,
        tb.subdevice,
        NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
        &disable(&[tb.client], &[tb.channel]),
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(out.hClientList[0], tb.client);
    let host_b = va.rm().host_client(2, tb.client).unwrap();
    let Some(Call::Control(2, c, _, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS, raw)) =
        va.rm().backend().calls.last().cloned()
    else {
        panic!("disable did not reach the backend")
    };
    assert_eq!(c, host_b);
    let sent: Nv2080CtrlFifoDisableChannelsParams = rm_abi::read_struct(&raw).unwrap();
    assert_eq!(
        (
            sent.hClientList[0],
            sent.hChannelList[0],
            sent.hClientList[1]
        ),
        (host_b, tb.channel, 0)
    );
}

#[test]
fn doorbells_and_idle_of_foreign_channels_are_refused() {
    let (va, vb) = two_vgpus();
    let (mut a, ta, mut b, tb) = two_guests(&va, &vb);
    let (s, tok_a) = RmCalls::control(
        &mut a,
        ta.client,
        ta.channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    let (_, tok_b) = RmCalls::control(
        &mut b,
        tb.client,
        tb.channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_ne!(tok_a.workSubmitToken, tok_b.workSubmitToken);
    assert_eq!(
        va.rm().doorbell(2, tok_a.workSubmitToken),
        NvStatus::ERR_INVALID_CHANNEL
    );
    assert_eq!(va.rm().doorbell(2, tok_b.workSubmitToken), NvStatus::OK);
    assert_eq!(va.rm().doorbell(1, tok_a.workSubmitToken), NvStatus::OK);

    let host_a = va.rm().host_client(1, ta.client).unwrap();
    let lists = vb.buffer(0x300, 8).unwrap();
    lists.write(0, [host_a].as_bytes()).unwrap();
    lists.write(0x100, [ta.device].as_bytes()).unwrap();
    lists.write(0x200, [ta.channel].as_bytes()).unwrap();
    let p = Nvos30Parameters {
        hClient: tb.client,
        hDevice: tb.device,
        numChannels: 1,
        phClients: lists.addr(),
        phDevices: lists.addr() + 0x100,
        phChannels: lists.addr() + 0x200,
        ..Default::default()
    };
    let (ret, out) = b.ioctl_raw(b.ctl(), Escape::RM_IDLE_CHANNELS, &p).unwrap();
    assert_eq!(
        (ret, NvStatus(out.status)),
        (0, NvStatus::ERR_INSUFFICIENT_PERMISSIONS)
    );
    let single = Nvos30Parameters {
        hClient: tb.client,
        hDevice: tb.device,
        hChannel: tb.channel,
        ..Default::default()
    };
    let (ret, out) = b
        .ioctl_raw(b.ctl(), Escape::RM_IDLE_CHANNELS, &single)
        .unwrap();
    assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
    assert!(!va
        .rm()
        .backend()
        .calls
        .iter()
        .any(|c| matches!(c, Call::Idle(_, h, _) if *h == host_a)));
}

#[test]
fn a_client_is_usable_only_through_its_own_fd() {
    let t = core(1);
    let mut a = RmClient::open(&t).unwrap();
    let ta = full_tree(&mut a);
    let mut other = RmClient::open(&t).unwrap();
    let (s, _) = RmCalls::control(
        &mut other,
        ta.client,
        ta.tsg,
        NVA06C_CTRL_CMD_GET_TIMESLICE,
        &NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_CLIENT);
    assert_eq!(
        other.free_status(ta.client, ta.client, ta.client).unwrap(),
        NvStatus::ERR_INVALID_CLIENT
    );
}

#[test]
fn handle_carrying_alloc_params_must_name_the_callers_objects() {
    let (va, vb) = two_vgpus();
    let (_a, ta, mut b, tb) = two_guests(&va, &vb);
    // The VA space of another client of the same vGPU is not this client's.
    let c2 = RmCalls::alloc_ok(&mut b, 0, 0, 0, class::NV01_ROOT, &[]);
    let (s, d2) = RmCalls::alloc(
        &mut b,
        c2,
        c2,
        0,
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    );
    assert_eq!(s, NvStatus::OK);
    let tsg_p = NvChannelGroupAllocationParameters {
        hVASpace: tb.vaspace,
        engineType: NV2080_ENGINE_TYPE_GR0,
        ..Default::default()
    };
    let (s, _) = RmCalls::alloc(
        &mut b,
        c2,
        d2,
        0,
        class::KEPLER_CHANNEL_GROUP_A,
        tsg_p.as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_OBJECT_HANDLE);
    // A TSG's VA space that is not a VA space.
    let bad = NvChannelGroupAllocationParameters {
        hVASpace: tb.tsg,
        engineType: NV2080_ENGINE_TYPE_GR0,
        ..Default::default()
    };
    let (s, _) = RmCalls::alloc(
        &mut b,
        tb.client,
        tb.device,
        0,
        class::KEPLER_CHANNEL_GROUP_A,
        bad.as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    // A device sharing another client's VA space.
    let share = Nv0080AllocParameters {
        hClientShare: va.rm().host_client(1, ta.client).unwrap(),
        ..Default::default()
    };
    let (s, _) = RmCalls::alloc(&mut b, c2, c2, 0, class::NV01_DEVICE_0, share.as_bytes());
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    // A channel whose context share belongs to another TSG.
    let tsg2_p = NvChannelGroupAllocationParameters {
        hVASpace: tb.vaspace,
        engineType: NV2080_ENGINE_TYPE_GR0,
        ..Default::default()
    };
    let (s, tsg2) = RmCalls::alloc(
        &mut b,
        tb.client,
        tb.device,
        0,
        class::KEPLER_CHANNEL_GROUP_A,
        tsg2_p.as_bytes(),
    );
    assert_eq!(s, NvStatus::OK);
    let ch = NvChannelAllocParams {
        hContextShare: tb.ctxshare,
        gpFifoEntries: 8,
        ..Default::default()
    };
    let (s, _) = RmCalls::alloc(
        &mut b,
        tb.client,
        tsg2,
        0,
        class::HOPPER_CHANNEL_GPFIFO_A,
        ch.as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
}

#[test]
fn privileged_fields_are_sanitised_before_the_backend() {
    let core = core(3);
    let mut g = RmClient::open(&core).unwrap();
    let t = full_tree(&mut g);
    let tsg_p = NvChannelGroupAllocationParameters {
        hVASpace: t.vaspace,
        engineType: NV2080_ENGINE_TYPE_GR0,
        bIsCallingContextVgpuPlugin: 1,
        ..Default::default()
    };
    let (s, tsg) = RmCalls::alloc(
        &mut g,
        t.client,
        t.device,
        0,
        class::KEPLER_CHANNEL_GROUP_A,
        tsg_p.as_bytes(),
    );
    assert_eq!(s, NvStatus::OK);
    let ch_p = NvChannelAllocParams {
        flags: NVOS04_FLAGS_PRIVILEGED_CHANNEL | NVOS04_FLAGS_CHANNEL_VGPU_PLUGIN_CONTEXT | 1,
        internalFlags: 0xffff,
        ProcessID: 1234,
        hmacNonce: [7; 8],
        gpFifoEntries: 8,
        ..Default::default()
    };
    let (s, ch) = RmCalls::alloc(
        &mut g,
        t.client,
        tsg,
        0,
        class::HOPPER_CHANNEL_GPFIFO_A,
        ch_p.as_bytes(),
    );
    assert_eq!(s, NvStatus::OK);
    let allocs: Vec<_> = core
        .rm()
        .backend()
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Alloc(r, p) => Some((*r, p.clone())),
            _ => None,
        })
        .collect();
    let (_, tsg_sent) = allocs.iter().find(|(r, _)| r.object == tsg).unwrap();
    assert_eq!(
        rm_abi::read_struct::<NvChannelGroupAllocationParameters>(tsg_sent)
            .unwrap()
            .bIsCallingContextVgpuPlugin,
        0
    );
    let (req, ch_sent) = allocs.iter().find(|(r, _)| r.object == ch).unwrap();
    assert_eq!(req.gfid, 3);
    let sent: NvChannelAllocParams = rm_abi::read_struct(ch_sent).unwrap();
    assert_eq!(sent.flags, 1);
    assert_eq!(
        (sent.internalFlags, sent.ProcessID, sent.hmacNonce),
        (0, 0, [0; 8])
    );
}
