//! The whole life of a guest program with its GPU memory in the window: OS descriptors over
//! window pages, a channel whose GPFIFO ring, pushbuffer, USERD and semaphore all live there,
//! plain stores for the work and GP_PUT, the BAR0 doorbell, and the semaphore written into the
//! window by the sim GPU running on its real-time clock. Then the refusals, and reset.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rm::abi::alloc_params::*;
use rm::abi::ctrl::*;
use rm::abi::escape::Escape;
use rm::abi::frontend::NvIoctlRegisterFd;
use rm::abi::nvos::*;
use rm::abi::{class, Handle, NvStatus};
use rm::backend::sim::methods::{compute, host, HOPPER_COMPUTE_A};
use rm::backend::sim::pushbuffer::{inc_header, GpEntry};
use rm::backend::sim::userd;
use vgpu::protocol::{features, reg};
use vgpu::{profile, SimHost};
use zerocopy::IntoBytes;

/// Window layout of the GPU memory (the queue and request areas of `common` sit below).
const GPU_MEM: u64 = 0x4_0000;
const GPU_MEM_SIZE: u64 = 0x4_0000;
/// Offsets inside GPU_MEM.
const RING: u64 = 0;
const PUSHBUF: u64 = 0x1_0000;
const SEMAPHORE: u64 = 0x2_0000;
/// USERD: its own OS descriptor.
const USERD_MEM: u64 = 0x9_0000;

fn ok((s, h): (NvStatus, Handle)) -> Handle {
    assert_eq!(s, NvStatus::OK);
    h
}

