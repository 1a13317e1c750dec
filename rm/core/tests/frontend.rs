//! The frontend and dispatcher path: request decoding, XFER unwrapping and its limit, exact
//! sizes, device-node rules, copy-out, and the frontend escapes' answers.

use rm_core::testing::fixtures as common;

use common::*;
use rm_abi::escape::Escape;
use rm_abi::frontend::*;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::*;
use rm_abi::{class, NvStatus, NV_VERSION_STRING};
use rm_core::{Errno, GuestMemory, Node, Rm};
use zerocopy::IntoBytes;

fn setup() -> (Rm<FakeBackend>, Guest) {
    let mut rm = Rm::new(FakeBackend::default());
    let g = Guest::new(&mut rm, 1, 1 << 30);
    (rm, g)
}

fn version(cmd: u32, s: &str) -> NvIoctlRmApiVersion {
    let mut v = NvIoctlRmApiVersion {
        cmd,
        ..Default::default()
    };
    v.versionString[..s.len()].copy_from_slice(s.as_bytes());
    v
}

#[test]
fn version_check_strict_relaxed_query() {
    let (mut rm, mut g) = setup();
    let ctl = g.ctl;
    let (ret, out) = g.escape(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_STRICT, NV_VERSION_STRING),
    );
    assert_eq!((ret, out.reply), (0, NV_RM_API_VERSION_REPLY_RECOGNIZED));
    let (ret, out) = g.escape(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_STRICT, "580.159.03"),
    );
    assert_eq!(ret, Errno::Inval.ret());
    assert!(
        out.versionString.starts_with(NV_VERSION_STRING.as_bytes()),
        "driver version copied out on mismatch"
    );
    let (ret, _) = g.escape(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_RELAXED, "580.1"),
    );
    assert_eq!(ret, 0);
    let (ret, _) = g.escape(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_RELAXED, "575.51.02"),
    );
    assert_eq!(ret, Errno::Inval.ret());
    let (ret, out) = g.escape(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_QUERY, ""),
    );
    assert_eq!(ret, 0);
    assert!(out.versionString.starts_with(NV_VERSION_STRING.as_bytes()));
    let dev = g.dev;
    let (ret, _) = g.escape(
        &mut rm,
        dev,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_QUERY, ""),
    );
    assert_eq!(ret, Errno::Inval.ret(), "ctl-only");
}

#[test]
fn sizes_nodes_and_unknown_escapes() {
    let (mut rm, mut g) = setup();
    let (gfid, ctl, dev) = (g.gfid, g.ctl, g.dev);
    // RM_CONTROL with a wrong size, on the wrong node, and an unknown escape number.
    let wrong = IoctlRequest::encode(Escape::RM_CONTROL as u8, 33).unwrap();
    assert_eq!(
        rm.ioctl(gfid, ctl, wrong, GUEST_BASE, &mut g.mem),
        Errno::Inval.ret()
    );
    let ctl_req = IoctlRequest::encode(Escape::RM_CONTROL as u8, 32).unwrap();
    assert_eq!(
        rm.ioctl(gfid, dev, ctl_req, GUEST_BASE, &mut g.mem),
        Errno::Inval.ret()
    );
    assert_eq!(
        rm.ioctl(
            gfid,
            ctl,
            IoctlRequest::encode(0x2C, 8).unwrap(),
            GUEST_BASE,
            &mut g.mem
        ),
        Errno::Inval.ret()
    );
    // Direction and type bits are ignored, as in nvidia_ioctl.
    let odd_type = (ctl_req & !0xFF00) | (u32::from(b'X') << 8);
    assert_eq!(rm.ioctl(gfid, ctl, odd_type, GUEST_BASE, &mut g.mem), 0);
    // Unknown fd and unknown GFID.
    assert_eq!(
        rm.ioctl(gfid, 999, ctl_req, GUEST_BASE, &mut g.mem),
        Errno::BadFd.ret()
    );
    assert_eq!(
        rm.ioctl(9, ctl, ctl_req, GUEST_BASE, &mut g.mem),
        Errno::BadFd.ret()
    );
    // An argument outside guest memory.
    assert_eq!(
        rm.ioctl(gfid, ctl, ctl_req, 0x10, &mut g.mem),
        Errno::Fault.ret()
    );
    // RM_ALLOC of a device on the device node is refused; of an event it is allowed.
    let mut g2 = Guest::new(&mut rm, 1, 1 << 30);
    let t = build_tree(&mut rm, &mut g2);
    let dev2 = g2.dev;
    let reg = NvIoctlRegisterFd { ctl_fd: g2.ctl };
    assert_eq!(g2.escape(&mut rm, dev2, Escape::REGISTER_FD, &reg).0, 0);
    let a = Nvos64Parameters {
        hRoot: t.client,
        hObjectParent: t.client,
        hClass: class::NV01_DEVICE_0,
        ..Default::default()
    };
    assert_eq!(
        g2.escape(&mut rm, dev2, Escape::RM_ALLOC, &a).0,
        Errno::Inval.ret()
    );
    let ev = rm_abi::alloc_params::Nv0005AllocParameters {
        hParentClient: t.client,
        hSrcResource: t.subdevice,
        hClass: class::NV01_EVENT_OS_EVENT,
        notifyIndex: 1,
        data: 0,
    };
    g2.mem.write(GUEST_BASE + 0x1000, ev.as_bytes()).unwrap();
    let a = Nvos64Parameters {
        hRoot: t.client,
        hObjectParent: t.subdevice,
        hObjectNew: 0x5c00_0100,
        hClass: class::NV01_EVENT_OS_EVENT,
        pAllocParms: GUEST_BASE + 0x1000,
        ..Default::default()
    };
    let (ret, out) = g2.escape(&mut rm, dev2, Escape::RM_ALLOC, &a);
    assert_eq!(
        (ret, NvStatus(out.status)),
        (0, NvStatus::OK),
        "event on the registered device fd"
    );
}

