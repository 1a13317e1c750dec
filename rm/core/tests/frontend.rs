//! The frontend and dispatcher path: request decoding, XFER unwrapping and its limit, exact
//! sizes, device-node rules, copy-out, and the frontend escapes' answers.

use rm_abi::escape::Escape;
use rm_abi::frontend::*;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::*;
use rm_abi::{class, NvStatus, NV_VERSION_STRING};
use rm_client::{Node, RmClient, Transport};
use rm_core::testing::fixtures::FakeBackend;
use rm_core::testing::transport::{CoreTransport, GUEST_BASE, GUEST_SIZE};
use rm_core::testing::{full_tree, RmCalls};
use rm_core::{Errno, Rm, VgpuConfig};
use zerocopy::IntoBytes;

/// The core with the vGPU 1 (1 GiB), as a transport.
fn setup() -> CoreTransport<FakeBackend> {
    CoreTransport::new(
        Rm::new(FakeBackend::default()),
        1,
        VgpuConfig::with_quota(1 << 30),
    )
    .unwrap()
}

/// A client (its ctl fd, version-checked) and a `/dev/nvidia0` fd not yet registered.
fn guest(t: &CoreTransport<FakeBackend>) -> (RmClient<'_>, i32) {
    let g = RmClient::open(t).unwrap();
    let dev = t.open(Node::Device(0)).unwrap();
    (g, dev)
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
    let t = setup();
    let (mut g, dev) = guest(&t);
    let ctl = g.ctl();
    let (ret, out) = g
        .ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_STRICT, NV_VERSION_STRING),
        )
        .unwrap();
    assert_eq!((ret, out.reply), (0, NV_RM_API_VERSION_REPLY_RECOGNIZED));
    let (ret, out) = g
        .ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_STRICT, "580.159.03"),
        )
        .unwrap();
    assert_eq!(ret, Errno::Inval.ret());
    assert!(
        out.versionString.starts_with(NV_VERSION_STRING.as_bytes()),
        "driver version copied out on mismatch"
    );
    let (ret, _) = g
        .ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_RELAXED, "580.1"),
        )
        .unwrap();
    assert_eq!(ret, 0);
    let (ret, _) = g
        .ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_RELAXED, "575.51.02"),
        )
        .unwrap();
    assert_eq!(ret, Errno::Inval.ret());
    let (ret, out) = g
        .ioctl_raw(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_QUERY, ""),
        )
        .unwrap();
    assert_eq!(ret, 0);
    assert!(out.versionString.starts_with(NV_VERSION_STRING.as_bytes()));
    let (ret, _) = g
        .ioctl_raw(
            dev,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_QUERY, ""),
        )
        .unwrap();
    assert_eq!(ret, Errno::Inval.ret(), "ctl-only");
}

#[test]
fn sizes_nodes_and_unknown_escapes() {
    let t = setup();
    let (mut g, dev) = guest(&t);
    let (gfid, ctl) = (t.gfid(), g.ctl());
    // RM_CONTROL with a wrong size, on the wrong node, and an unknown escape number.
    let wrong = IoctlRequest::encode(Escape::RM_CONTROL as u8, 33).unwrap();
    assert_eq!(
        g.ioctl_request(ctl, wrong, &mut [0; 33]).unwrap(),
        Errno::Inval.ret()
    );
    let ctl_req = IoctlRequest::encode(Escape::RM_CONTROL as u8, 32).unwrap();
    assert_eq!(
        g.ioctl_request(dev, ctl_req, &mut [0; 32]).unwrap(),
        Errno::Inval.ret()
    );
    assert_eq!(
        g.ioctl_request(ctl, IoctlRequest::encode(0x2C, 8).unwrap(), &mut [0; 8])
            .unwrap(),
        Errno::Inval.ret()
    );
    // Direction and type bits are ignored, as in nvidia_ioctl.
    let odd_type = (ctl_req & !0xFF00) | (u32::from(b'X') << 8);
    assert_eq!(g.ioctl_request(ctl, odd_type, &mut [0; 32]).unwrap(), 0);
    // Unknown fd and unknown GFID.
    assert_eq!(
        g.ioctl_request(999, ctl_req, &mut [0; 32]).unwrap(),
        Errno::BadFd.ret()
    );
    assert_eq!(t.ioctl_as(9, ctl, ctl_req, GUEST_BASE), Errno::BadFd.ret());
    // An argument outside guest memory.
    assert_eq!(t.ioctl_as(gfid, ctl, ctl_req, 0x10), Errno::Fault.ret());
    // RM_ALLOC of a device on the device node is refused; of an event it is allowed.
    let (mut g2, dev2) = guest(&t);
    let tree = full_tree(&mut g2);
    let reg = NvIoctlRegisterFd { ctl_fd: g2.ctl() };
    assert_eq!(g2.ioctl_raw(dev2, Escape::REGISTER_FD, &reg).unwrap().0, 0);
    let a = Nvos64Parameters {
        hRoot: tree.client,
        hObjectParent: tree.client,
        hClass: class::NV01_DEVICE_0,
        ..Default::default()
    };
    assert_eq!(
        g2.ioctl_raw(dev2, Escape::RM_ALLOC, &a).unwrap().0,
        Errno::Inval.ret()
    );
    let ev = rm_abi::alloc_params::Nv0005AllocParameters {
        hParentClient: tree.client,
        hSrcResource: tree.subdevice,
        hClass: class::NV01_EVENT_OS_EVENT,
        notifyIndex: 1,
        data: 0,
    };
    let ev_params = t.buffer(ev.as_bytes().len(), 8).unwrap();
    ev_params.put(0, &ev).unwrap();
    let a = Nvos64Parameters {
        hRoot: tree.client,
        hObjectParent: tree.subdevice,
        hObjectNew: 0x5c00_0100,
        hClass: class::NV01_EVENT_OS_EVENT,
        pAllocParms: ev_params.addr(),
        ..Default::default()
    };
    let (ret, out) = g2.ioctl_raw(dev2, Escape::RM_ALLOC, &a).unwrap();
    assert_eq!(
        (ret, NvStatus(out.status)),
        (0, NvStatus::OK),
        "event on the registered device fd"
    );
}

