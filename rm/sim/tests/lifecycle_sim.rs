//! The whole life of a GPU program on the sim backend, through the dispatcher only: start-up
//! escapes, root client, device, subdevice, VA space, TSG, context share, memory, GPU and CPU
//! mappings, channel, compute and copy objects, usermode page, work-submit token, a GPFIFO entry
//! whose pushbuffer does 50 µs of compute and a semaphore release, doorbell, idle, the
//! semaphore read back; then everything freed and neither the core nor the sim holds an object.

use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::frontend::*;
use rm_abi::methods::{compute, host};
use rm_abi::nvos::*;
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::{class, NvStatus};
use rm_core::testing::rm_client::{Node, RmClient, Transport};
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::{self, full_tree, RmCalls};
use rm_core::{Rm, VgpuConfig};
use rm_sim::{userd, SimBackend, SimConfig};
use zerocopy::IntoBytes;

const GFID: u32 = 7;
const MEM_SIZE: u64 = 4 << 20;

/// The sim with the vGPU `gfid` (1 GiB), as a transport.
fn sim(gfid: u32) -> CoreTransport<SimBackend> {
    CoreTransport::new(
        Rm::new(SimBackend::new(SimConfig::default())),
        gfid,
        VgpuConfig::with_quota(1 << 30),
    )
    .unwrap()
}

