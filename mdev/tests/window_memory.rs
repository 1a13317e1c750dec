//! The whole life of a guest program with its GPU memory in the window: OS descriptors over
//! window pages, a channel whose GPFIFO ring, pushbuffer, USERD and semaphore all live there,
//! plain stores for the work and GP_PUT, the BAR0 doorbell, and the semaphore written into the
//! window by the sim GPU running on its real-time clock. Then the refusals, and reset.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mdev::profile;
use mdev::sim_host::{GpuHost as _, SimHost};
use rm_abi::alloc_params::*;
use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlRegisterFd;
use rm_abi::methods::{compute, host, HOPPER_COMPUTE_A};
use rm_abi::nvos::*;
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::userd;
use rm_abi::{class, NvStatus};
use rm_core::testing::RmCalls;
use vgpu::protocol::{features, reg};
use zerocopy::IntoBytes;

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
    let w = window_channel(&mut g);
    assert_eq!(w.mem, 0x5c00_0010);
    assert_ne!(w.userd_mem, 0, "RM picked a handle");
    assert_eq!(
        host.object_count(5),
        9,
        "client, device, VA space, TSG, context share, 2 descriptors, channel, compute"
    );
    let fb_used = host.rm().lock().unwrap().fb_used(5);
    assert_eq!(
        fb_used, 0,
        "window pages are not charged to the framebuffer"
    );
    let (ctl, client, device, channel, mem, va) =
        (w.ctl, w.client, w.device, w.channel, w.mem, w.va);
    let tok = w.token;

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
    g.ring(tok);
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
    g.ring(tok);
    wait_for("the second release", || {
        read_u32(&g, GPU_MEM + SEMAPHORE) == 2
    });

    // MAPPING_READ through an RM_MAP_MEMORY of the descriptor sees the same bytes.
    let map_fd = g.open_ctl();
    let (ret, out) = g.with_rm(ctl, |c| {
        c.ioctl_raw(
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
        )
        .unwrap()
    });
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
    let (ret, out) = g.with_rm(ctl, |c| {
        c.ioctl_raw(
            ctl,
            Escape::RM_FREE,
            &Nvos00Parameters {
                hRoot: client,
                hObjectParent: device,
                hObjectOld: channel,
                status: 0,
            },
        )
        .unwrap()
    });
    assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
    g.common_write(vgpu::protocol::virtio::common::DEVICE_STATUS, &[0]);
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
    g.with_rm(ctl, |c| {
        let client = ok(RmCalls::alloc(c, 0, 0, 0, class::NV01_ROOT_CLIENT, &[]));
        let device = ok(RmCalls::alloc(
            c,
            client,
            client,
            0x5c00_0001,
            class::NV01_DEVICE_0,
            Nv0080AllocParameters::default().as_bytes(),
        ));
        // The device fd is not registered to the client's ctl fd: the client is not usable there.
        let (_, s, _) = os_descriptor(c, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
        assert_eq!(s, NvStatus::ERR_INVALID_CLIENT);
        let (ret, _) = c
            .ioctl_raw(
                dev_fd,
                Escape::REGISTER_FD,
                &NvIoctlRegisterFd { ctl_fd: ctl },
            )
            .unwrap();
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
                c,
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
        let (_, s, _) = os_descriptor(c, dev_fd, client, client, 0x10, GPU_MEM, 0x1000);
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
        let (_, out) = c.ioctl_raw(dev_fd, Escape::RM_ALLOC_MEMORY, &p).unwrap();
        assert_eq!(NvStatus(out.params.status), NvStatus::ERR_INVALID_CLASS);
        p.params.hClass = class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR;
        let (ret, _) = c.ioctl_raw(ctl, Escape::RM_ALLOC_MEMORY, &p).unwrap();
        assert_eq!(ret, -22, "RM_ALLOC_MEMORY is a device-node escape");
        assert_eq!(host.object_count(2), before);
        // A duplicate handle.
        let (_, s, _) = os_descriptor(c, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
        assert_eq!(s, NvStatus::OK);
        let (_, s, _) = os_descriptor(c, dev_fd, client, device, 0x10, GPU_MEM, 0x1000);
        assert_eq!(s, NvStatus::ERR_INSERT_DUPLICATE_NAME);
        assert_eq!(host.object_count(2), before + 1);
    });
}