#[test]
fn xfer_unwraps_and_enforces_its_limit() {
    let t = setup();
    let mut g = RmClient::open(&t).unwrap();
    let ctl = g.ctl();
    // Memory for the real arguments: room for the largest one XFER accepts, and one byte more.
    let big = t.buffer(0x8000, 64).unwrap();
    let (ret, out) = g
        .ioctl_xfer(
            ctl,
            Escape::CHECK_VERSION_STR,
            &version(NV_RM_API_VERSION_CMD_QUERY, ""),
        )
        .unwrap();
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
            ptr: big.addr(),
        };
        assert_eq!(
            g.ioctl_request(ctl, xreq, &mut x.as_bytes().to_vec())
                .unwrap(),
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
        assert_eq!(
            g.ioctl_request(ctl, xreq, &mut x.as_bytes().to_vec())
                .unwrap(),
            Errno::Fault.ret(),
            "cmd {cmd:#x}"
        );
    }
    // A 16384-byte card-info array through XFER: accepted, 227 entries, the first ours.
    let x = NvIoctlXfer {
        cmd: Escape::CARD_INFO as u32,
        size: 16384,
        ptr: big.addr(),
    };
    assert_eq!(
        g.ioctl_request(ctl, xreq, &mut x.as_bytes().to_vec())
            .unwrap(),
        0
    );
    let mut first = [0u8; 72];
    big.read(0, &mut first).unwrap();
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
        g.ioctl_request(
            ctl,
            IoctlRequest::encode(211, 24).unwrap(),
            &mut [x.as_bytes(), &[0; 8]].concat()
        )
        .unwrap(),
        Errno::Inval.ret()
    );
}