#[test]
fn xfer_unwraps_and_enforces_its_limit() {
    let (mut rm, mut g) = setup();
    let (gfid, ctl) = (g.gfid, g.ctl);
    let (ret, out) = g.escape_xfer(
        &mut rm,
        ctl,
        Escape::CHECK_VERSION_STR,
        &version(NV_RM_API_VERSION_CMD_QUERY, ""),
    );
    assert_eq!(ret, 0);
    assert!(out.versionString.starts_with(NV_VERSION_STRING.as_bytes()));
    let xreq = IoctlRequest::encode(Escape::IOCTL_XFER_CMD as u8, 16).unwrap();
    for (cmd, size, want) in [
        (Escape::CARD_INFO as u32, 16385, Errno::Inval),
        (Escape::IOCTL_XFER_CMD as u32, 16, Errno::Inval),
        (0x1_0000 + Escape::RM_CONTROL as u32, 32, Errno::Inval),
    ] {
        let x = NvIoctlXfer {
            cmd,
            size,
            ptr: GUEST_BASE,
        };
        g.mem.write(GUEST_BASE + 0x800, x.as_bytes()).unwrap();
        assert_eq!(
            rm.ioctl(gfid, ctl, xreq, GUEST_BASE + 0x800, &mut g.mem),
            want.ret(),
            "cmd {cmd:#x} size {size}"
        );
    }
    // Behind a faulting pointer every command faults in the copy-in, as in nv.c, which copies
    // in before its escape switch refuses a nested XFER or a command above a byte.
    for cmd in [
        Escape::RM_CONTROL as u32,
        Escape::IOCTL_XFER_CMD as u32,
        0x1_0000 + Escape::RM_CONTROL as u32,
    ] {
        let x = NvIoctlXfer {
            cmd,
            size: 32,
            ptr: GUEST_BASE + GUEST_SIZE as u64,
        };
        g.mem.write(GUEST_BASE + 0x800, x.as_bytes()).unwrap();
        assert_eq!(
            rm.ioctl(gfid, ctl, xreq, GUEST_BASE + 0x800, &mut g.mem),
            Errno::Fault.ret(),
            "cmd {cmd:#x}"
        );
    }
    // A 16384-byte card-info array through XFER: accepted, 227 entries, the first ours.
    let big = GUEST_BASE + 0x8000;
    let x = NvIoctlXfer {
        cmd: Escape::CARD_INFO as u32,
        size: 16384,
        ptr: big,
    };
    g.mem.write(GUEST_BASE + 0x800, x.as_bytes()).unwrap();
    assert_eq!(rm.ioctl(gfid, ctl, xreq, GUEST_BASE + 0x800, &mut g.mem), 0);
    let mut first = [0u8; 72];
    g.mem.read(big, &mut first).unwrap();
    let ci: NvIoctlCardInfo = rm_abi::read_struct(&first).unwrap();
    assert_eq!(
        (
            ci.valid,
            ci.pci_info.vendor_id,
            ci.pci_info.device_id,
            ci.gpu_id
        ),
        (1, 0x10de, 0x2335, 0x600)
    );
    // XFER with the wrong outer size.
    assert_eq!(
        rm.ioctl(
            gfid,
            ctl,
            IoctlRequest::encode(211, 24).unwrap(),
            GUEST_BASE + 0x800,
            &mut g.mem
        ),
        Errno::Inval.ret()
    );
}

