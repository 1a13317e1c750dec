//! What one vGPU may hold is bounded by its configuration, whatever a guest asks for: channels
//! (so a quarter-GPU vGPU cannot take a runlist's every channel) and RM objects of any class
//! (each costs host memory). Past a limit the allocation gets the driver's answer for a full
//! GPU, `NV_ERR_NO_FREE_FIFOS` or `NV_ERR_INSUFFICIENT_RESOURCES`, and a freed object makes
//! room again. The host memory the sim holds for a vGPU's written pages is bounded by the
//! vGPU's share (`NV_ERR_NO_MEMORY` past it) and the objects all vGPUs hold by the core's total.
//! The oracle is the configured limit: counted allocations and pages succeed up to it.

use rm_abi::alloc_params::*;
use rm_abi::{class, NvStatus};
use rm_core::testing::rm_client::RmClient;
use rm_core::testing::transport::CoreTransport;
use rm_core::testing::{self};
use rm_core::{Rm, VgpuConfig};
use rm_sim::{SimBackend, SimConfig};
use zerocopy::IntoBytes;

fn sim(config: VgpuConfig) -> CoreTransport<SimBackend> {
    sim_with(SimConfig::default(), config)
}

fn sim_with(gpu: SimConfig, config: VgpuConfig) -> CoreTransport<SimBackend> {
    CoreTransport::new(Rm::new(SimBackend::new(gpu)), 7, config).unwrap()
}

#[test]
fn channels_past_the_vgpus_share_get_no_free_fifos() {
    let core = sim(VgpuConfig {
        max_channels: 5,
        ..VgpuConfig::with_quota(1 << 30)
    });
    let mut g = RmClient::open(&core).unwrap();
    let t = testing::full_tree(&mut g); // a GR and a copy channel
    let channel = |g: &mut RmClient<'_>, h: u32| {
        let mut p = NvChannelAllocParams {
            gpFifoOffset: 0x2_0000_0000 + u64::from(h & 0xff) * 0x10000,
            gpFifoEntries: 128,
            ..Default::default()
        };
        g.alloc_status(
            t.client,
            t.copy_tsg,
            h,
            class::HOPPER_CHANNEL_GPFIFO_A,
            p.as_mut_bytes(),
        )
        .unwrap()
        .0
    };
    for h in 0x5c00_0100..0x5c00_0103 {
        assert_eq!(channel(&mut g, h), NvStatus::OK, "channel {h:#x}");
    }
    assert_eq!(channel(&mut g, 0x5c00_0103), NvStatus::ERR_NO_FREE_FIFOS);
    assert_eq!(
        core.rm().object_count(7),
        12 + 3,
        "nothing half-made is left"
    );
    g.free(t.client, t.copy_tsg, 0x5c00_0101).unwrap();
    assert_eq!(
        channel(&mut g, 0x5c00_0103),
        NvStatus::OK,
        "a freed one makes room"
    );
}

#[test]
fn objects_past_the_vgpus_limit_get_insufficient_resources() {
    let core = sim(VgpuConfig {
        max_objects: 40,
        ..VgpuConfig::with_quota(1 << 30)
    });
    let mut g = RmClient::open(&core).unwrap();
    let t = testing::full_tree(&mut g);
    let held = core.rm().object_count(7);
    assert_eq!(held, 12);
    // Events are cheap to ask for and cost the host all the same: 28 more fit, not 29.
    let event = |g: &mut RmClient<'_>, h: u32| {
        let mut p = Nv0005AllocParameters {
            hParentClient: t.client,
            hSrcResource: t.subdevice,
            hClass: class::NV01_EVENT_OS_EVENT,
            notifyIndex: 0,
            ..Default::default()
        };
        g.alloc_status(
            t.client,
            t.subdevice,
            h,
            class::NV01_EVENT_OS_EVENT,
            p.as_mut_bytes(),
        )
        .unwrap()
        .0
    };
    for i in 0..(40 - held as u32) {
        assert_eq!(event(&mut g, 0x5c10_0000 + i), NvStatus::OK, "event {i}");
    }
    assert_eq!(
        event(&mut g, 0x5c1f_0000),
        NvStatus::ERR_INSUFFICIENT_RESOURCES
    );
    // A second client counts against the same vGPU.
    let (s, _) = g
        .alloc_status(0, 0, 0, class::NV01_ROOT_CLIENT, &mut [])
        .unwrap();
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_RESOURCES);
    g.free(t.client, t.subdevice, 0x5c10_0000).unwrap();
    assert_eq!(event(&mut g, 0x5c1f_0000), NvStatus::OK);
}

