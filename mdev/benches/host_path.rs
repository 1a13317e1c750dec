//! Host-side baseline of the guest's numbers: the same calls without a VM.
//!
//! * `rm_core::Rm::ioctl` directly (the baseline: RM core and sim, no transport);
//! * one escape through `VgpuDevice`: request header and argument in the window, descriptor
//!   chain in the escape virtqueue, the notify write, the used ring (what a guest does, minus
//!   the VM exits);
//! * doorbell to semaphore: GPFIFO entry and GP_PUT in window memory (OS descriptors), the BAR0
//!   doorbell, then polling the window until the sim GPU, on its real-time clock, has released
//!   the semaphore.
//!
//! The escape is `RM_CONTROL(NV2080_CTRL_CMD_GPU_GET_NAME_STRING)` on a subdevice (what
//! `vgpu-smi` asks first). Prints p50/p99 per call and the ratio to the baseline's p50.
//! Run: `cargo bench -p vgpu --bench host_path [-- ITERATIONS]`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use mdev::profile;
use mdev::sim_host::{GpuHost as _, SimHost};
use rm_abi::alloc_params::Nv2080AllocParameters;
use rm_abi::ctrl::{Nv2080CtrlGpuGetNameStringParams, NV2080_CTRL_CMD_GPU_GET_NAME_STRING};
use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::methods::host;
use rm_abi::nvos::Nvos54Parameters;
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::userd;
use rm_abi::{class, NvStatus};
use rm_core::testing::RmCalls;
use rm_core::{GuestMemory, VecGuestMemory};
use vgpu::protocol::{op, RequestHeader};
use zerocopy::IntoBytes;

const GFID: u32 = 1;

/// p50 and p99 of `samples` (ns), sorted in place.
fn percentiles(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

fn time<F: FnMut()>(n: usize, mut f: F) -> Vec<u64> {
    for _ in 0..n / 10 {
        f();
    }
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos() as u64
        })
        .collect()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let host = SimHost::real_time().expect("sim GPU");
    let p = profile::resolve("sim-35c", &host.gpu_info()).unwrap();
    let mut g = Guest::new(host.attach(&p, GFID, WINDOW, 1).unwrap());
    g.init();
    let w = window_channel(&mut g);
    let sub = ok(g.with_rm(w.ctl, |c| {
        RmCalls::alloc(
            c,
            w.client,
            w.device,
            0x5c00_0002,
            class::NV20_SUBDEVICE_0,
            Nv2080AllocParameters::default().as_bytes(),
        )
    }));

    // The control's argument and params, as a guest lays them out in its window.
    let params = Nv2080CtrlGpuGetNameStringParams::default();
    let arg = Nvos54Parameters {
        hClient: w.client,
        hObject: sub,
        cmd: NV2080_CTRL_CMD_GPU_GET_NAME_STRING,
        params: PARAMS,
        paramsSize: params.as_bytes().len() as u32,
        ..Default::default()
    };
    let request = IoctlRequest::encode(Escape::RM_CONTROL as u8, arg.as_bytes().len() as u32)
        .expect("request");
    g.wwrite(PARAMS, params.as_bytes());
    g.wwrite(ARG, arg.as_bytes());

    // Baseline: the same ioctl straight into the core, over plain memory with the same layout.
    let rm = host.rm();
    let mut mem = VecGuestMemory::new(0, WINDOW as usize);
    mem.write(PARAMS, params.as_bytes()).unwrap();
    mem.write(ARG, arg.as_bytes()).unwrap();
    let mut direct = time(n, || {
        let ret = rm
            .lock()
            .unwrap()
            .ioctl(GFID, w.ctl, request, ARG, &mut mem);
        assert_eq!(ret, 0);
    });
    let mut out = [0u8; 4];
    mem.read(ARG + 28, &mut out).unwrap(); // NVOS54 status
    assert_eq!(NvStatus(u32::from_le_bytes(out)), NvStatus::OK);

    let header = RequestHeader {
        op: op::IOCTL,
        file: w.ctl,
        request,
        arg: ARG,
        ..Default::default()
    };
    let mut device = time(n, || {
        let r = g.submit(&header);
        assert_eq!(r.ret, 0);
    });
    g.wread(ARG + 28, &mut out);
    assert_eq!(NvStatus(u32::from_le_bytes(out)), NvStatus::OK);

    // Doorbell to semaphore, in window memory, on the real-time sim.
    let rounds = (n / 20).max(100);
    let sem_va = w.va + SEMAPHORE;
    let mut put = 0u32;
    let mut doorbell = Vec::with_capacity(rounds);
    for i in 0..rounds as u32 {
        let payload = i + 1;
        let slot = u64::from(put % 64);
        let pb = GPU_MEM + PUSHBUF + slot * 0x40;
        let words = [
            inc_header(0, host::SEM_ADDR_LO, 4),
            sem_va as u32,
            (sem_va >> 32) as u32,
            payload,
            0,
            inc_header(0, host::SEM_EXECUTE, 1),
            host::sem_op::RELEASE,
        ];
        g.wwrite(pb, words.as_bytes());
        let entry = GpEntry::encode(w.va + PUSHBUF + slot * 0x40, words.len() as u32);
        g.wwrite(GPU_MEM + RING + slot * 8, &entry.to_le_bytes());
        put = put.wrapping_add(1);
        g.wwrite(USERD_MEM + userd::GP_PUT, &(put % 64).to_le_bytes());
        let t = Instant::now();
        g.ring(w.token);
        let mut b = [0u8; 4];
        loop {
            g.wread(GPU_MEM + SEMAPHORE, &mut b);
            if u32::from_le_bytes(b) == payload {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(10), "no release");
            std::hint::spin_loop();
        }
        doorbell.push(t.elapsed().as_nanos() as u64);
    }

    let (d50, d99) = percentiles(&mut direct);
    let (v50, v99) = percentiles(&mut device);
    let (b50, b99) = percentiles(&mut doorbell);
    println!("vGPU host path ({n} escapes each, {rounds} doorbells; release build)");
    println!();
    println!("| path | p50 (ns) | p99 (ns) | p50 / baseline |");
    println!("| --- | ---: | ---: | ---: |");
    println!("| `Rm::ioctl` RM_CONTROL (baseline) | {d50} | {d99} | 1.00 |");
    println!(
        "| `VgpuDevice` escape: queue + RM core + sim | {v50} | {v99} | {:.2} |",
        v50 as f64 / d50 as f64
    );
    println!(
        "| doorbell -> semaphore in the window (real-time sim) | {b50} | {b99} | {:.0} |",
        b50 as f64 / d50 as f64
    );
}
