//! A scripted guest drives a vGPU over the sim RM core: identity, escapes through the queue,
//! embedded pointers, doorbells, and file cleanup on reset and teardown.

mod common;

use common::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::frontend::*;
use rm_abi::nvos::*;
use rm_abi::{class, NvStatus, NV_VERSION_STRING};
use rm_core::testing::RmCalls;
use vgpu::protocol::{self, error, intr, op, reg, RequestHeader};
use vgpu::{Counter, InterruptLine};

fn version(cmd: u32, s: &str) -> NvIoctlRmApiVersion {
    let mut v = NvIoctlRmApiVersion {
        cmd,
        ..Default::default()
    };
    v.versionString[..s.len()].copy_from_slice(s.as_bytes());
    v
}

#[test]
fn identity_registers_and_device_config() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 3));
    assert_eq!(g.r32(reg::MAGIC).to_le_bytes(), *b"VGPU");
    assert_eq!(g.r32(reg::VERSION), protocol::PROTOCOL_VERSION);
    assert_eq!(g.r32(reg::GFID), 3);
    assert_eq!(
        u64::from(g.r32(reg::WINDOW_SIZE_LO)) | u64::from(g.r32(reg::WINDOW_SIZE_HI)) << 32,
        WINDOW
    );
    let mut cfg = [0u8; 32];
    g.dev
        .bar_read(0, u64::from(protocol::virtio::DEVICE_CFG), &mut cfg);
    assert_eq!(&cfg[0..4], b"VGPU");
    assert_eq!(u64::from_le_bytes(cfg[8..16].try_into().unwrap()), WINDOW);
    // Unaligned byte reads of registers compose from the table.
    let mut b = [0u8; 2];
    g.dev.bar_read(0, 1, &mut b);
    assert_eq!(&b, b"GP");
}

#[test]
fn escapes_version_check_root_client_control_with_embedded_pointers_and_free() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    let ctl = g.open_ctl();

    let (ret, out) = g.with_rm(ctl, |c| {
        c.ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_STRICT, NV_VERSION_STRING),
        )
        .unwrap()
    });
    assert_eq!((ret, out.reply), (0, NV_RM_API_VERSION_REPLY_RECOGNIZED));
    let (ret, _) = g.with_rm(ctl, |c| {
        c.ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_STRICT, "1.0"),
        )
        .unwrap()
    });
    assert_eq!(ret, -22, "version mismatch fails the ioctl with EINVAL");

    let (s, client) = g.with_rm(ctl, |c| {
        RmCalls::alloc(c, 0, 0, 0, class::NV01_ROOT_CLIENT, &[])
    });
    assert_eq!(s, NvStatus::OK);
    assert_ne!(client, 0);
    assert_eq!(rm.lock().unwrap().object_count(1), 1);

    // A control whose params hold three pointers to string buffers, all in the window.
    let bufs = [PARAMS + 0x100, PARAMS + 0x200, PARAMS + 0x300];
    let p = Nv0000CtrlSystemGetBuildVersionParams {
        sizeOfStrings: 0x100,
        pDriverVersionBuffer: bufs[0],
        pVersionBuffer: bufs[1],
        pTitleBuffer: bufs[2],
        ..Default::default()
    };
    let (s, _) = g.with_rm(ctl, |c| {
        RmCalls::control(
            c,
            client,
            client,
            NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION,
            &p,
        )
    });
    assert_eq!(s, NvStatus::OK);
    let mut v = vec![0u8; NV_VERSION_STRING.len() + 1];
    g.wread(bufs[0], &mut v);
    assert_eq!(&v[..NV_VERSION_STRING.len()], NV_VERSION_STRING.as_bytes());
    assert_eq!(v[NV_VERSION_STRING.len()], 0);

    // The same control with an embedded pointer outside the window is refused by RM.
    let bad = Nv0000CtrlSystemGetBuildVersionParams {
        pTitleBuffer: WINDOW + 0x1000,
        ..p
    };
    let (s, _) = g.with_rm(ctl, |c| {
        RmCalls::control(
            c,
            client,
            client,
            NV0000_CTRL_CMD_SYSTEM_GET_BUILD_VERSION,
            &bad,
        )
    });
    assert_eq!(s, NvStatus::ERR_INVALID_ADDRESS);

    let (ret, out) = g.with_rm(ctl, |c| {
        c.ioctl_raw(
            ctl,
            Escape::RM_FREE,
            &Nvos00Parameters {
                hRoot: client,
                hObjectParent: 0,
                hObjectOld: client,
                status: 0,
            },
        )
        .unwrap()
    });
    assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
    assert_eq!(rm.lock().unwrap().object_count(1), 0);

    let r = g.submit(&RequestHeader {
        op: op::CLOSE,
        file: ctl,
        ..Default::default()
    });
    assert_eq!(r.ret, 0);
    assert_eq!(g.dev.open_files(), 0);
    let snap = g.dev.stats().snapshot();
    assert_eq!(snap.requests, 8);
    assert_eq!(snap.request_errors, 0);
    assert_eq!(u64::from(g.r32(reg::REQUESTS_LO)), snap.requests);
}

