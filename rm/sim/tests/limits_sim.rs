//! What one vGPU may hold is bounded by its configuration, whatever a guest asks for: channels
//! (so a quarter-GPU vGPU cannot take a runlist's every channel) and RM objects of any class
//! (each costs host memory). Past a limit the allocation gets the driver's answer for a full
//! GPU, `NV_ERR_NO_FREE_FIFOS` or `NV_ERR_INSUFFICIENT_RESOURCES`, and a freed object makes
//! room again. The oracle is the configured limit: counted allocations succeed up to it.

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
            hVASpace: t.vaspace,
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
