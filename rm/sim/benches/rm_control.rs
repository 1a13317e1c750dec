//! Cost of one `RM_CONTROL` through the core (request decode, copy in from guest memory, size
//! and object validation, handle translation, the sim backend, copy out), printed beside the
//! same control called on the sim backend directly (measured in this run) and the native
//! `RM_CONTROL` round trip measured on the H200 (2.83 µs, `NVA06C_CTRL_CMD_GET_TIMESLICE`).
//!
//! Run: `cargo bench -p rm-sim --bench rm_control`.

use rm_abi::alloc_params::*;
use rm_abi::ctrl::*;
use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::{Nvos54Parameters, Nvos64Parameters};
use rm_abi::{class, read_struct, Handle, NvStatus};
use rm_core::backend::Backend;
use rm_core::{GuestMemory, Node, Rm, VecGuestMemory, VgpuConfig};
use rm_sim::{SimBackend, SimConfig};
use std::hint::black_box;
use std::time::Instant;
use zerocopy::IntoBytes;

/// Native `RM_CONTROL` round trip on the H200 (p50, 20 000 calls of GET_TIMESLICE).
const NATIVE_NS: f64 = 2830.0;
const BASE: u64 = 0x10_0000;
const ARG: u64 = BASE;
const PARAMS: u64 = BASE + 0x1000;
const GFID: u32 = 1;
const ITERS: u32 = 200_000;
const BATCHES: usize = 7;

struct Setup {
    rm: Rm<SimBackend>,
    mem: VecGuestMemory,
    ctl: i32,
    client: Handle,
    subdevice: Handle,
    tsg: Handle,
}

fn alloc(s: &mut Setup, parent: Handle, new: Handle, class_id: u32, params: &[u8]) -> Handle {
    s.mem.write(PARAMS, params).unwrap();
    let a = Nvos64Parameters {
        hRoot: s.client,
        hObjectParent: parent,
        hObjectNew: new,
        hClass: class_id,
        pAllocParms: if params.is_empty() { 0 } else { PARAMS },
        ..Default::default()
    };
    s.mem.write(ARG, a.as_bytes()).unwrap();
    let req = IoctlRequest::encode(Escape::RM_ALLOC as u8, 48).unwrap();
    assert_eq!(s.rm.ioctl(GFID, s.ctl, req, ARG, &mut s.mem), 0);
    let mut out = [0u8; 48];
    s.mem.read(ARG, &mut out).unwrap();
    let o: Nvos64Parameters = read_struct(&out).unwrap();
    assert_eq!(NvStatus(o.status), NvStatus::OK, "alloc {class_id:#x}");
    o.hObjectNew
}

fn setup() -> Setup {
    let mut rm = Rm::new(SimBackend::new(SimConfig::default()));
    rm.create_vgpu(GFID, VgpuConfig::with_quota(1 << 30))
        .unwrap();
    let ctl = rm.open(GFID, Node::Ctl).unwrap();
    let mut s = Setup {
        rm,
        mem: VecGuestMemory::new(BASE, 1 << 16),
        ctl,
        client: 0,
        subdevice: 0,
        tsg: 0,
    };
    s.client = alloc(&mut s, 0, 0, class::NV01_ROOT_CLIENT, &[]);
    let client = s.client;
    let device = alloc(
        &mut s,
        client,
        0x5c00_0001,
        class::NV01_DEVICE_0,
        Nv0080AllocParameters::default().as_bytes(),
    );
    s.subdevice = alloc(
        &mut s,
        device,
        0x5c00_0002,
        class::NV20_SUBDEVICE_0,
        &[0; 4],
    );
    let va = alloc(
        &mut s,
        device,
        0x5c00_0003,
        class::FERMI_VASPACE_A,
        NvVaspaceAllocationParameters::default().as_bytes(),
    );
    let tsg_p = NvChannelGroupAllocationParameters {
        hVASpace: va,
        engineType: NV2080_ENGINE_TYPE_GR0,
        ..Default::default()
    };
    s.tsg = alloc(
        &mut s,
        device,
        0x5c00_0004,
        class::KEPLER_CHANNEL_GROUP_A,
        tsg_p.as_bytes(),
    );
    s
}