#[test]
fn a_gpu_program_from_first_escape_to_last_free() {
    let core = sim(GFID);
    let mut g = RmClient::open(&core).unwrap();
    let dev = core.open(Node::Device(0)).unwrap();
    let ctl = g.ctl();

    // Start-up, as the traces' clients do it.
    assert_eq!(
        g.ioctl_raw(
            ctl,
            Escape::SYS_PARAMS,
            &NvIoctlSysParams {
                memblock_size: 1 << 30
            }
        )
        .unwrap()
        .0,
        0
    );
    assert_eq!(
        g.ioctl_raw(ctl, Escape::CARD_INFO, &[0u8; 72 * 4])
            .unwrap()
            .0,
        0
    );
    let mut v = NvIoctlRmApiVersion::default();
    v.versionString[..10].copy_from_slice(b"580.159.04");
    assert_eq!(
        g.ioctl_raw(ctl, Escape::CHECK_VERSION_STR, &v).unwrap().0,
        0
    );
    assert_eq!(
        g.ioctl_raw(dev, Escape::REGISTER_FD, &NvIoctlRegisterFd { ctl_fd: ctl })
            .unwrap()
            .0,
        0
    );
    assert_eq!(
        g.ioctl_raw(ctl, Escape::ATTACH_GPUS_TO_FD, &[0x600u32])
            .unwrap()
            .0,
        0
    );

    let ok = |(s, h): (NvStatus, u32)| {
        assert_eq!(s, NvStatus::OK);
        h
    };
    let base = testing::base(&mut g);
    let (client, device, subdevice, vaspace) =
        (base.client, base.device, base.subdevice, base.vaspace);
    let (s, name) = RmCalls::control(
        &mut g,
        client,
        subdevice,
        NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        &Nv2080CtrlGpuGetNameStringParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(name.gpuNameString.starts_with(b"NVIDIA H200 (sim)\0"));
    let mem_p = NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
        size: MEM_SIZE,
        ..Default::default()
    };
    let mem = ok(RmCalls::alloc(
        &mut g,
        client,
        device,
        0x5c00_0005,
        class::NV01_MEMORY_LOCAL_USER,
        mem_p.as_bytes(),
    ));
    assert_eq!(core.rm().fb_used(GFID), MEM_SIZE);

    // GPU mapping of the memory into the VA space.
    let m46 = Nvos46Parameters {
        hClient: client,
        hDevice: device,
        hDma: vaspace,
        hMemory: mem,
        length: MEM_SIZE,
        ..Default::default()
    };
    let (ret, m46) = g.ioctl_raw(ctl, Escape::RM_MAP_MEMORY_DMA, &m46).unwrap();
    assert_eq!((ret, NvStatus(m46.status)), (0, NvStatus::OK));
    let va = m46.dmaOffset;
    assert_ne!(va, 0);

    // USERD at offset 0 of the memory, the GPFIFO ring at +0x1000, pushbuffer at +0x10000.
    let (tsg, ctxshare) = testing::channel_group(
        &mut g,
        &base,
        NV2080_ENGINE_TYPE_GR0,
        0x5c00_0006,
        0x5c00_0007,
    );
    let channel = testing::channel(
        &mut g,
        &base,
        tsg,
        ctxshare,
        mem,
        0x5c00_0008,
        va + 0x1000,
        64,
    );
    let compute_obj = ok(RmCalls::alloc(
        &mut g,
        client,
        channel,
        0x5c00_0009,
        class::HOPPER_COMPUTE_A,
        NvGrAllocationParameters::default().as_bytes(),
    ));
    // A copy-engine TSG with its own channel and copy object.
    let ce_p = NvChannelGroupAllocationParameters {
        hVASpace: vaspace,
        engineType: NV2080_ENGINE_TYPE_COPY0,
        ..Default::default()
    };
    let ce_tsg = ok(RmCalls::alloc(
        &mut g,
        client,
        device,
        0x5c00_000c,
        class::KEPLER_CHANNEL_GROUP_A,
        ce_p.as_bytes(),
    ));
    let ce_channel = testing::channel(&mut g, &base, ce_tsg, 0, 0, 0x5c00_000d, va + 0x2000, 64);
    let copy_obj = ok(RmCalls::alloc(
        &mut g,
        client,
        ce_channel,
        0x5c00_000a,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters::default().as_bytes(),
    ));
    assert_ne!(compute_obj, copy_obj);
    let usermode = ok(RmCalls::alloc(
        &mut g,
        client,
        subdevice,
        0x5c00_000b,
        class::HOPPER_USERMODE_A,
        NvHopperUsermodeAParams::default().as_bytes(),
    ));

    // TSG scheduling controls reach the sim.
    let (s, _) = RmCalls::control(
        &mut g,
        client,
        tsg,
        NVA06C_CTRL_CMD_SET_TIMESLICE,
        &NvA06cCtrlTimesliceParams { timesliceUs: 2000 },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, ts) = RmCalls::control(
        &mut g,
        client,
        tsg,
        NVA06C_CTRL_CMD_GET_TIMESLICE,
        &NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(
        ts.timesliceUs > 0 && ts.timesliceUs <= 2000,
        "rounded down to a hardware value: {}",
        ts.timesliceUs
    );
    let (s, _) = RmCalls::control(
        &mut g,
        client,
        tsg,
        NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
        &NvA06cCtrlGpfifoScheduleParams {
            bEnable: 1,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, tok) = RmCalls::control(
        &mut g,
        client,
        channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);

    // CPU mappings: the usermode doorbell page and the memory, each on its own fd.
    let map = |g: &mut RmClient<'_>, object: u32, length: u64| {
        let fd = core.open(Node::Device(0)).unwrap();
        let p = Nvos33ParametersWithFd {
            params: Nvos33Parameters {
                hClient: client,
                hDevice: if object == usermode {
                    subdevice
                } else {
                    device
                },
                hMemory: object,
                length,
                ..Default::default()
            },
            fd,
            _pad: 0,
        };
        let (ret, out) = g.ioctl_raw(g.ctl(), Escape::RM_MAP_MEMORY, &p).unwrap();
        assert_eq!((ret, NvStatus(out.params.status)), (0, NvStatus::OK));
        assert_eq!(
            out.params.flags & NVOS33_FLAGS_CACHING_TYPE_MASK,
            NVOS33_FLAGS_CACHING_TYPE_DEFAULT
        );
        (fd, out.params.pLinearAddress)
    };
    let (_um_fd, _) = map(&mut g, usermode, 0x1000);
    let (mem_fd, cookie) = map(&mut g, mem, MEM_SIZE);
    let ctx = core.rm().mmap_context(GFID, mem_fd).unwrap();
    assert_eq!(
        (ctx.client, ctx.memory, ctx.length, ctx.cookie),
        (client, mem, MEM_SIZE, cookie)
    );

    // The program, written through the mapping.
    let sem = va + 0x20000;
    let words = [
        inc_header(0, host::SET_OBJECT, 1),
        class::HOPPER_COMPUTE_A,
        inc_header(0, compute::SIM_WORK_NS_LO, 3),
        50_000,
        0,
        0,
        inc_header(0, host::SEM_ADDR_LO, 4),
        sem as u32,
        (sem >> 32) as u32,
        42,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
    ];
    assert_eq!(
        core.rm()
            .write_memory(GFID, client, mem, 0x10000, words.as_bytes()),
        NvStatus::OK
    );
    let entry = GpEntry::encode(va + 0x10000, words.len() as u32);
    assert_eq!(
        core.rm()
            .write_memory(GFID, client, mem, 0x1000, &entry.to_le_bytes()),
        NvStatus::OK
    );
    assert_eq!(
        core.rm()
            .write_memory(GFID, client, mem, userd::GP_PUT, &1u32.to_le_bytes()),
        NvStatus::OK
    );
    assert_eq!(
        core.rm()
            .write_memory(GFID, client, mem, MEM_SIZE - 2, &[0; 4]),
        NvStatus::ERR_INVALID_OFFSET
    );

    // Another vGPU cannot ring this channel.
    core.rm()
        .create_vgpu(GFID + 1, rm_core::VgpuConfig::with_quota(1 << 30))
        .unwrap();
    assert_eq!(
        core.rm().doorbell(GFID + 1, tok.workSubmitToken),
        NvStatus::ERR_INVALID_CHANNEL
    );
    assert_eq!(core.rm().doorbell(GFID, tok.workSubmitToken), NvStatus::OK);

    // Wait for the channel to idle, then read the semaphore.
    let idle = Nvos30Parameters {
        hClient: client,
        hDevice: device,
        hChannel: channel,
        timeout: 1_000_000,
        ..Default::default()
    };
    let (ret, idle) = g.ioctl_raw(ctl, Escape::RM_IDLE_CHANNELS, &idle).unwrap();
    assert_eq!((ret, NvStatus(idle.status)), (0, NvStatus::OK));
    let mut semv = [0u8; 16];
    assert_eq!(
        core.rm().read_memory(GFID, client, mem, 0x20000, &mut semv),
        NvStatus::OK
    );
    assert_eq!(
        u32::from_le_bytes(semv[0..4].try_into().unwrap()),
        42,
        "semaphore released"
    );
    assert!(
        u64::from_le_bytes(semv[8..16].try_into().unwrap()) >= 50_000,
        "timestamp after 50 µs of work"
    );
    let mut gp_get = [0u8; 4];
    assert_eq!(
        core.rm()
            .read_memory(GFID, client, mem, userd::GP_GET, &mut gp_get),
        NvStatus::OK
    );
    assert_eq!(u32::from_le_bytes(gp_get), 1);

    // Preempt and disable the caller's own channel.
    let (s, _) = RmCalls::control(
        &mut g,
        client,
        tsg,
        NVA06C_CTRL_CMD_PREEMPT,
        &NvA06cCtrlPreemptParams {
            bWait: 1,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::OK);
    let mut dis = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: 1,
        numChannels: 1,
        ..Default::default()
    };
    dis.hClientList[0] = client;
    dis.hChannelList[0] = channel;
    assert_eq!(
        RmCalls::control(
            &mut g,
            client,
            subdevice,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            &dis
        )
        .0,
        NvStatus::OK
    );
    dis.bDisable = 0;
    assert_eq!(
        RmCalls::control(
            &mut g,
            client,
            subdevice,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            &dis
        )
        .0,
        NvStatus::OK
    );

    // Tear down: unmap, free the TSG subtree, then the client.
    let un = Nvos34Parameters {
        hClient: client,
        hDevice: device,
        hMemory: mem,
        pLinearAddress: cookie,
        ..Default::default()
    };
    let (ret, un) = g.ioctl_raw(ctl, Escape::RM_UNMAP_MEMORY, &un).unwrap();
    assert_eq!((ret, NvStatus(un.status)), (0, NvStatus::OK));
    assert!(core.rm().mmap_context(GFID, mem_fd).is_none());
    assert_eq!(g.free_status(client, device, tsg).unwrap(), NvStatus::OK);
    assert_eq!(
        g.free_status(client, client, channel).unwrap(),
        NvStatus::ERR_INVALID_OBJECT_HANDLE,
        "freed with its TSG"
    );
    assert!(
        core.rm().doorbell(GFID, tok.workSubmitToken) != NvStatus::OK,
        "token died with its channel"
    );
    assert_eq!(g.free_status(client, client, client).unwrap(), NvStatus::OK);
    assert_eq!(core.rm().object_count(GFID), 0);
    assert_eq!(core.rm().fb_used(GFID), 0);
    assert_eq!(
        core.rm().backend().object_count(),
        0,
        "the sim holds no object"
    );
    core.rm().destroy_vgpu(GFID).unwrap();
    core.rm().destroy_vgpu(GFID + 1).unwrap();
    assert_eq!(core.rm().total_objects(), 0);
}

#[test]
fn destroying_a_vgpu_frees_everything_it_owned_on_the_sim() {
    let core = sim(1);
    let core2 = core.another(2, VgpuConfig::with_quota(1 << 30)).unwrap();
    let mut a = RmClient::open(&core).unwrap();
    full_tree(&mut a);
    let mut b = RmClient::open(&core2).unwrap();
    let tb = full_tree(&mut b);
    let sim_objects = core.rm().backend().object_count();
    core.rm().destroy_vgpu(1).unwrap();
    assert_eq!(core.rm().object_count(1), 0);
    assert_eq!(
        core.rm().backend().object_count(),
        sim_objects / 2,
        "only GFID 1's half went"
    );
    let (s, _) = RmCalls::control(
        &mut b,
        tb.client,
        tb.tsg,
        NVA06C_CTRL_CMD_GET_TIMESLICE,
        &NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::OK, "GFID 2 untouched");
    core.rm().destroy_vgpu(2).unwrap();
    assert_eq!(core.rm().backend().object_count(), 0);
}

/// CUDA's pattern in the traces (`vecadd`, `spin`): a compute and a copy object on the same
/// channel of a GR TSG. The real driver allows it (the GR engine's copy engine serves the
/// class); the copy runs on that channel beside the compute work.
#[test]
fn a_gr_channel_hosts_compute_and_copy_objects_as_cuda_allocates_them() {
    let core = sim(GFID);
    let mut g = RmClient::open(&core).unwrap();
    let t = full_tree(&mut g);
    let ok = |(s, h): (NvStatus, u32)| {
        assert_eq!(s, NvStatus::OK);
        h
    };
    let copy_on_gr = ok(RmCalls::alloc(
        &mut g,
        t.client,
        t.channel,
        0x5c00_0020,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters::default().as_bytes(),
    ));
    // Naming a copy engine the GPU has is fine; naming GR as the copy engine is not.
    ok(RmCalls::alloc(
        &mut g,
        t.client,
        t.channel,
        0x5c00_0021,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters {
            engineType: NV2080_ENGINE_TYPE_COPY0 + 1,
            ..Default::default()
        }
        .as_bytes(),
    ));
    let (s, _) = RmCalls::alloc(
        &mut g,
        t.client,
        t.channel,
        0x5c00_0022,
        class::HOPPER_DMA_COPY_A,
        Nvb0b5AllocationParameters {
            engineType: NV2080_ENGINE_TYPE_GR0,
            ..Default::default()
        }
        .as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    // A compute object still never goes on a copy engine's channel.
    let (s, _) = RmCalls::alloc(
        &mut g,
        t.client,
        t.copy_channel,
        0x5c00_0023,
        class::HOPPER_COMPUTE_A,
        NvGrAllocationParameters::default().as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_CLASS);
    assert_eq!(
        g.free_status(t.client, t.channel, copy_on_gr).unwrap(),
        NvStatus::OK
    );
    core.rm().destroy_vgpu(GFID).unwrap();
    assert_eq!(core.rm().backend().object_count(), 0);
}