#[test]
fn frontend_escapes_answer_like_the_driver() {
    let (mut rm, mut g) = setup();
    let (ctl, dev) = (g.ctl, g.dev);
    // Card info needs room for one entry.
    let (ret, _) = g.escape(&mut rm, ctl, Escape::CARD_INFO, &[0u8; 72]);
    assert_eq!(ret, 0);
    // Sys params: set once, same value again fine, a different one EBUSY.
    let sp = NvIoctlSysParams {
        memblock_size: 1 << 30,
    };
    assert_eq!(g.escape(&mut rm, ctl, Escape::SYS_PARAMS, &sp).0, 0);
    assert_eq!(g.escape(&mut rm, ctl, Escape::SYS_PARAMS, &sp).0, 0);
    assert_eq!(
        g.escape(
            &mut rm,
            ctl,
            Escape::SYS_PARAMS,
            &NvIoctlSysParams {
                memblock_size: 1 << 27
            }
        )
        .0,
        Errno::Busy.ret()
    );
    // NUMA info on the device node reports no node and the memory block size.
    let (ret, numa) = g.escape(&mut rm, dev, Escape::NUMA_INFO, &NvIoctlNumaInfo::default());
    assert_eq!((ret, numa.nid, numa.memblock_size), (0, -1, 1 << 30));
    assert_eq!(
        g.escape(&mut rm, ctl, Escape::NUMA_INFO, &NvIoctlNumaInfo::default())
            .0,
        Errno::Inval.ret()
    );
    assert_eq!(
        g.escape(
            &mut rm,
            dev,
            Escape::SET_NUMA_STATUS,
            &NvIoctlSetNumaStatus::default()
        )
        .0,
        Errno::Acces.ret()
    );
    // Attach GPUs: once per fd, only our id.
    assert_eq!(
        g.escape(&mut rm, ctl, Escape::ATTACH_GPUS_TO_FD, &[0x600u32, 0])
            .0,
        0
    );
    assert_eq!(
        g.escape(&mut rm, ctl, Escape::ATTACH_GPUS_TO_FD, &[0x600u32])
            .0,
        Errno::Inval.ret()
    );
    let ctl2 = rm.open(1, Node::Ctl).unwrap();
    assert_eq!(
        g.escape(&mut rm, ctl2, Escape::ATTACH_GPUS_TO_FD, &[0x700u32])
            .0,
        Errno::Inval.ret()
    );
    // Register fd: once, only to a ctl fd, never to itself.
    assert_eq!(
        g.escape(
            &mut rm,
            dev,
            Escape::REGISTER_FD,
            &NvIoctlRegisterFd { ctl_fd: dev }
        )
        .0,
        Errno::Inval.ret()
    );
    assert_eq!(
        g.escape(
            &mut rm,
            dev,
            Escape::REGISTER_FD,
            &NvIoctlRegisterFd { ctl_fd: ctl }
        )
        .0,
        0
    );
    assert_eq!(
        g.escape(
            &mut rm,
            dev,
            Escape::REGISTER_FD,
            &NvIoctlRegisterFd { ctl_fd: ctl2 }
        )
        .0,
        Errno::Inval.ret()
    );
    // Wait-open-complete on either node; status code for our PCI location only.
    let (ret, w) = g.escape(
        &mut rm,
        dev,
        Escape::WAIT_OPEN_COMPLETE,
        &NvIoctlWaitOpenComplete {
            rc: 5,
            adapterStatus: 5,
        },
    );
    assert_eq!((ret, w.rc, w.adapterStatus), (0, 0, 0));
    assert_eq!(
        g.escape(
            &mut rm,
            ctl,
            Escape::STATUS_CODE,
            &NvIoctlStatusCode {
                bus: 0,
                slot: 6,
                ..Default::default()
            }
        )
        .0,
        0
    );
    assert_eq!(
        g.escape(
            &mut rm,
            ctl,
            Escape::STATUS_CODE,
            &NvIoctlStatusCode {
                bus: 1,
                slot: 0,
                ..Default::default()
            }
        )
        .0,
        Errno::Inval.ret()
    );
    // OS events need a client of this fd.
    let (_, ev) = g.escape(
        &mut rm,
        dev,
        Escape::ALLOC_OS_EVENT,
        &NvIoctlAllocOsEvent {
            hClient: 0xC1D0_0001,
            hDevice: 1,
            fd: 7,
            Status: 0,
        },
    );
    assert_eq!(NvStatus(ev.Status), NvStatus::ERR_INVALID_CLIENT);
    let client = g.client(&mut rm);
    let (_, ev) = g.escape(
        &mut rm,
        dev,
        Escape::ALLOC_OS_EVENT,
        &NvIoctlAllocOsEvent {
            hClient: client,
            hDevice: 1,
            fd: 7,
            Status: 0,
        },
    );
    assert_eq!(NvStatus(ev.Status), NvStatus::OK);
    let (_, ev) = g.escape(
        &mut rm,
        dev,
        Escape::FREE_OS_EVENT,
        &NvIoctlFreeOsEvent {
            hClient: client,
            hDevice: 1,
            fd: 7,
            Status: 0,
        },
    );
    assert_eq!(NvStatus(ev.Status), NvStatus::OK);
}