/// Median ns per call of `f` over `BATCHES` batches of `ITERS` calls.
fn measure(mut f: impl FnMut()) -> f64 {
    for _ in 0..ITERS / 10 {
        f();
    }
    let mut per_call: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..ITERS {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(ITERS)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[BATCHES / 2]
}

fn control_via_core(s: &mut Setup, object: Handle, cmd: u32, size: u32) -> f64 {
    let p = Nvos54Parameters {
        hClient: s.client,
        hObject: object,
        cmd,
        params: PARAMS,
        paramsSize: size,
        ..Default::default()
    };
    s.mem.write(PARAMS, &vec![0u8; size as usize]).unwrap();
    let req = IoctlRequest::encode(Escape::RM_CONTROL as u8, 32).unwrap();
    let arg = p.as_bytes().to_vec();
    let (rm, mem, ctl) = (&mut s.rm, &mut s.mem, s.ctl);
    let check = {
        mem.write(ARG, &arg).unwrap();
        assert_eq!(rm.ioctl(GFID, ctl, req, ARG, mem), 0);
        let mut out = [0u8; 32];
        mem.read(ARG, &mut out).unwrap();
        read_struct::<Nvos54Parameters>(&out).unwrap().status
    };
    assert_eq!(NvStatus(check), NvStatus::OK, "control {cmd:#x}");
    measure(|| {
        mem.write(ARG, &arg).unwrap();
        black_box(rm.ioctl(GFID, ctl, req, ARG, mem));
    })
}

fn main() {
    let mut s = setup();
    let host_client = s.rm.host_client(GFID, s.client).unwrap();
    let tsg = s.tsg;

    let direct = {
        let b = s.rm.backend_mut();
        let mut p = NvA06cCtrlTimesliceParams::default();
        assert_eq!(
            b.control(
                GFID,
                host_client,
                tsg,
                NVA06C_CTRL_CMD_GET_TIMESLICE,
                p.as_mut_bytes()
            ),
            NvStatus::OK
        );
        measure(|| {
            black_box(b.control(
                GFID,
                host_client,
                tsg,
                NVA06C_CTRL_CMD_GET_TIMESLICE,
                p.as_mut_bytes(),
            ));
        })
    };
    let full = control_via_core(&mut s, tsg, NVA06C_CTRL_CMD_GET_TIMESLICE, 8);
    let subdevice = s.subdevice;
    let name = control_via_core(&mut s, subdevice, NV2080_CTRL_CMD_GPU_GET_NAME_STRING, 132);
    let disable = {
        let p = Nv2080CtrlFifoDisableChannelsParams::default();
        let size = p.as_bytes().len() as u32;
        control_via_core(
            &mut s,
            subdevice,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            size,
        )
    };

    println!("## RM core: one RM_CONTROL, ns per call (median of {BATCHES} x {ITERS})");
    println!();
    println!("| path | ns/call | vs sim backend direct | vs native H200 (2830 ns) |");
    println!("| --- | ---: | ---: | ---: |");
    let row = |what: &str, ns: f64| {
        println!(
            "| {what} | {ns:.0} | {:.2}x | {:.3}x |",
            ns / direct,
            ns / NATIVE_NS
        )
    };
    row(
        "sim backend `control()` direct, GET_TIMESLICE (baseline, this run)",
        direct,
    );
    row(
        "dispatcher -> core -> sim, NVA06C GET_TIMESLICE (8 B)",
        full,
    );
    row(
        "dispatcher -> core, NV2080 GET_NAME_STRING (132 B, core-answered)",
        name,
    );
    row(
        "dispatcher -> core -> sim, NV2080 FIFO_DISABLE_CHANNELS (536 B, 0 entries)",
        disable,
    );
    println!();
    println!(
        "core overhead on GET_TIMESLICE: {:.0} ns ({:.1} % of the native 2.83 us round trip)",
        full - direct,
        (full - direct) / NATIVE_NS * 100.0
    );
}
