//! The userspace driver and the RM client library over an in-process vGPU on the sim backend.

mod common;

use common::*;
use guest_tools::driver::{DriverError, Setup};
use guest_tools::rmapi::{Node, RmClient, Transport, VgpuTransport};
use rm_abi::alloc_params::Nv0080AllocParameters;
use rm_abi::ctrl::*;
use rm_abi::{class, NvStatus};

#[test]
fn a_client_allocates_queries_and_frees_through_the_queue() {
    let rm = sim_rm();
    let dev = sim_device(&rm, 5);
    let t = VgpuTransport::new(driver(&dev, Setup::Reset));
    assert_eq!(t.driver().info().gfid, 5);
    let mut c = RmClient::open(&t).unwrap();
    let client = c.alloc_root().unwrap();
    let device = c
        .alloc(
            client,
            client,
            class::NV01_DEVICE_0,
            &mut Nv0080AllocParameters::default(),
        )
        .unwrap();
    let sub = c
        .alloc(client, device, class::NV20_SUBDEVICE_0, &mut [0u8; 4])
        .unwrap();
    let mut name = Nv2080CtrlGpuGetNameStringParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_GPU_GET_NAME_STRING, &mut name)
        .unwrap();
    assert!(name.gpuNameString.starts_with(b"NVIDIA H200 (sim)\0"));
    assert_eq!(rm.lock().unwrap().object_count(5), 3);

    // RM errors come back as statuses, driver errors as errnos.
    let err = c
        .control(
            client,
            0xdead,
            NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
            &mut name,
        )
        .unwrap_err();
    assert!(err.status().is_some_and(|s| s != NvStatus::OK), "{err}");
    let dev_fd = t.open(Node::Device(0)).unwrap();
    let err = c
        .escape(
            dev_fd,
            rm_abi::escape::Escape::RM_FREE,
            &mut rm_abi::nvos::Nvos00Parameters::default(),
        )
        .unwrap_err();
    assert_eq!(
        err.errno(),
        Some(libc::EINVAL),
        "RM_FREE is ctl-only: {err}"
    );

    c.free(client, client, client).unwrap();
    assert_eq!(rm.lock().unwrap().object_count(5), 0);
    c.close().unwrap();
    t.close(dev_fd).unwrap();
    assert_eq!(dev.lock().unwrap().open_files(), 0);
}

#[test]
fn a_second_process_attaches_and_a_reset_frees_what_the_first_left() {
    let rm = sim_rm();
    let dev = sim_device(&rm, 2);
    assert!(matches!(
        try_driver(&dev, Setup::Attach),
        Err(DriverError::NothingToAttach)
    ));
    {
        let t = VgpuTransport::new(driver(&dev, Setup::Reset));
        let mut c = RmClient::open(&t).unwrap();
        let client = c.alloc_root().unwrap();
        c.alloc(
            client,
            client,
            class::NV01_DEVICE_0,
            &mut Nv0080AllocParameters::default(),
        )
        .unwrap();
        // The process "dies": nothing is freed or closed.
    }
    assert_eq!(rm.lock().unwrap().object_count(2), 2);
    let t = VgpuTransport::new(driver(&dev, Setup::Attach));
    let mut c = RmClient::open(&t).unwrap();
    c.alloc_root().unwrap();
    assert_eq!(
        rm.lock().unwrap().object_count(2),
        3,
        "attached: nothing was reset"
    );
    drop(c);
    t.driver().reset().unwrap();
    assert_eq!(rm.lock().unwrap().object_count(2), 0);
    assert_eq!(dev.lock().unwrap().open_files(), 0);
    RmClient::open(&t).unwrap();
}

#[test]
fn the_workload_runs_rounds_and_every_semaphore_checks_out() {
    use guest_tools::workload::MemoryMode;
    for mode in [MemoryMode::Video, MemoryMode::Window] {
        workload_in(mode);
    }
}