#[test]
fn frontend_escapes_answer_like_the_driver() {
    let t = setup();
    let (mut g, dev) = guest(&t);
    let ctl = g.ctl();
    // Card info needs room for one entry.
    let (ret, _) = g.ioctl_raw(ctl, Escape::CARD_INFO, &[0u8; 72]).unwrap();
    assert_eq!(ret, 0);
    // Sys params: set once, same value again fine, a different one EBUSY.
    let sp = NvIoctlSysParams {
        memblock_size: 1 << 30,
    };
    assert_eq!(g.ioctl_raw(ctl, Escape::SYS_PARAMS, &sp).unwrap().0, 0);
    assert_eq!(g.ioctl_raw(ctl, Escape::SYS_PARAMS, &sp).unwrap().0, 0);
    assert_eq!(
        g.ioctl_raw(
            ctl,
            Escape::SYS_PARAMS,
            &NvIoctlSysParams {
                memblock_size: 1 << 27
            }
        )
        .unwrap()
        .0,
        Errno::Busy.ret()
    );
    // NUMA info on the device node reports no node and the memory block size.
    let (ret, numa) = g
        .ioctl_raw(dev, Escape::NUMA_INFO, &NvIoctlNumaInfo::default())
        .unwrap();
    assert_eq!((ret, numa.nid, numa.memblock_size), (0, -1, 1 << 30));
    assert_eq!(
        g.ioctl_raw(ctl, Escape::NUMA_INFO, &NvIoctlNumaInfo::default())
            .unwrap()
            .0,
        Errno::Inval.ret()
    );
    assert_eq!(
        g.ioctl_raw(
            dev,
            Escape::SET_NUMA_STATUS,
            &NvIoctlSetNumaStatus::default()
        )
        .unwrap()
        .0,
        Errno::Acces.ret()
    );
    // Attach GPUs: once per fd, only our id.
    assert_eq!(
        g.ioctl_raw(ctl, Escape::ATTACH_GPUS_TO_FD, &[0x600u32, 0])
            .unwrap()
            .0,
        0
    );
    assert_eq!(
        g.ioctl_raw(ctl, Escape::ATTACH_GPUS_TO_FD, &[0x600u32])
            .unwrap()
            .0,
        Errno::Inval.ret()
    );
    let ctl2 = t.open(Node::Ctl).unwrap();
    assert_eq!(
        g.ioctl_raw(ctl2, Escape::ATTACH_GPUS_TO_FD, &[0x700u32])
            .unwrap()
            .0,
        Errno::Inval.ret()
    );
    // Register fd: once, only to a ctl fd, never to itself.
    assert_eq!(
        g.ioctl_raw(dev, Escape::REGISTER_FD, &NvIoctlRegisterFd { ctl_fd: dev })
            .unwrap()
            .0,
        Errno::Inval.ret()
    );
    assert_eq!(
        g.ioctl_raw(dev, Escape::REGISTER_FD, &NvIoctlRegisterFd { ctl_fd: ctl })
            .unwrap()
            .0,
        0
    );
    assert_eq!(
        g.ioctl_raw(
            dev,
            Escape::REGISTER_FD,
            &NvIoctlRegisterFd { ctl_fd: ctl2 }
        )
        .unwrap()
        .0,
        Errno::Inval.ret()
    );
    // Wait-open-complete on either node; status code for our PCI location only.
    let (ret, w) = g
        .ioctl_raw(
            dev,
            Escape::WAIT_OPEN_COMPLETE,
            &NvIoctlWaitOpenComplete {
                rc: 5,
                adapterStatus: 5,
            },
        )
        .unwrap();
    assert_eq!((ret, w.rc, w.adapterStatus), (0, 0, 0));
    assert_eq!(
        g.ioctl_raw(
            ctl,
            Escape::STATUS_CODE,
            &NvIoctlStatusCode {
                bus: 0,
                slot: 6,
                ..Default::default()
            }
        )
        .unwrap()
        .0,
        0
    );
    assert_eq!(
        g.ioctl_raw(
            ctl,
            Escape::STATUS_CODE,
            &NvIoctlStatusCode {
                bus: 1,
                slot: 0,
                ..Default::default()
            }
        )
        .unwrap()
        .0,
        Errno::Inval.ret()
    );
    // OS events need a client of this fd.
    let (_, ev) = g
        .ioctl_raw(
            dev,
            Escape::ALLOC_OS_EVENT,
            &NvIoctlAllocOsEvent {
                hClient: 0xC1D0_0001,
                hDevice: 1,
                fd: 7,
                Status: 0,
            },
        )
        .unwrap();
    assert_eq!(NvStatus(ev.Status), NvStatus::ERR_INVALID_CLIENT);
    let client = RmCalls::alloc_ok(&mut g, 0, 0, 0, class::NV01_ROOT, &[]);
    let (_, ev) = g
        .ioctl_raw(
            dev,
            Escape::ALLOC_OS_EVENT,
            &NvIoctlAllocOsEvent {
                hClient: client,
                hDevice: 1,
                fd: 7,
                Status: 0,
            },
        )
        .unwrap();
    assert_eq!(NvStatus(ev.Status), NvStatus::OK);
    let (_, ev) = g
        .ioctl_raw(
            dev,
            Escape::FREE_OS_EVENT,
            &NvIoctlFreeOsEvent {
                hClient: client,
                hDevice: 1,
                fd: 7,
                Status: 0,
            },
        )
        .unwrap();
    assert_eq!(NvStatus(ev.Status), NvStatus::OK);
}

