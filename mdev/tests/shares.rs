//! Two instances of one vgpud share the sim GPU by the policy file: a guest-side stream in each
//! (the guest-tools driver over the `vfio_user` crate's client) measures the work it completes
//! per second of GPU time from its own semaphores' timestamps; 3:1 splits it 75/25, and a
//! reload to 1:1 while both run splits it 50/50 within one second. A guest that keeps asking
//! for a longer timeslice, a higher interleave level or its channels back on does not move the
//! split.

mod daemon_rig;
mod vfio_client;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use daemon_rig::{define, sim_daemon, start};
use guest_tools::rmapi::{Fd, RmClient, Transport, VgpuTransport};
use guest_tools::workload::{
    paired_work, GpuContext, MemoryMode, Objects, StreamConfig, StreamReport, TsgSettings,
};
use mdev::control::{Request, Response};
use mdev::poller::PollConfig;
use mdev::vm_scheduler::VmScheduler;
use rm_abi::ctrl::{
    Nv2080CtrlFifoDisableChannelsParams, NvA06cCtrlGpfifoScheduleParams,
    NvA06cCtrlInterleaveLevelParams, NvA06cCtrlTimesliceParams,
    NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS, NVA06C_CTRL_CMD_GPFIFO_SCHEDULE,
    NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL, NVA06C_CTRL_CMD_SET_TIMESLICE,
    NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH, NVA06F_CTRL_CMD_GPFIFO_SCHEDULE,
};

const A: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0101";
const B: &str = "6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e0102";
const SEC: u64 = 1_000_000_000;

fn policy(a: u32, b: u32) -> String {
    format!(
        "policy = \"weighted\"\n[[tenant]]\nname = \"prod\"\nweight = {a}\n\
         [[tenant]]\nname = \"batch\"\nweight = {b}\n"
    )
}

/// Streams on the instance at `path` for `seconds`; sends the first completion's GPU time.
/// A `meddling` guest also runs [`meddle`] beside its stream, from a second open of the device.
fn guest(path: String, seconds: f64, started: mpsc::Sender<u64>, meddling: bool) -> StreamReport {
    let (driver, _window) = vfio_client::attach(&path);
    let t = VgpuTransport::new(driver);
    let mut ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Window).unwrap();
    let (objects, ctl) = (*ctx.objects(), ctx.client().ctl());
    let cfg = StreamConfig {
        duration: Duration::from_secs_f64(seconds),
        depth: guest_tools::workload::MAX_STREAM_DEPTH,
        // 5 ms units: 155 ms of queued work, so a busy host that delays a refill does not
        // leave the tenant idle.
        items: 50,
        bucket: Duration::from_millis(100),
        refill_every: Duration::from_millis(2),
    };
    let ring = |tok: u32| t.driver().doorbell(tok);
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let report = std::thread::scope(|s| {
        if meddling {
            s.spawn(|| meddle(&t, ctl, objects, &stop, &calls));
        }
        let r = ctx.stream(cfg, &ring, &mut |ns| {
            let _ = started.send(ns);
        });
        stop.store(true, Ordering::Relaxed);
        r.unwrap()
    });
    if meddling {
        // The driver accepts these calls; they must just not change the split.
        assert!(calls.load(Ordering::Relaxed) > 100, "meddled too little");
    }
    report
}