#[test]
fn argument_and_parameter_pointers_outside_the_window_fault() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    let ctl = g.open_ctl();
    let request = rm_abi::ioctl::IoctlRequest::encode(Escape::RM_FREE as u8, 16).unwrap();
    for arg in [WINDOW, WINDOW - 8, u64::MAX - 4] {
        let r = g.submit(&RequestHeader {
            op: op::IOCTL,
            file: ctl,
            request,
            arg,
            ..Default::default()
        });
        assert_eq!(r.ret, -14, "arg {arg:#x}");
    }
    // pAllocParms outside the window: RM cannot copy the params in.
    let (s, client) = g.with_rm(ctl, |c| {
        RmCalls::alloc(c, 0, 0, 0, class::NV01_ROOT_CLIENT, &[])
    });
    assert_eq!(s, NvStatus::OK);
    let arg = Nvos64Parameters {
        hRoot: client,
        hObjectParent: client,
        hObjectNew: 0x5c00_0001,
        hClass: class::NV01_DEVICE_0,
        pAllocParms: WINDOW + 64,
        ..Default::default()
    };
    let (ret, out) = g.with_rm(ctl, |c| c.ioctl_raw(ctl, Escape::RM_ALLOC, &arg).unwrap());
    assert!(
        ret == -14 || NvStatus(out.status) != NvStatus::OK,
        "ret {ret} status {:#x}",
        out.status
    );
    assert_eq!(
        rm.lock().unwrap().object_count(1),
        1,
        "no device was created"
    );
}

#[test]
fn doorbell_reaches_own_channels_and_refuses_foreign_tokens() {
    let rm = sim_rm();
    let mut a = Guest::new(sim_device(&rm, 1));
    let mut b = Guest::new(sim_device(&rm, 2));
    a.init();
    b.init();
    let (ctl_a, ctl_b) = (a.open_ctl(), b.open_ctl());
    let ta = build_channel(&mut a, ctl_a);
    let tb = build_channel(&mut b, ctl_b);
    let tok = |g: &mut Guest, ctl, t: Tree| {
        let (s, p) = g.with_rm(ctl, |c| {
            RmCalls::control(
                c,
                t.client,
                t.channel,
                NVC36F_CTRL_CMD_GPFIFO_GET_WORK_SUBMIT_TOKEN,
                &NvC36fCtrlGpfifoGetWorkSubmitTokenParams::default(),
            )
        });
        assert_eq!(s, NvStatus::OK);
        p.workSubmitToken
    };
    let (tok_a, tok_b) = (tok(&mut a, ctl_a, ta), tok(&mut b, ctl_b, tb));
    assert_ne!(tok_a, tok_b);

    a.ring(tok_a);
    assert_eq!(a.dev.stats().get(Counter::Doorbells), 1);
    assert_eq!(a.r32(reg::ERROR_STATUS), 0);

    a.ring(tok_b);
    a.ring(0xdead_beef);
    assert_eq!(a.dev.stats().get(Counter::Doorbells), 1);
    assert_eq!(a.dev.stats().get(Counter::DoorbellsRejected), 2);
    assert_eq!(a.r32(reg::DOORBELLS_REJECTED_LO), 2);
    assert_eq!(a.r32(reg::LAST_REJECTED_TOKEN), 0xdead_beef);
    assert_eq!(
        a.r32(reg::ERROR_STATUS) & error::DOORBELL_REJECTED,
        error::DOORBELL_REJECTED
    );
    assert_ne!(a.r32(reg::INTR_STATUS) & intr::ERROR, 0);
    // Acknowledge (W1C) clears the flags.
    a.w32(reg::ERROR_STATUS, error::ALL);
    a.w32(reg::INTR_STATUS, intr::ALL);
    assert_eq!(a.r32(reg::ERROR_STATUS), 0);
    assert_eq!(a.r32(reg::INTR_STATUS), 0);

    // b still owns its channel.
    b.ring(tok_b);
    assert_eq!(b.dev.stats().get(Counter::Doorbells), 1);
    // A doorbell written with the wrong width is flagged, not run.
    a.dev.bar_write(0, u64::from(reg::DOORBELL), &[1, 2]);
    assert_ne!(a.r32(reg::ERROR_STATUS) & error::BAD_ACCESS, 0);
    assert_eq!(a.dev.stats().get(Counter::Doorbells), 1);
}