/// `RM_ALLOC_MEMORY` of an OS descriptor over window bytes `offset..offset + size`.
fn os_descriptor(
    g: &mut Guest,
    dev_fd: i32,
    client: Handle,
    device: Handle,
    new: Handle,
    offset: u64,
    size: u64,
) -> (i32, NvStatus, Handle) {
    let p = Nvos02ParametersWithFd {
        params: Nvos02Parameters {
            hRoot: client,
            hObjectParent: device,
            hObjectNew: new,
            hClass: class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
            pMemory: offset,
            limit: size.wrapping_sub(1),
            ..Default::default()
        },
        fd: -1,
        ..Default::default()
    };
    let (ret, out) = g.ioctl(dev_fd, Escape::RM_ALLOC_MEMORY, &p);
    (ret, NvStatus(out.params.status), out.params.hObjectNew)
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} never happened"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn gpu_work_runs_from_window_memory_and_signals_into_it() {
    let host = SimHost::real_time().unwrap();
    let p = profile::resolve("sim-35c", &host.gpu_info()).unwrap();
    let mut g = Guest::new(host.attach(&p, 5, WINDOW, 1).unwrap());
    assert_ne!(g.r32(reg::FEATURES) & features::WINDOW_MEMORY, 0);
    g.init();
    let ctl = g.open_ctl();
    let dev_fd = g.open_dev(0);
    let (ret, _) = g.ioctl(
        dev_fd,
        Escape::REGISTER_FD,
        &NvIoctlRegisterFd { ctl_fd: ctl },
    );
    assert_eq!(ret, 0);

    let client = ok(g.alloc(ctl, 0, 0, 0, class::NV01_ROOT_CLIENT, &[]));
    let device = ok(g.alloc(
        ctl,
        client,
        client,
        0x5c00_0001,
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    ));
    let vaspace = ok(g.alloc(
        ctl,
        client,
        device,
        0x5c00_0003,
        class::FERMI_VASPACE_A,
        NvVaspaceAllocationParameters::default().as_bytes(),
    ));
    let tsg = ok(g.alloc(
        ctl,
        client,
        device,
        0x5c00_0004,
        class::KEPLER_CHANNEL_GROUP_A,
        NvChannelGroupAllocationParameters {
            hVASpace: vaspace,
            engineType: NV2080_ENGINE_TYPE_GR0,
            ..Default::default()
        }
        .as_bytes(),
    ));
    let ctxshare = ok(g.alloc(
        ctl,
        client,
        tsg,
        0x5c00_0005,
        class::FERMI_CONTEXT_SHARE_A,
        NvCtxshareAllocationParameters {
            hVASpace: vaspace,
            ..Default::default()
        }
        .as_bytes(),
    ));
    let objects_before = host.object_count(5);

    // The window pages become GPU memory: one descriptor for ring + pushbuffer + semaphore,
    // one for USERD.
    let (ret, s, mem) = os_descriptor(
        &mut g,
        dev_fd,
        client,
        device,
        0x5c00_0010,
        GPU_MEM,
        GPU_MEM_SIZE,
    );
    assert_eq!((ret, s, mem), (0, NvStatus::OK, 0x5c00_0010));
    let (_, s, userd_mem) = os_descriptor(&mut g, dev_fd, client, device, 0, USERD_MEM, 0x1000);
    assert_eq!(s, NvStatus::OK);
    assert_ne!(userd_mem, 0, "RM picked a handle");
    assert_eq!(host.object_count(5), objects_before + 2);
    let fb_used = host.rm().lock().unwrap().fb_used(5);
    assert_eq!(
        fb_used, 0,
        "window pages are not charged to the framebuffer"
    );

    let (ret, out) = g.ioctl(
        ctl,
        Escape::RM_MAP_MEMORY_DMA,
        &Nvos46Parameters {
            hClient: client,
            hDevice: device,
            hDma: vaspace,
            hMemory: mem,
            length: GPU_MEM_SIZE,
            ..Default::default()
        },
    );
    assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
    let va = out.dmaOffset;

    let mut ch_p = NvChannelAllocParams {
        gpFifoOffset: va + RING,
        gpFifoEntries: 64,
        hContextShare: ctxshare,
        hVASpace: vaspace,
        ..Default::default()
    };
    ch_p.hUserdMemory[0] = userd_mem;
    let channel = ok(g.alloc(
        ctl,
        client,
        tsg,
        0x5c00_0007,
        class::HOPPER_CHANNEL_GPFIFO_A,
        ch_p.as_bytes(),
    ));
    ok(g.alloc(
        ctl,
        client,
        channel,
        0x5c00_0008,
        class::HOPPER_COMPUTE_A,
        NvGrAllocationParameters::default().as_bytes(),
    ));
    let (s, _) = g.control(
        ctl,
        client,
        tsg,
        NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
        &NvA06cCtrlGpfifoScheduleParams {
            bEnable: 1,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, tok) = g.control(
        ctl,
        client,
        channel,
        NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
        &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
    );
    assert_eq!(s, NvStatus::OK);

    // Work written with plain stores into the window: 20 µs of compute, then a semaphore
    // release of 0xC0FFEE; one GPFIFO entry; GP_PUT = 1 in the window's USERD; doorbell.
    let sem_va = va + SEMAPHORE;
    let words = [
        inc_header(0, host::SET_OBJECT, 1),
        HOPPER_COMPUTE_A,
        inc_header(0, compute::SIM_WORK_NS_LO, 3),
        20_000,
        0,
        0,
        inc_header(0, host::SEM_ADDR_LO, 4),
        sem_va as u32,
        (sem_va >> 32) as u32,
        0xC0FFEE,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::RELEASE | host::SEM_RELEASE_TIMESTAMP,
    ];
    g.wwrite(GPU_MEM + PUSHBUF, words.as_bytes());
    let entry = GpEntry::encode(va + PUSHBUF, words.len() as u32);
    g.wwrite(GPU_MEM + RING, &entry.to_le_bytes());
    g.wwrite(USERD_MEM + userd::GP_PUT, &1u32.to_le_bytes());
    let copies_before = g.dev.stats().snapshot().requests;
    g.ring(tok.workSubmitToken);
    assert_eq!(g.r32(reg::ERROR_STATUS), 0);

    let read_u32 = |g: &Guest, at: u64| {
        let mut b = [0u8; 4];
        g.wread(at, &mut b);
        u32::from_le_bytes(b)
    };
    wait_for("the semaphore release in the window", || {
        read_u32(&g, GPU_MEM + SEMAPHORE) == 0xC0FFEE
    });
    let mut ts = [0u8; 8];
    g.wread(GPU_MEM + SEMAPHORE + 8, &mut ts);
    assert!(u64::from_le_bytes(ts) >= 20_000, "timestamp after the work");
    wait_for("GP_GET written back to the window's USERD", || {
        read_u32(&g, USERD_MEM + userd::GP_GET) == 1
    });
    assert_eq!(
        g.dev.stats().snapshot().requests,
        copies_before,
        "no escape was needed to submit or to see completion"
    );

    // A second round reuses the ring slot after it.
    let words2 = [
        inc_header(0, host::SEM_ADDR_LO, 4),
        sem_va as u32,
        (sem_va >> 32) as u32,
        2,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::RELEASE,
    ];
    g.wwrite(GPU_MEM + PUSHBUF + 0x100, words2.as_bytes());
    let entry2 = GpEntry::encode(va + PUSHBUF + 0x100, words2.len() as u32);
    g.wwrite(GPU_MEM + RING + 8, &entry2.to_le_bytes());
    g.wwrite(USERD_MEM + userd::GP_PUT, &2u32.to_le_bytes());
    g.ring(tok.workSubmitToken);
    wait_for("the second release", || {
        read_u32(&g, GPU_MEM + SEMAPHORE) == 2
    });

    // MAPPING_READ through an RM_MAP_MEMORY of the descriptor sees the same bytes.
    let map_fd = g.open_ctl();
    let (ret, out) = g.ioctl(
        ctl,
        Escape::RM_MAP_MEMORY,
        &Nvos33ParametersWithFd {
            params: Nvos33Parameters {
                hClient: client,
                hDevice: device,
                hMemory: mem,
                length: GPU_MEM_SIZE,
                ..Default::default()
            },
            fd: map_fd,
            ..Default::default()
        },
    );
    assert_eq!((ret, NvStatus(out.params.status)), (0, NvStatus::OK));
    let r = g.submit(&vgpu::protocol::RequestHeader {
        op: vgpu::protocol::op::MAPPING_READ,
        file: map_fd,
        length: 4,
        arg: PARAMS,
        offset: SEMAPHORE,
        ..Default::default()
    });
    assert_eq!(r.ret, 0);
    assert_eq!(read_u32(&g, PARAMS), 2);

    // Freeing the descriptor takes its GPU mapping away; reset frees everything.
    let (ret, out) = g.ioctl(
        ctl,
        Escape::RM_FREE,
        &Nvos00Parameters {
            hRoot: client,
            hObjectParent: device,
            hObjectOld: channel,
            status: 0,
        },
    );
    assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
    g.common_write(vgpu::transport::common::DEVICE_STATUS, &[0]);
    assert_eq!(host.object_count(5), 0);
}