/// Every 2 ms until `stop`: an 8.5 s timeslice and HIGH interleave on the guest's own TSGs,
/// `GPFIFO_SCHEDULE(enable)` on them and on their channels, and `DISABLE_CHANNELS(bDisable=0)`
/// on the channels, through the stream's own ctl file `ctl`; counts the calls that succeeded.
/// Ends at the first refusal too: the stream frees its objects when it is done.
fn meddle(t: &dyn Transport, ctl: Fd, o: Objects, stop: &AtomicBool, calls: &AtomicU64) {
    let mut c = RmClient::on_fd(t, ctl).unwrap();
    let ok = |r: Result<(), _>| {
        calls.fetch_add(u64::from(r.is_ok()), Ordering::Relaxed);
        r.is_ok()
    };
    while !stop.load(Ordering::Relaxed) {
        for i in 0..2 {
            let mut ts = NvA06cCtrlTimesliceParams {
                timesliceUs: 8_500_000,
            };
            let mut il = NvA06cCtrlInterleaveLevelParams {
                tsgInterleaveLevel: NVA06C_CTRL_INTERLEAVE_LEVEL_HIGH,
            };
            let mut on = NvA06cCtrlGpfifoScheduleParams {
                bEnable: 1,
                ..Default::default()
            };
            let all = ok(c.control(o.client, o.tsg[i], NVA06C_CTRL_CMD_SET_TIMESLICE, &mut ts))
                && ok(c.control(
                    o.client,
                    o.tsg[i],
                    NVA06C_CTRL_CMD_SET_INTERLEAVE_LEVEL,
                    &mut il,
                ))
                && ok(c.control(o.client, o.tsg[i], NVA06C_CTRL_CMD_GPFIFO_SCHEDULE, &mut on))
                && ok(c.control(
                    o.client,
                    o.channel[i],
                    NVA06F_CTRL_CMD_GPFIFO_SCHEDULE,
                    &mut on,
                ));
            if !all {
                return;
            }
        }
        let mut en = Nv2080CtrlFifoDisableChannelsParams {
            bDisable: 0,
            numChannels: 2,
            ..Default::default()
        };
        en.hClientList[..2].fill(o.client);
        en.hChannelList[..2].copy_from_slice(&o.channel);
        if !ok(c.control(
            o.client,
            o.subdevice,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            &mut en,
        )) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Prod's share of the work both completed in each whole second of GPU time in `[from, to)`.
fn shares(a: &StreamReport, b: &StreamReport, from: u64, to: u64) -> Vec<f64> {
    paired_work(a, b, from, to, SEC)
        .into_iter()
        .map(|(_, wa, wb)| wa as f64 / (wa + wb).max(1) as f64)
        .collect()
}

fn write(path: &Path, text: &str) {
    // Write then rename, so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn two_vms_split_the_gpu_by_policy_and_a_reload_takes_over_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = sim_daemon(dir.path(), Some(PollConfig::default()));
    let policy_path = dir.path().join("policy.toml");
    write(&policy_path, &policy(3, 1));
    let gpu = daemon.host().sim_gpu().expect("the sim GPU");
    daemon.set_scheduler(VmScheduler::start(gpu.clone(), &policy_path, None).unwrap());
    define(&mut daemon, A, 1, "prod");
    define(&mut daemon, B, 2, "batch");
    let pa = start(&mut daemon, A);
    let pb = start(&mut daemon, B);

    let (tx, rx) = mpsc::channel();
    let seconds = 5.0;
    let threads: Vec<_> = [pa, pb]
        .into_iter()
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || guest(p, seconds, tx, false))
        })
        .collect();
    let both = rx.recv().unwrap().max(rx.recv().unwrap());
    // Under 3:1 for a while, then 1:1.
    std::thread::sleep(Duration::from_millis(2000));
    write(&policy_path, &policy(1, 1));
    let reload = gpu.lock().unwrap().now_ns();
    let reports: Vec<StreamReport> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (a, b) = (&reports[0], &reports[1]);
    let end = a.last_gpu_ns.min(b.last_gpu_ns);

    let before = shares(a, b, both + SEC / 5, reload);
    let after = shares(a, b, reload + SEC, end);
    eprintln!("prod's share: 3:1 {before:.3?}, after the reload to 1:1 {after:.3?}");
    assert!(
        !before.is_empty() && !after.is_empty(),
        "{before:?} {after:?}"
    );
    for s in &before {
        assert!((s - 0.75).abs() <= 0.02, "3:1 gave {before:?}");
    }
    for s in &after {
        assert!((s - 0.5).abs() <= 0.02, "1:1 gave {after:?}");
    }
    let status = match daemon.handle(Request::Status) {
        Response::Status(s) => s,
        other => panic!("{other:?}"),
    };
    assert!(status.policy.is_some_and(|p| p.contains("weight 1")));
}

/// Runs prod beside a meddling batch for `seconds` under `policy_text`; prod's share per second
/// from 0.2 s after both started.
fn split_against_a_meddler(policy_text: &str, seconds: f64) -> Vec<f64> {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = sim_daemon(dir.path(), Some(PollConfig::default()));
    let policy_path = dir.path().join("policy.toml");
    write(&policy_path, policy_text);
    let gpu = daemon.host().sim_gpu().expect("the sim GPU");
    daemon.set_scheduler(VmScheduler::start(gpu, &policy_path, None).unwrap());
    define(&mut daemon, A, 1, "prod");
    define(&mut daemon, B, 2, "batch");
    let pa = start(&mut daemon, A);
    let pb = start(&mut daemon, B);
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = [(pa, false), (pb, true)]
        .into_iter()
        .map(|(p, meddling)| {
            let tx = tx.clone();
            std::thread::spawn(move || guest(p, seconds, tx, meddling))
        })
        .collect();
    let both = rx.recv().unwrap().max(rx.recv().unwrap());
    let reports: Vec<StreamReport> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let (a, b) = (&reports[0], &reports[1]);
    shares(a, b, both + SEC / 5, a.last_gpu_ns.min(b.last_gpu_ns))
}

#[test]
fn a_guest_asking_for_longer_timeslices_keeps_its_weighted_share() {
    let s = split_against_a_meddler(&policy(3, 1), 3.5);
    eprintln!("prod's share under 3:1 against a meddling batch: {s:.3?}");
    assert!(!s.is_empty());
    for x in &s {
        assert!((x - 0.75).abs() <= 0.02, "3:1 gave {s:?}");
    }
}

#[test]
fn a_guest_re_enabling_its_channels_keeps_its_gated_share() {
    let fixed = "policy = \"fixed_share\"\n[[tenant]]\nname = \"prod\"\nweight = 3\n\
                 [[tenant]]\nname = \"batch\"\nweight = 1\n";
    let s = split_against_a_meddler(fixed, 3.5);
    eprintln!("prod's share under a 3:1 fixed share against a meddling batch: {s:.3?}");
    assert!(!s.is_empty());
    for x in &s {
        assert!((x - 0.75).abs() <= 0.02, "fixed 3:1 gave {s:?}");
    }
}