#[test]
fn reset_closes_files_and_frees_objects_then_serves_again() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    let ctl = g.open_ctl();
    build_channel(&mut g, ctl);
    assert!(rm.lock().unwrap().object_count(1) > 5);
    // Requests posted but never notified when the reset comes.
    g.post(&RequestHeader {
        op: op::OPEN,
        request: protocol::node::CTL,
        ..Default::default()
    });
    g.post(&RequestHeader {
        op: op::CLOSE,
        file: ctl,
        ..Default::default()
    });
    g.common_write(vgpu::protocol::virtio::common::DEVICE_STATUS, &[0]);
    assert_eq!(g.status(), 0);
    assert_eq!(g.dev.open_files(), 0);
    assert_eq!(rm.lock().unwrap().object_count(1), 0);
    // The stale file id is gone; a fresh setup works.
    g.init();
    let r = g.submit(&RequestHeader {
        op: op::CLOSE,
        file: ctl,
        ..Default::default()
    });
    assert_eq!(r.ret, -9);
    let ctl = g.open_ctl();
    let (s, _) = g.with_rm(ctl, |c| {
        RmCalls::alloc(c, 0, 0, 0, class::NV01_ROOT_CLIENT, &[])
    });
    assert_eq!(s, NvStatus::OK);
}

#[test]
fn dropping_the_device_tears_the_vgpu_down() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 4));
    g.init();
    let ctl = g.open_ctl();
    build_channel(&mut g, ctl);
    assert!(rm.lock().unwrap().object_count(4) > 0);
    drop(g);
    assert_eq!(rm.lock().unwrap().total_objects(), 0);
    // The GFID can be attached again.
    let _again = sim_device(&rm, 4);
}

#[test]
fn mapping_copies_reach_the_mapped_memory() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    let ctl = g.open_ctl();
    let t = build_channel(&mut g, ctl);
    let mem_p = rm_abi::alloc_params::NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
        size: 0x2000,
        ..Default::default()
    };
    let (s, mem) = g.with_rm(ctl, |c| {
        RmCalls::alloc(
            c,
            t.client,
            t.device,
            0x5c00_0100,
            class::NV01_MEMORY_SYSTEM,
            zerocopy::IntoBytes::as_bytes(&mem_p),
        )
    });
    assert_eq!(s, NvStatus::OK);
    let map_fd = g.open_ctl();
    let p = Nvos33ParametersWithFd {
        params: Nvos33Parameters {
            hClient: t.client,
            hDevice: t.device,
            hMemory: mem,
            length: 0x2000,
            ..Default::default()
        },
        fd: map_fd,
        ..Default::default()
    };
    let (ret, out) = g.with_rm(ctl, |c| {
        c.ioctl_raw(ctl, Escape::RM_MAP_MEMORY, &p).unwrap()
    });
    assert_eq!((ret, NvStatus(out.params.status)), (0, NvStatus::OK));

    g.wwrite(PARAMS, b"semaphore!");
    let w = g.submit(&RequestHeader {
        op: op::MAPPING_WRITE,
        file: map_fd,
        length: 10,
        arg: PARAMS,
        offset: 0x1000,
        ..Default::default()
    });
    assert_eq!(w.ret, 0);
    let r = g.submit(&RequestHeader {
        op: op::MAPPING_READ,
        file: map_fd,
        length: 10,
        arg: PARAMS + 0x800,
        offset: 0x1000,
        ..Default::default()
    });
    assert_eq!(r.ret, 0);
    let mut back = [0u8; 10];
    g.wread(PARAMS + 0x800, &mut back);
    assert_eq!(&back, b"semaphore!");
    // Past the mapping's end, a file without a mapping, a buffer outside the window.
    let r = g.submit(&RequestHeader {
        op: op::MAPPING_READ,
        file: map_fd,
        length: 16,
        arg: PARAMS,
        offset: 0x1ff8,
        ..Default::default()
    });
    assert_eq!(r.ret, -14);
    let r = g.submit(&RequestHeader {
        op: op::MAPPING_READ,
        file: ctl,
        length: 16,
        arg: PARAMS,
        ..Default::default()
    });
    assert_eq!(r.ret, -22);
    let r = g.submit(&RequestHeader {
        op: op::MAPPING_WRITE,
        file: map_fd,
        length: 16,
        arg: WINDOW - 8,
        ..Default::default()
    });
    assert_eq!(r.ret, -14);
}

struct Level(std::sync::Arc<std::sync::atomic::AtomicBool>);
impl InterruptLine for Level {
    fn set_level(&self, asserted: bool) {
        self.0.store(asserted, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn interrupt_line_follows_status_and_enable() {
    use std::sync::atomic::Ordering::SeqCst;
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    let line = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    g.dev.set_interrupt_line(Box::new(Level(line.clone())));
    g.init();
    g.open_ctl();
    assert!(!line.load(SeqCst), "polling by default: INTR_ENABLE is 0");
    assert_ne!(g.r32(reg::INTR_STATUS) & intr::QUEUE, 0);
    g.w32(reg::INTR_ENABLE, intr::QUEUE);
    assert!(line.load(SeqCst));
    // Reading the ISR acknowledges the queue cause.
    let mut isr = [0u8];
    g.dev
        .bar_read(0, u64::from(protocol::virtio::ISR), &mut isr);
    assert_eq!(isr[0], 1);
    assert!(!line.load(SeqCst));
    g.open_ctl();
    assert!(line.load(SeqCst));
    g.w32(reg::INTR_STATUS, intr::QUEUE);
    assert!(!line.load(SeqCst));
    assert_eq!(g.dev.stats().snapshot().interrupts, 2, "two rising edges");
}
