//! `RM_IDLE_CHANNELS` on a daemon's GPU, which runs on the host's clock: a guest that waits on a
//! channel that can never drain (a semaphore acquire nobody releases) neither holds the RM core
//! nor moves the shared GPU clock past host time. Its request stays open, its neighbour is
//! served meanwhile, and the wait ends in host time with `NV_ERR_TIMEOUT`; a wait that can end
//! does, with `NV_OK`. Before, the sim simulated the whole timeout at once under the core lock
//! (an hour's timeout put the GPU clock an hour ahead of every tenant).

mod common;

use std::time::{Duration, Instant};

use common::*;
use mdev::profile;
use mdev::sim_host::{GpuHost as _, SimHost};
use rm_abi::methods::host;
use rm_abi::nvos::Nvos30Parameters;
use rm_abi::pushbuffer::{inc_header, GpEntry};
use rm_abi::userd;
use rm_abi::NvStatus;
use rm_sim::driver::MAX_CATCH_UP_NS;
use vgpu::protocol::{op, RequestHeader};
use zerocopy::{FromBytes, IntoBytes};

/// Where the test puts the idle call's parameters in A's window.
const IDLE_PARAMS: u64 = PARAMS + 0x800;

/// Posts `RM_IDLE_CHANNELS` for A's channel with `timeout_us` and notifies; returns the
/// footer's address.
fn post_idle(g: &mut Guest, w: &WindowChannel, timeout_us: u32) -> u64 {
    let p = Nvos30Parameters {
        hClient: w.client,
        hDevice: w.device,
        hChannel: w.channel,
        timeout: timeout_us,
        ..Default::default()
    };
    g.wwrite(IDLE_PARAMS, p.as_bytes());
    let ftr = g.post(&RequestHeader {
        op: op::IOCTL,
        file: w.ctl,
        request: 0xC038_4641, // _IOWR('F', NV_ESC_RM_IDLE_CHANNELS, NVOS30_PARAMETERS)
        arg: IDLE_PARAMS,
        ..Default::default()
    });
    g.notify();
    ftr
}

/// Polls A's device (the daemon's poller does this) until the idle call is answered; returns
/// its status.
fn finish_idle(g: &mut Guest, ftr: u64) -> NvStatus {
    let start = Instant::now();
    loop {
        g.dev.poll();
        if g.take_used().is_some() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "idle never answered"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(g.footer(ftr).ret, 0);
    let mut raw = [0u8; std::mem::size_of::<Nvos30Parameters>()];
    g.wread(IDLE_PARAMS, &mut raw);
    NvStatus(Nvos30Parameters::read_from_bytes(&raw).unwrap().status)
}

#[test]
fn an_idle_that_cannot_finish_holds_neither_the_core_nor_the_clock() {
    let host = SimHost::real_time().unwrap();
    let p = profile::resolve("sim-35c", &host.gpu_info()).unwrap();
    let mut a = Guest::new(host.attach(&p, 5, WINDOW, 1).unwrap());
    let mut b = Guest::new(host.attach(&p, 6, WINDOW, 2).unwrap());
    a.init();
    b.init();
    let w = window_channel(&mut a);

    // A's channel waits for a semaphore value that never comes.
    let sem_va = w.va + SEMAPHORE;
    let words = [
        inc_header(0, host::SEM_ADDR_LO, 4),
        sem_va as u32,
        (sem_va >> 32) as u32,
        1,
        0,
        inc_header(0, host::SEM_EXECUTE, 1),
        host::sem_op::ACQUIRE,
    ];
    a.wwrite(GPU_MEM + PUSHBUF, words.as_bytes());
    let entry = GpEntry::encode(w.va + PUSHBUF, words.len() as u32);
    a.wwrite(GPU_MEM + RING, &entry.to_le_bytes());
    a.wwrite(USERD_MEM + userd::GP_PUT, &1u32.to_le_bytes());
    a.ring(w.token);

    // An idle with a 300 ms timeout: the notify returns with the request still open.
    let asked = Instant::now();
    let ftr = post_idle(&mut a, &w, 300_000);
    assert!(
        a.dev.waiting(),
        "the wait is left open, not run under the lock"
    );
    assert!(a.take_used().is_none());
    // The neighbour is served meanwhile, and GPU time has not run ahead of host time.
    for _ in 0..8 {
        b.open_ctl();
    }
    let gpu = host.gpu();
    let (now, target) = {
        let g = gpu.lock().unwrap();
        (g.now_ns(), g.clock_target_ns())
    };
    assert!(
        now <= target + MAX_CATCH_UP_NS,
        "GPU time {now} ns is ahead of host time {target} ns"
    );
    assert!(a.dev.waiting());

    // The wait ends in host time, as the driver's does: timed out, not before 300 ms.
    assert_eq!(finish_idle(&mut a, ftr), NvStatus::ERR_TIMEOUT);
    assert!(asked.elapsed() >= Duration::from_millis(300));
    let (now, target) = {
        let g = gpu.lock().unwrap();
        (g.now_ns(), g.clock_target_ns())
    };
    assert!(now <= target + MAX_CATCH_UP_NS, "{now} > {target}");

    // Released from the CPU, the channel drains and the next idle answers OK.
    a.wwrite(GPU_MEM + SEMAPHORE, &1u32.to_le_bytes());
    let ftr = post_idle(&mut a, &w, 1_000_000);
    assert_eq!(finish_idle(&mut a, ftr), NvStatus::OK);
    assert!(!a.dev.waiting());
}