fn workload_in(mode: guest_tools::workload::MemoryMode) {
    use guest_tools::workload::{self, GpuContext, MemoryMode, RunLimit, TsgSettings};
    let rm = sim_rm();
    let dev = sim_device(&rm, 3);
    let t = VgpuTransport::new(driver(&dev, Setup::Reset));
    assert!(t.os_descriptors(), "protocol 1.1 offers window memory");
    let mut ctx = GpuContext::create(&t, TsgSettings::default(), mode).unwrap();
    assert!(rm.lock().unwrap().object_count(3) >= 12);
    let ring = |tok: u32| t.driver().doorbell(tok);
    let mut seen = 0;
    let before = t.driver().counters().requests;
    let report = workload::run(
        &mut ctx,
        RunLimit {
            rounds: Some(40),
            duration: std::time::Duration::from_secs(60),
        },
        4,
        10_000,
        &ring,
        &mut |r| seen = r,
    )
    .unwrap();
    assert_eq!((report.rounds, seen), (40, 40));
    assert_eq!(report.semaphores_checked, 40 * 4 * 2);
    assert_eq!(
        report.copies_checked, 64,
        "the ring wrapped: every slot was copied"
    );
    assert_eq!(report.memory, mode);
    let counters = t.driver().counters();
    let requests = counters.requests - before;
    match mode {
        MemoryMode::Window => assert_eq!(
            requests, report.idles,
            "window memory: only channel idles go through the queue"
        ),
        MemoryMode::Video => assert!(requests >= 40 * 8, "{requests} mapping requests"),
    }
    assert_eq!(counters.doorbells, 80);
    assert_eq!(counters.doorbells_rejected, 0);
    ctx.destroy().unwrap();
    assert_eq!(rm.lock().unwrap().object_count(3), 0);
}

#[test]
fn hostile_requests_get_errors_and_the_device_keeps_serving() {
    let rm = sim_rm();
    let dev = sim_device(&rm, 4);
    let t = VgpuTransport::new(driver(&dev, Setup::Reset));
    let checks = guest_tools::hostile::run(&t).unwrap();
    assert!(checks.len() >= 11);
    for c in &checks {
        assert!(c.ok, "{}: {}", c.name, c.detail);
    }
    assert_eq!(rm.lock().unwrap().object_count(4), 0);
}

#[test]
fn smi_reports_the_vgpu_and_the_callers_channel_groups() {
    use guest_tools::workload::{GpuContext, MemoryMode, TsgSettings};
    let rm = sim_rm();
    let dev = sim_device(&rm, 6);
    let t = VgpuTransport::new(driver(&dev, Setup::Reset));
    let mut ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Video).unwrap();
    let tsgs = ctx.own_tsgs();
    let client = ctx.objects().client;
    let info = t.driver().info();
    let counters = t.driver().counters();
    let r = guest_tools::smi::gather(ctx.client(), "0000:00:02.0", info, counters, client, &tsgs)
        .unwrap();
    assert_eq!(r.product_name, "NVIDIA H200 (sim)");
    assert!(r.uuid.starts_with("GPU-"), "{}", r.uuid);
    assert_eq!(r.driver_version, rm_abi::NV_VERSION_STRING);
    assert_eq!(r.fb_total_mib, 1024);
    assert!(
        r.fb_free_mib < r.fb_total_mib,
        "the context's 512 KiB of video memory counts"
    );
    assert!(r.engines.iter().any(|e| e.starts_with("GR0")));
    assert_eq!(r.channel_groups.len(), 2);
    assert_eq!(r.channel_groups[0].interleave, "HIGH");
    assert!(r.channel_groups[0].timeslice_us > 0 && r.channel_groups[0].timeslice_us <= 2000);
    let text = r.to_text();
    assert!(text.contains("Product Name"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("Channel Groups") && l.ends_with(" : 2")),
        "{text}"
    );
    ctx.destroy().unwrap();
}
