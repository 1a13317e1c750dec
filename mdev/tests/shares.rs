//! Two instances of one vgpud share the sim GPU by the policy file: a guest-side stream in each
//! (the guest-tools driver over the `vfio_user` crate's client) measures the work it completes
//! per second of GPU time from its own semaphores' timestamps; 3:1 splits it 75/25, and a
//! reload to 1:1 while both run splits it 50/50 within one second.

mod daemon_rig;
mod vfio_client;

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use daemon_rig::{define, sim_daemon, start};
use guest_tools::rmapi::VgpuTransport;
use guest_tools::workload::{
    paired_work, GpuContext, MemoryMode, StreamConfig, StreamReport, TsgSettings,
};
use mdev::control::{Request, Response};
use mdev::poller::PollConfig;
use mdev::vm_scheduler::VmScheduler;

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
fn guest(path: String, seconds: f64, started: mpsc::Sender<u64>) -> StreamReport {
    let (driver, _window) = vfio_client::attach(&path);
    let t = VgpuTransport::new(driver);
    let ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Window).unwrap();
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
    ctx.stream(cfg, &ring, &mut |ns| {
        let _ = started.send(ns);
    })
    .unwrap()
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
    let gpu = daemon.host().gpu();
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
            std::thread::spawn(move || guest(p, seconds, tx))
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