#[test]
fn rm_errors_go_in_the_status_field() {
    let core = setup();
    let mut g = RmClient::open(&core).unwrap();
    let t = full_tree(&mut g);
    // Unknown control, wrong size, NULL/size mismatch, kernel-only flags, unsupported class.
    let pbuf = core.buffer(0x100, 8).unwrap();
    let base = Nvos54Parameters {
        hClient: t.client,
        hObject: t.subdevice,
        cmd: 0x2080_DEAD,
        params: pbuf.addr(),
        paramsSize: 4,
        ..Default::default()
    };
    let (ret, out) = g.ioctl_raw(g.ctl(), Escape::RM_CONTROL, &base).unwrap();
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
            g.ioctl_raw(g.ctl(), Escape::RM_CONTROL, &sized)
                .unwrap()
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
        NvStatus(
            g.ioctl_raw(g.ctl(), Escape::RM_CONTROL, &null)
                .unwrap()
                .1
                .status
        ),
        NvStatus::ERR_INVALID_ARGUMENT
    );
    let flags = Nvos54Parameters {
        flags: NVOS54_FLAGS_LOCK_BYPASS,
        paramsSize: 132,
        ..sized
    };
    assert_eq!(
        NvStatus(
            g.ioctl_raw(g.ctl(), Escape::RM_CONTROL, &flags)
                .unwrap()
                .1
                .status
        ),
        NvStatus::ERR_INVALID_FLAGS
    );
    let (s, _) = RmCalls::alloc(
        &mut g,
        t.client,
        t.device,
        0,
        class::RM_USER_SHARED_DATA,
        &[],
    );
    assert_eq!(s, NvStatus::ERR_INVALID_CLASS);
    // GET_INTERLEAVE_LEVEL is NOT_SUPPORTED, as on the real driver; MAKE_REALTIME needs privilege.
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.tsg,
        rm_abi::ctrl::NVA06C_CTRL_CMD_GET_INTERLEAVE_LEVEL,
        &rm_abi::ctrl::NvA06cCtrlInterleaveLevelParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_NOT_SUPPORTED);
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.tsg,
        rm_abi::ctrl::NVA06C_CTRL_CMD_MAKE_REALTIME,
        &rm_abi::ctrl::NvA06cCtrlMakeRealtimeParams { bRealtime: 1 },
    );
    assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS);
    // A control of one class on an object of another.
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.device,
        rm_abi::ctrl::NVA06C_CTRL_CMD_GET_TIMESLICE,
        &rm_abi::ctrl::NvA06cCtrlTimesliceParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_NOT_SUPPORTED);
    // Quota: video memory beyond the vGPU's framebuffer.
    let big = rm_abi::alloc_params::NvMemoryAllocationParams {
        owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
        size: 2 << 30,
        ..Default::default()
    };
    let (s, _) = RmCalls::alloc(
        &mut g,
        t.client,
        t.device,
        0,
        class::NV01_MEMORY_LOCAL_USER,
        big.as_bytes(),
    );
    assert_eq!(s, NvStatus::ERR_NO_MEMORY);
    // A TSG channel naming a VA space, with or without a context share (`kchannelConstruct`:
    // "TSG channels can't use an explicit vaspace").
    for ctxshare in [0, t.ctxshare] {
        let p = rm_abi::alloc_params::NvChannelAllocParams {
            gpFifoOffset: 0x2_0000_0000,
            gpFifoEntries: 128,
            hContextShare: ctxshare,
            hVASpace: t.vaspace,
            ..Default::default()
        };
        let (s, _) = RmCalls::alloc(
            &mut g,
            t.client,
            t.tsg,
            0,
            rm_abi::methods::HOPPER_CHANNEL_GPFIFO_A,
            p.as_bytes(),
        );
        assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT, "ctxshare {ctxshare:#x}");
    }
    // Owner tags the driver keeps for itself or refuses (`stdmemValidateParams`): 0, ~0 and
    // RM's scratch range, for system and video memory alike.
    for owner in [0, u32::MAX, 0xDEAF_0000, 0xDEAF_0003] {
        for class in [class::NV01_MEMORY_SYSTEM, class::NV01_MEMORY_LOCAL_USER] {
            let p = rm_abi::alloc_params::NvMemoryAllocationParams {
                owner,
                size: 4096,
                ..Default::default()
            };
            let (s, _) = RmCalls::alloc(&mut g, t.client, t.device, 0, class, p.as_bytes());
            assert_eq!(
                s,
                NvStatus::ERR_INVALID_OWNER,
                "owner {owner:#x}, class {class:#x}"
            );
        }
    }
    // Physical video memory naming a VA space ("VA space handle used with physical
    // allocation"), and either class asking to be virtual.
    let cases = [
        (class::NV01_MEMORY_LOCAL_USER, t.vaspace, 0),
        (class::NV01_MEMORY_LOCAL_USER, 0, 0x0008_0000),
        (class::NV01_MEMORY_SYSTEM, 0, 0x0008_0000),
    ];
    for (class, va, flags) in cases {
        let p = rm_abi::alloc_params::NvMemoryAllocationParams {
            owner: rm_abi::alloc_params::VGPU_MEMORY_OWNER,
            size: 4096,
            hVASpace: va,
            flags,
            ..Default::default()
        };
        let (s, _) = RmCalls::alloc(&mut g, t.client, t.device, 0, class, p.as_bytes());
        assert_eq!(
            s,
            NvStatus::ERR_INVALID_ARGUMENT,
            "class {class:#x}, flags {flags:#x}"
        );
    }
    // VA space indices other than GPU_NEW hand out the GPU's shared VA spaces.
    for index in 1..=4 {
        let p = rm_abi::alloc_params::NvVaspaceAllocationParameters {
            index,
            ..Default::default()
        };
        let (s, _) = RmCalls::alloc(
            &mut g,
            t.client,
            t.device,
            0,
            class::FERMI_VASPACE_A,
            p.as_bytes(),
        );
        assert_eq!(s, NvStatus::ERR_INSUFFICIENT_PERMISSIONS, "index {index}");
    }
    // Root classes are rewritten to NV01_ROOT_CLIENT and the handle lands in the guest range.
    let a = Nvos21Parameters {
        hClass: class::NV01_ROOT_NON_PRIV,
        ..Default::default()
    };
    let (ret, out) = g.ioctl_raw(g.ctl(), Escape::RM_ALLOC, &a).unwrap();
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
        NvStatus(
            g.ioctl_raw(g.ctl(), Escape::RM_ALLOC, &dup)
                .unwrap()
                .1
                .status
        ),
        NvStatus::ERR_INSERT_DUPLICATE_NAME
    );
}