#[test]
fn os_descriptors_outside_the_window_or_misused_are_refused() {
    let host = SimHost::virtual_clock();
    let p = profile::resolve("sim-17c", &host.gpu_info()).unwrap();
    let mut g = Guest::new(host.attach(&p, 2, WINDOW, 1).unwrap());
    g.init();
    let ctl = g.open_ctl();
    let dev_fd = g.open_dev(0);
    let client = ok(g.alloc(ctl, 0, 0, 0, class::NV01_ROOT_CLIENT, &[]));
    let device = ok(g.alloc(
        ctl,
        client,
        client,
        0x5c00_0001,
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    ));
    // The device fd is not registered to the client's ctl fd: the client is not usable there.
    let (_, s, _) = os_descriptor(&mut g, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
    assert_eq!(s, NvStatus::ERR_INVALID_CLIENT);
    let (ret, _) = g.ioctl(
        dev_fd,
        Escape::REGISTER_FD,
        &NvIoctlRegisterFd { ctl_fd: ctl },
    );
    assert_eq!(ret, 0);
    let before = host.object_count(2);
    for (offset, limit, want) in [
        (WINDOW - 0x1000, 0x1fff, NvStatus::ERR_INVALID_ADDRESS),
        (WINDOW, 0xfff, NvStatus::ERR_INVALID_ADDRESS),
        (!0xfff, 0xfff, NvStatus::ERR_INVALID_ADDRESS),
        (GPU_MEM + 8, 0xfff, NvStatus::ERR_INVALID_ADDRESS),
        (GPU_MEM, u64::MAX, NvStatus::ERR_INVALID_LIMIT),
        (GPU_MEM, (1 << 50) - 1, NvStatus::ERR_INVALID_LIMIT),
    ] {
        let (ret, s, _) = os_descriptor(
            &mut g,
            dev_fd,
            client,
            device,
            0x10,
            offset,
            limit.wrapping_add(1),
        );
        assert_eq!(ret, 0);
        assert_eq!(s, want, "offset {offset:#x} limit {limit:#x}");
    }
    // Wrong parent, wrong class, wrong node.
    let (_, s, _) = os_descriptor(&mut g, dev_fd, client, client, 0x10, GPU_MEM, 0x1000);
    assert_eq!(s, NvStatus::ERR_INVALID_OBJECT_PARENT);
    let mut p = Nvos02ParametersWithFd {
        params: Nvos02Parameters {
            hRoot: client,
            hObjectParent: device,
            hObjectNew: 0x10,
            hClass: class::NV01_MEMORY_SYSTEM,
            pMemory: GPU_MEM,
            limit: 0xfff,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, out) = g.ioctl(dev_fd, Escape::RM_ALLOC_MEMORY, &p);
    assert_eq!(NvStatus(out.params.status), NvStatus::ERR_INVALID_CLASS);
    p.params.hClass = class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR;
    let (ret, _) = g.ioctl(ctl, Escape::RM_ALLOC_MEMORY, &p);
    assert_eq!(ret, -22, "RM_ALLOC_MEMORY is a device-node escape");
    assert_eq!(host.object_count(2), before);
    // A duplicate handle.
    let (_, s, _) = os_descriptor(&mut g, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
    assert_eq!(s, NvStatus::OK);
    let (_, s, _) = os_descriptor(&mut g, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
    assert_eq!(s, NvStatus::ERR_INSERT_DUPLICATE_NAME);
    assert_eq!(host.object_count(2), before + 1);
}