#[test]
fn rm_errors_go_in_the_status_field() {
    let (mut rm, mut g) = setup();
    let t = build_tree(&mut rm, &mut g);
    // Unknown control, wrong size, NULL/size mismatch, kernel-only flags, unsupported class.
    let base = Nvos54Parameters {
        hClient: t.client,
        hObject: t.subdevice,
        cmd: 0x2080_DEAD,
        params: GUEST_BASE + 0x1000,
        paramsSize: 4,
        ..Default::default()
    };
    let (ret, out) = g.escape(&mut rm, g.ctl, Escape::RM_CONTROL, &base);
    assert_eq!(
        (ret, NvStatus(out.status)),
        (0, NvStatus::ERR_NOT_SUPPORTED)
    );
    let sized = Nvos54Parameters {
        cmd: rm_abi::ctrl::NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        paramsSize: 64,
        ..base
    };
    assert_eq!(
        NvStatus(
            g.escape(&mut rm, g.ctl, Escape::RM_CONTROL, &sized)
                .1
                .status
        ),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    let null = Nvos54Parameters {
        params: 0,
        paramsSize: 132,
        ..sized
    };
    assert_eq!(
        NvStatus(g.escape(&mut rm, g.ctl, Escape::RM_CONTROL, &null).1.status),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    let flags = Nvos54Parameters {
        flags: NVOS54_FLAGS_LOCK_BYPASS,
        paramsSize: 132,
        ..sized
    };
    assert_eq!(
        NvStatus(
            g.escape(&mut rm, g.ctl, Escape::RM_CONTROL, &flags)
                .1
                .status
        ),
        NvStatus::ERR_INVALID_FLAGS
    );
    let (s, _) = g.alloc(
        &mut rm,
        t.client,
        t.device,
        0,
        class::RM_USER_SHARED_DATA,
        &[],
    );
    assert_eq!(s, NvStatus::ERR_INVALID_CLASS);
    // GET_INTERLEAVE_LEVEL is NOT_SUPPORTED, as on the real driver; MAKE_REALTIME needs privilege.
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.tsg,
        rm_abi::ctrl::NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL,
        &rm_abi::ctrl::NvA06cCtrlInterleaveLevelParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_NOT_SUPPORTED);
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.tsg,
        rm_abi::ctrl::NVA06C_CTRL_CMD_MAKE_REALTIME,
        &rm_abi::ctrl::NvA06cCtrlMakeRealtimeParams { bRealtime: 1 },
    );
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    // A control of one class on an object of another.
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.device,
        rm_abi::ctrl::NVA06C_CTRL_CMD_GET_TIMESLICE,
        &rm_abi::ctrl::NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_NOT_SUPPORTED);
    // Quota: video memory beyond the vGPU's framebuffer.
    let big = rm_abi::alloc_params::NvMemoryAllocationParams {
        size: 2 << 30,
        ..Default::default()
    };
    let (s, _) = g.alloc(
        &mut rm,
        t.client,
        t.device,
        0,
        class::NV01_MEMORY_LOCAL_USER,
        big.as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_NO_MEMORY);
    // Root classes are rewritten to NV01_ROOT_CLIENT and the handle lands in the guest range.
    let a = Nvos21Parameters {
        hClass: class::NV01_ROOT_NON_PRIV,
        ..Default::default()
    };
    let (ret, out) = g.escape(&mut rm, g.ctl, Escape::RM_ALLOC, &a);
    assert_eq!(
        (ret, out.hClass, NvStatus(out.status)),
        (0, class::NV01_ROOT_CLIENT, NvStatus::OK)
    );
    assert_eq!(out.hObjectNew & 0xFFF0_0000, 0xC1D0_0000);
    // A duplicate requested client handle.
    let dup = Nvos21Parameters {
        hObjectNew: out.hObjectNew,
        hClass: class::NV01_ROOT,
        ..Default::default()
    };
    assert_eq!(
        NvStatus(g.escape(&mut rm, g.ctl, Escape::RM_ALLOC, &dup).1.status),
        NvStatus::ERR_INSERT_DUPLICATE_NAME
    );
}