#[test]
fn cpu_writes_past_the_sims_host_memory_get_no_memory() {
    let pages = 64u64;
    let core = sim_with(
        SimConfig {
            host_memory_bytes: pages * 4096,
            ..SimConfig::default()
        },
        VgpuConfig::with_quota(1 << 34),
    );
    let mut g = RmClient::open(&core).unwrap();
    let b = testing::base(&mut g);
    // 8 GiB of video memory: within the quota, far beyond the host memory allowed.
    let mut p = NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
        size: 8 << 30,
        ..Default::default()
    };
    let (s, mem) = g
        .alloc_status(
            b.client,
            b.device,
            0x5c20_0000,
            class::NV01_MEMORY_LOCAL_USER,
            p.as_mut_bytes(),
        )
        .unwrap();
    assert_eq!(s, NvStatus::OK);
    let write = |at: u64| core.rm().write_memory(7, b.client, mem, at, &[0xAB; 16]);
    // Whatever the base tree wrote holds some pages already; the rest of the allowance is
    // written, then the next new page is refused.
    let held = core
        .rm()
        .backend()
        .gpu()
        .lock()
        .unwrap()
        .memory()
        .resident_bytes()
        / 4096;
    for i in 0..(pages - held) {
        assert_eq!(write(i << 20), NvStatus::OK, "page {i}");
    }
    assert_eq!(write(pages << 20), NvStatus::ERR_NO_MEMORY);
    assert_eq!(write(0), NvStatus::OK, "written pages stay writable");
}

/// Allocates 8 GiB of video memory for the base tree `b` of `g` (within a 16 GiB quota, far
/// beyond any host memory allowed here) and returns its handle.
fn big_vidmem(g: &mut RmClient<'_>, b: &testing::Base, h: u32) -> u32 {
    let mut p = NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
        size: 8 << 30,
        ..Default::default()
    };
    let (s, mem) = g
        .alloc_status(
            b.client,
            b.device,
            h,
            class::NV01_MEMORY_LOCAL_USER,
            p.as_mut_bytes(),
        )
        .unwrap();
    assert_eq!(s, NvStatus::OK);
    mem
}