#[test]
fn identity_controls_answer_from_the_gpu_and_the_vgpu() {
    use rm_abi::ctrl::*;
    let core = setup();
    let mut g = RmClient::open(&core).unwrap();
    let t = full_tree(&mut g);
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        &Nv2080CtrlGpuGetNameStringParams::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(p.gpuNameString.starts_with(b"NVIDIA H200 (fake)\0"));
    let (s, p) = RmCalls::control(
        &mut g,
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
    let (s, p) = RmCalls::control(
        &mut g,
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
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.device,
        NV0080_CTRL_CMD_GPU_GET_CLASSLIST_V2,
        &Nv0080CtrlGpuGetClasslistV2Params::default(),
    );
    assert_eq!(s, NvStatus::OK);
    assert!(p.classList[..p.numClasses as usize].contains(&class::HOPPER_CHANNEL_GPFIFO_A));
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.subdevice,
        NV2080_CTRL_CMD_GPU_GET_ENGINES_V2,
        &Nv2080CtrlGpuGetEnginesV2Params::default(),
    );
    assert_eq!((s, p.engineCount), (NvStatus::OK, 3));
    let (s, p) = RmCalls::control(
        &mut g,
        t.client,
        t.client,
        NV0000_CTRL_CMD_GPU_GET_ATTACHED_IDS,
        &Nv0000CtrlGpuGetAttachedIdsParams::default(),
    );
    assert_eq!(
        (s, p.gpuIds[0], p.gpuIds[1]),
        (NvStatus::OK, 0x600, NV0000_CTRL_GPU_INVALID_ID)
    );
    let (s, p) = RmCalls::control(
        &mut g,
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
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.tsg,
        NVA06C_CTRL_CMD_SET_TIMESLICE,
        &NvA06cCtrlTimesliceParams { timesliceUs: 5000 },
    );
    assert_eq!(s, NvStatus::OK);
    let (s, _) = RmCalls::control(
        &mut g,
        t.client,
        t.tsg,
        NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
        &NvA06cCtrlInterleaveLevelParams {
            tsgInterleaveLevel: 3,
        },
    );
    assert_eq!(s, NvStatus::ERR_INVALID_ARGUMENT);
    let (s, _) = RmCalls::control(
        &mut g,
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
    let groups = core.rm().channel_groups(1);
    assert_eq!(
        (groups[0].2.timeslice_us, groups[0].2.interleave_level),
        (5000, 1)
    );
}