#[test]
fn identity_controls_answer_from_the_gpu_and_the_vgpu() {
    use rm_abi::ctrl::*;
    let (mut rm, mut g) = setup();
    let t = build_tree(&mut rm, &mut g);
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        &Nv2080CtrlGpuGetNameStringParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(p.gpuNameString.starts_with(b"NVIDIA H200 (fake)\0"));
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_GID_INFO,
        &Nv2080CtrlGpuGetGidInfoParams::default(),
    );
    assert_eq!((s, p.length), (NvStatus::OK, 41));
    assert!(p
        .data
        .starts_with(b"GPU-11111111-1111-1111-1111-111111111111\0"));
    let mut fb = Nv2080CtrlFbGetInfoV2Params {
        fbInfoListSize: 2,
        ..Default::default()
    };
    fb.fbInfoList[0].index = 0x08;
    fb.fbInfoList[1].index = 0x16;
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_FB_GET_INFO_V2,
        &fb,
    );
    assert_eq!(s, NvStatus::OK);
    assert_eq!(
        p.fbInfoList[0].data,
        1 << 20,
        "total = the 1 GiB quota, in KiB"
    );
    assert_eq!(
        p.fbInfoList[1].data,
        (1 << 20) - 64,
        "free = quota minus the 64 KiB USERD"
    );
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.device,
        NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2,
        &Nv0080CtrlGpuGetClasslistV2Params::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(p.classList[..p.numClasses as usize].contains(&class::HOPPER_CHANNEL_GPFIFO_A));
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
        &Nv2080CtrlGpuGetEnginesV2Params::default(),
    );
    assert_eq!((s, p.engineCount), (NvStatus::OK, 3));
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.client,
        NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS,
        &Nv0000CtrlGpuGetAttachedIdsParams::default(),
    );
    assert_eq!(
        (s, p.gpuIds[0], p.gpuIds[1]),
        (NvStatus::OK, 0x600, NV0000_CTRL_GPU_INVALID_ID)
    );
    let (s, p) = g.control(
        &mut rm,
        t.client,
        t.client,
        NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE,
        &Nv0000CtrlClientGetAddrSpaceTypeParams {
            hObject: t.userd,
            ..Default::default()
        },
    );
    assert_eq!(
        (s, p.addrSpaceType),
        (
            NvStatus::OK,
            NV0000_CTRL_CMD_CLIENT_GET_ADDR_SPACE_TYPE_VIDMEM
        )
    );
    // TSG mirror follows successful controls.
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.tsg,
        NVA06C_CTRL_CMD_SET_TIMESLICE,
        &NvA06cCtrlTimesliceParams { timesliceUs: 5000 },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.tsg,
        NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
        &NvA06cCtrlInterleaveLevelParams {
            tsgInterleaveLevel: 3,
        },
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    let (s, _) = g.control(
        &mut rm,
        t.client,
        t.tsg,
        NVA06C_CTRL_CMD_PREEMPT,
        &NvA06cCtrlPreemptParams {
            bWait: 1,
            bManualTimeout: 1,
            timeoutUs: 2_000_000,
            ..Default::default()
        },
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    let groups = rm.channel_groups(1);
    assert_eq!(
        (groups[0].2.timeslice_us, groups[0].2.interleave_level),
        (5000, 1)
    );
}