/// A hostile guest wrote its whole quota through the mapping-write path and the host grew
/// until the OOM killer came; with the GPU's host memory shared by all, that guest also took
/// its neighbours' room. Each vGPU now stops at its own share and the neighbour keeps writing.
#[test]
fn one_vgpus_writes_stop_at_its_host_memory_share_and_its_neighbour_keeps_writing() {
    let share = 32u64;
    let config = VgpuConfig {
        host_memory_quota: share * 4096,
        ..VgpuConfig::with_quota(1 << 34)
    };
    let greedy = sim_with(
        SimConfig {
            host_memory_bytes: 4 * share * 4096,
            ..SimConfig::default()
        },
        config.clone(),
    );
    let neighbour = greedy.another(8, config).unwrap();
    let mut g = RmClient::open(&greedy).unwrap();
    let mut n = RmClient::open(&neighbour).unwrap();
    let (gb, nb) = (testing::base(&mut g), testing::base(&mut n));
    let (gm, nm) = (
        big_vidmem(&mut g, &gb, 0x5c30_0000),
        big_vidmem(&mut n, &nb, 0x5c30_0000),
    );
    let held = |gfid: u32| {
        greedy
            .rm()
            .backend()
            .gpu()
            .lock()
            .unwrap()
            .memory()
            .owner_resident_bytes(gfid)
            / 4096
    };
    let write = |gfid: u32, client: u32, mem: u32, at: u64| {
        greedy.rm().write_memory(gfid, client, mem, at, &[0xAB; 16])
    };
    let room = share - held(7);
    for i in 0..room {
        assert_eq!(write(7, gb.client, gm, i << 20), NvStatus::OK, "page {i}");
    }
    assert_eq!(
        write(7, gb.client, gm, room << 20),
        NvStatus::ERR_NO_MEMORY,
        "past its share"
    );
    assert_eq!(held(7), share);
    // The GPU has three shares left: the neighbour writes its whole one.
    let room = share - held(8);
    for i in 0..room {
        assert_eq!(write(8, nb.client, nm, i << 20), NvStatus::OK, "page {i}");
    }
    assert_eq!(write(8, nb.client, nm, room << 20), NvStatus::ERR_NO_MEMORY);
    // Freeing the greedy guest's memory gives its share back.
    g.free(gb.client, gb.device, gm).unwrap();
    assert!(held(7) < share);
    let again = big_vidmem(&mut g, &gb, 0x5c30_0001);
    assert_eq!(write(7, gb.client, again, 0), NvStatus::OK);
}

/// 63 vGPUs of 65,536 objects each could make the host hold 4 million; the core bounds all
/// vGPUs' objects together, refusing with `NV_ERR_INSUFFICIENT_RESOURCES` whichever vGPU asks,
/// though each is under its own limit.
#[test]
fn objects_past_the_cores_total_get_insufficient_resources_on_every_vgpu() {
    let a = sim(VgpuConfig::with_quota(1 << 30));
    let b = a.another(8, VgpuConfig::with_quota(1 << 30)).unwrap();
    let mut ga = RmClient::open(&a).unwrap();
    let mut gb = RmClient::open(&b).unwrap();
    let (ba, bb) = (testing::base(&mut ga), testing::base(&mut gb));
    let total = a.rm().total_objects();
    assert_eq!(total, 8, "two base trees of four objects");
    a.rm().set_max_objects(total + 3);
    let event = |g: &mut RmClient<'_>, t: &testing::Base, h: u32| {
        let mut p = Nv0005AllocParameters {
            hParentClient: t.client,
            hSrcResource: t.subdevice,
            hClass: class::NV01_EVENT_OS_EVENT,
            notifyIndex: 0,
            ..Default::default()
        };
        g.alloc_status(
            t.client,
            t.subdevice,
            h,
            class::NV01_EVENT_OS_EVENT,
            p.as_mut_bytes(),
        )
        .unwrap()
        .0
    };
    assert_eq!(event(&mut ga, &ba, 0x5c40_0000), NvStatus::OK);
    assert_eq!(event(&mut ga, &ba, 0x5c40_0001), NvStatus::OK);
    assert_eq!(event(&mut gb, &bb, 0x5c40_0000), NvStatus::OK);
    // Full: both vGPUs are refused, for objects and for clients alike.
    assert_eq!(
        event(&mut ga, &ba, 0x5c40_0002),
        NvStatus::ERR_INSUFFICIENT_RESOURCES
    );
    assert_eq!(
        event(&mut gb, &bb, 0x5c40_0001),
        NvStatus::ERR_INSUFFICIENT_RESOURCES
    );
    let (s, _) = gb
        .alloc_status(0, 0, 0, class::NV01_ROOT_CLIENT, &mut [])
        .unwrap();
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_RESOURCES);
    // Either vGPU's free makes room for the other.
    ga.free(ba.client, ba.subdevice, 0x5c40_0000).unwrap();
    assert_eq!(event(&mut gb, &bb, 0x5c40_0001), NvStatus::OK);
}
