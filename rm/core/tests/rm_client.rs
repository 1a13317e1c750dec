//! The guest's RM client library (`rm-client`) over the core called in-process
//! (`rm_core::testing::transport::CoreTransport`): the same calls the guest makes over the vGPU,
//! with the core's bookkeeping checked between them.

use rm_abi::alloc_params::{Nv0080AllocParameters, Nv2080AllocParameters};
use rm_abi::ctrl::{Nv2080CtrlGpuGetNameStringParams, NV2080_CTRL_CMD_GPU_GET_NAME_STRING};
use rm_abi::{class, NvStatus};
use rm_client::RmClient;
use rm_core::testing::fixtures::FakeBackend;
use rm_core::testing::transport::CoreTransport;
use rm_core::{Rm, VgpuConfig};

const GFID: u32 = 2;

fn transport() -> CoreTransport<FakeBackend> {
    CoreTransport::new(
        Rm::new(FakeBackend::default()),
        GFID,
        VgpuConfig::with_quota(1 << 30),
    )
    .unwrap()
}

#[test]
fn client_library_runs_on_the_core_in_process() {
    let t = transport();
    let mut c = RmClient::open(&t).expect("version check");
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
        .alloc(
            client,
            device,
            class::NV20_SUBDEVICE_0,
            &mut Nv2080AllocParameters::default(),
        )
        .unwrap();
    let mut name = Nv2080CtrlGpuGetNameStringParams::default();
    c.control(client, sub, NV2080_CTRL_CMD_GPU_GET_NAME_STRING, &mut name)
        .unwrap();
    assert!(name.gpuNameString.starts_with(b"NVIDIA H200 (fake)\0"));
    {
        let rm = t.rm();
        assert_eq!(rm.object_count(GFID), 3);
        let host = rm
            .host_client(GFID, client)
            .expect("the client is the core's");
        assert_ne!(host, client, "the backend sees a host handle");
        assert_eq!(rm.backend().live_count(), 3);
    }
    // RM errors come back as statuses, frontend errors as errnos.
    let e = c
        .control(
            client,
            0xdead,
            NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
            &mut name,
        )
        .unwrap_err();
    assert_eq!(e.status(), Some(NvStatus::ERR_INVALID_OBJECT_HANDLE));
    c.free(client, device, sub).unwrap();
    assert_eq!(t.rm().object_count(GFID), 2);
    c.close().unwrap();
    assert_eq!(
        t.rm().object_count(GFID),
        0,
        "closing the ctl fd frees its clients"
    );
    assert_eq!(t.rm().backend().live_count(), 0);
}

#[test]
fn buffers_are_guest_memory_and_are_given_back() {
    let t = transport();
    // 64 clients' scratch buffers (32 KiB each, 2 MiB in all) fit the 1 MiB memory only because
    // each closed client gives its buffers back.
    for _ in 0..64 {
        let c = RmClient::open(&t).unwrap();
        c.close().unwrap();
    }
}

#[test]
fn status_calls_and_raw_ioctls_return_what_the_driver_left() {
    use rm_abi::escape::Escape;
    use rm_abi::frontend::{NvIoctlRmApiVersion, NV_RM_API_VERSION_CMD_QUERY};
    use rm_abi::ioctl::IoctlRequest;
    use rm_core::testing::{self, RmCalls};
    let t = transport();
    let mut c = RmClient::open(&t).unwrap();
    // The shared builders run over the client library.
    let tree = testing::full_tree(&mut c);
    assert_eq!(t.rm().object_count(GFID), 12);
    // RM's refusals come back as statuses, with the handle the caller picked.
    let (s, _) = c
        .alloc_status(
            tree.client,
            tree.device,
            0,
            class::RM_USER_SHARED_DATA,
            &mut [],
        )
        .unwrap();
    assert_eq!(s, NvStatus::ERR_INVALID_CLASS);
    let (s, _) = RmCalls::control(
        &mut c,
        tree.client,
        0xdead,
        NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        &Nv2080CtrlGpuGetNameStringParams::default(),
    );
    assert_eq!(s, NvStatus::ERR_INVALID_OBJECT_HANDLE);
    assert_eq!(
        c.free_status(tree.client, tree.client, 0xdead).unwrap(),
        NvStatus::ERR_INVALID_OBJECT_HANDLE
    );
    // A wrong-size request fails with its errno; a query answers in and out of XFER.
    let ctl = c.ctl();
    let wrong = IoctlRequest::encode(Escape::RM_CONTROL as u8, 33).unwrap();
    assert_eq!(c.ioctl_request(ctl, wrong, &mut [0; 33]).unwrap(), -22);
    let q = NvIoctlRmApiVersion {
        cmd: NV_RM_API_VERSION_CMD_QUERY,
        ..Default::default()
    };
    for (ret, out) in [
        c.ioctl_raw(ctl, Escape::CHECK_VERSION_STR, &q).unwrap(),
        c.ioctl_xfer(ctl, Escape::CHECK_VERSION_STR, &q).unwrap(),
    ] {
        assert_eq!(ret, 0);
        assert!(out
            .versionString
            .starts_with(rm_abi::NV_VERSION_STRING.as_bytes()));
    }
}
