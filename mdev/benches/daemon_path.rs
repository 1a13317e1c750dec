//! The path through vgpud against the in-process device it replaced, with the guest-tools
//! driver and RM client on the far side (what a guest runs, minus the VM):
//!
//! * escape round trip (`RM_CONTROL(NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES)`, as the guest bench
//!   issues it): in-process `VgpuDevice` (baseline), vgpud with its poller, vgpud without;
//! * one doorbell write alone, and doorbell to semaphore (one workload round, one entry per
//!   channel, no compute work, window memory), over the same three paths;
//! * the poller's CPU, idle and under the polled escape load;
//! * shares and aggregate throughput of 2, 4 and 8 VMs (`sim-17c` instances, each streaming
//!   5 ms compute units) under 1:1, 3:1 and 1:2:3:4, against one VM alone in the same run.
//!
//! Run: `cargo bench -p mdev --bench daemon_path [-- ESCAPES [STREAM_SECONDS]]`.

#[path = "../tests/daemon_rig/mod.rs"]
mod daemon_rig;
#[path = "../tests/vfio_client/mod.rs"]
mod vfio_client;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon_rig::{define_type, sim_daemon, start};
use guest_tools::driver::{ByteBar, Setup, SharedWindow, VgpuDriver};
use guest_tools::rmapi::{RmClient, VgpuTransport};
use guest_tools::workload::{
    GpuContext, MemoryMode, StreamConfig, StreamReport, TsgSettings, MAX_STREAM_DEPTH,
};
use mdev::control::{Request, Response, Status};
use mdev::daemon::Daemon;
use mdev::poller::{PollConfig, Poller};
use mdev::profile;
use mdev::sim_host::{GpuHost as _, SimHost};
use mdev::vm_scheduler::VmScheduler;
use rm_abi::alloc_params::Nv0080AllocParameters;
use rm_abi::class;
use rm_abi::ctrl::{Nv0080CtrlGpuGetNumSubdevicesParams, NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES};
use vgpu::VgpuDevice;

const SEC: u64 = 1_000_000_000;
const WINDOW: u64 = 4 << 20;

/// BAR0 as direct calls into an in-process device (the path vgpud replaced), with the thread
/// that makes waiting requests again kicked when a write leaves one, as vgpud's server does.
struct DeviceBar(Arc<Mutex<VgpuDevice>>, Poller);

impl ByteBar for DeviceBar {
    fn read_bytes(&self, off: u32, buf: &mut [u8]) {
        self.0.lock().unwrap().bar_read(0, u64::from(off), buf);
    }
    fn write_bytes(&self, off: u32, data: &[u8]) {
        let mut d = self.0.lock().unwrap();
        d.bar_write(0, u64::from(off), data);
        if d.waiting() {
            self.1.kick();
        }
    }
}

/// p50 and p99 in µs (sorts `samples`).
fn percentiles(samples: &mut [Duration]) -> (f64, f64) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6)
}

/// One path's figures.
struct PathRun {
    escape: (f64, f64),
    doorbell_write: (f64, f64),
    doorbell_to_semaphore: (f64, f64),
    /// Notifies per escape the device counted (each one an exit in a VM).
    notifies_per_escape: f64,
}

fn run_path(t: &VgpuTransport, escapes: usize, rounds: usize) -> PathRun {
    let mut c = RmClient::open(t).unwrap();
    let client = c.alloc_root().unwrap();
    let device = c
        .alloc(
            client,
            client,
            class::NV01_DEVICE_0,
            &mut Nv0080AllocParameters::default(),
        )
        .unwrap();
    let mut query = || {
        let mut p = Nv0080CtrlGpuGetNumSubdevicesParams::default();
        c.control(
            client,
            device,
            NV0080_CTRL_CMD_GPU_GET_NUM_SUBDEVICES,
            &mut p,
        )
        .unwrap();
        assert_eq!(p.numSubDevices, 1);
    };
    for _ in 0..escapes / 10 {
        query();
    }
    let before = t.driver().counters();
    let mut esc: Vec<Duration> = (0..escapes)
        .map(|_| {
            let s = Instant::now();
            query();
            s.elapsed()
        })
        .collect();
    let after = t.driver().counters();
    c.free(client, client, client).unwrap();
    c.close().unwrap();

    let mut ctx = GpuContext::create(t, TsgSettings::default(), MemoryMode::Window).unwrap();
    let ring = |tok: u32| t.driver().doorbell(tok);
    let token = ctx.objects().token[0];
    // A doorbell with nothing new in GP_PUT: the write's own cost.
    let mut writes: Vec<Duration> = (0..rounds)
        .map(|_| {
            let s = Instant::now();
            ring(token);
            s.elapsed()
        })
        .collect();
    let mut lat: Vec<Duration> = (0..rounds)
        .map(|_| ctx.round(1, 0, &ring).unwrap().doorbell_to_semaphores)
        .collect();
    ctx.destroy().unwrap();
    PathRun {
        escape: percentiles(&mut esc),
        doorbell_write: percentiles(&mut writes),
        doorbell_to_semaphore: percentiles(&mut lat),
        notifies_per_escape: (after.queue_notifies - before.queue_notifies) as f64
            / (after.requests - before.requests).max(1) as f64,
    }
}

fn status(d: &mut Daemon) -> Status {
    match d.handle(Request::Status) {
        Response::Status(s) => s,
        other => panic!("status: {other:?}"),
    }
}

/// Defines a manual `sim-17c` instance (eight fit on the sim GPU).
fn define(d: &mut Daemon, uuid: &str, gfid: u32, tenant: &str) {
    define_type(d, "sim-17c", uuid, gfid, tenant);
}

fn uuid(i: usize) -> String {
    format!("6f1d0c2a-5a8e-4c8b-9b1e-1b0f7c9e{:04x}", 0x300 + i)
}

/// One VM's stream on the instance at `path`; sends its first completion's GPU time.
fn stream(path: String, seconds: f64, started: mpsc::Sender<u64>) -> StreamReport {
    let (driver, _window) = vfio_client::attach(&path);
    let t = VgpuTransport::new(driver);
    let ctx = GpuContext::create(&t, TsgSettings::default(), MemoryMode::Window).unwrap();
    let cfg = StreamConfig {
        duration: Duration::from_secs_f64(seconds),
        depth: MAX_STREAM_DEPTH,
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

/// What `weights.len()` VMs streaming side by side did.
struct ShareRun {
    /// Largest |achieved - target| share over VMs and whole seconds, percentage points.
    max_error_pp: f64,
    /// All VMs' work per second of GPU time (mean over the whole seconds).
    work_per_s: f64,
    /// Whole seconds measured.
    windows: usize,
}

fn run_shares(weights: &[u32], seconds: f64) -> ShareRun {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = sim_daemon(dir.path(), Some(PollConfig::default()));
    let mut policy = String::from("policy = \"weighted\"\n");
    for (i, w) in weights.iter().enumerate() {
        policy += &format!("[[tenant]]\nname = \"vm{i}\"\nweight = {w}\n");
    }
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let gpu = daemon.host().sim_gpu().expect("the sim GPU");
    daemon.set_scheduler(VmScheduler::start(gpu, &policy_path, None).unwrap());
    let paths: Vec<String> = (0..weights.len())
        .map(|i| {
            define(&mut daemon, &uuid(i), i as u32 + 1, &format!("vm{i}"));
            start(&mut daemon, &uuid(i))
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let threads: Vec<_> = paths
        .into_iter()
        .map(|p| {
            let tx = tx.clone();
            std::thread::spawn(move || stream(p, seconds, tx))
        })
        .collect();
    let all = (0..weights.len())
        .map(|_| rx.recv().unwrap())
        .max()
        .unwrap();
    let reports: Vec<StreamReport> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let end = reports.iter().map(|r| r.last_gpu_ns).min().unwrap();
    let total_w: u32 = weights.iter().sum();
    let (mut max_error, mut work, mut windows) = (0.0f64, 0.0, 0);
    let mut from = all + SEC / 5;
    while from + SEC <= end {
        let w: Vec<f64> = reports
            .iter()
            .map(|r| r.work_between(from, from + SEC) as f64)
            .collect();
        let sum: f64 = w.iter().sum();
        for (wi, &weight) in w.iter().zip(weights) {
            let target = f64::from(weight) / f64::from(total_w);
            max_error = max_error.max((wi / sum.max(1.0) - target).abs());
        }
        work += sum / SEC as f64;
        windows += 1;
        from += SEC;
    }
    ShareRun {
        max_error_pp: max_error * 100.0,
        work_per_s: work / windows.max(1) as f64,
        windows,
    }
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<f64>().ok());
    let escapes = args.next().map_or(20_000, |n| n as usize);
    let seconds = args.next().unwrap_or(4.0);
    let rounds = (escapes / 20).max(200);

    // The in-process device: the RM core and the sim inside the VMM, as before vgpud.
    let host = SimHost::real_time().expect("sim GPU");
    let p = profile::resolve("sim-35c", &host.gpu_info()).unwrap();
    let dev = Arc::new(Mutex::new(host.attach(&p, 1, WINDOW, 1).unwrap()));
    // No queue polling, but a thread that makes an idle wait's request again (the device keeps
    // it open rather than wait under a lock), as the VMM's device thread would.
    let retrier = Poller::spawn(None).expect("the retry thread");
    retrier.register(&dev);
    let (base, size) = {
        let d = dev.lock().unwrap();
        (d.window().host_ptr(), d.window().size())
    };
    // SAFETY: the device, and so its window, lives in `dev` (held by the BAR and by main).
    let window = unsafe { SharedWindow::from_raw(base, size) };
    let bar = DeviceBar(dev.clone(), retrier.clone());
    let driver = VgpuDriver::new(Box::new(bar), window, Setup::Reset).unwrap();
    let inproc = run_path(&VgpuTransport::new(driver), escapes, rounds);
    drop(host);

    // vgpud, with and without its poller; the VMM's side over the vfio_user crate's client.
    let dir = tempfile::tempdir().unwrap();
    let quiet = PollConfig {
        quiet: Duration::from_secs(10),
        ..PollConfig::default()
    };
    let mut polled_daemon = sim_daemon(&dir.path().join("polled"), Some(quiet));
    define(&mut polled_daemon, &uuid(0), 1, "a");
    let path = start(&mut polled_daemon, &uuid(0));
    let (driver, _w) = vfio_client::attach(&path);
    let t = VgpuTransport::new(driver);
    // Let the poller take the queue, then measure it idle before the load.
    let mut c = RmClient::open(&t).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut polled_daemon).poller.polled == 0 {
        c.alloc_root().unwrap();
        assert!(Instant::now() < deadline, "the poller never took the queue");
    }
    c.close().unwrap();
    let idle_cpu = |d: &mut Daemon, s: Duration| {
        let c0 = status(d).poller.cpu_s;
        std::thread::sleep(s);
        (status(d).poller.cpu_s - c0) / s.as_secs_f64() * 100.0
    };
    let idle_polling = idle_cpu(&mut polled_daemon, Duration::from_secs(2));
    let c0 = status(&mut polled_daemon).poller.cpu_s;
    let wall = Instant::now();
    let polled = run_path(&t, escapes, rounds);
    let load_cpu =
        (status(&mut polled_daemon).poller.cpu_s - c0) / wall.elapsed().as_secs_f64() * 100.0;
    drop(t);
    // A guest that was busy and went quiet: the poller takes its queue, then after the quiet
    // period (50 ms) gives it back to notifications and sleeps.
    let mut sleeping_daemon = sim_daemon(&dir.path().join("back-off"), Some(PollConfig::default()));
    define(&mut sleeping_daemon, &uuid(1), 1, "a");
    let path = start(&mut sleeping_daemon, &uuid(1));
    let (driver, _w1) = vfio_client::attach(&path);
    let quiet_guest = VgpuTransport::new(driver);
    let mut c = RmClient::open(&quiet_guest).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut sleeping_daemon).poller.polled == 0 {
        c.alloc_root().unwrap();
        assert!(Instant::now() < deadline, "the poller never took the queue");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while status(&mut sleeping_daemon).poller.polled != 0 {
        std::thread::sleep(Duration::from_millis(10));
        assert!(
            Instant::now() < deadline,
            "the poller never let the quiet queue go"
        );
    }
    let idle_quiet = idle_cpu(&mut sleeping_daemon, Duration::from_secs(2));
    c.close().unwrap();

    let mut notified_daemon = sim_daemon(&dir.path().join("notified"), None);
    define(&mut notified_daemon, &uuid(2), 1, "a");
    let path = start(&mut notified_daemon, &uuid(2));
    let (driver, _w2) = vfio_client::attach(&path);
    let notified = run_path(&VgpuTransport::new(driver), escapes, rounds);

    println!(
        "vgpud path ({escapes} escapes, {rounds} doorbells and rounds per path; release build)"
    );
    println!();
    println!("| path | escape p50 (µs) | escape p99 (µs) | p50 / in-process | notifies per escape | doorbell write p50 (µs) | doorbell -> semaphore p50 (µs) | p99 (µs) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (name, r) in [
        ("in-process `VgpuDevice` (baseline)", &inproc),
        ("vgpud, polled", &polled),
        ("vgpud, notified", &notified),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            r.escape.0,
            r.escape.1,
            r.escape.0 / inproc.escape.0,
            r.notifies_per_escape,
            r.doorbell_write.0,
            r.doorbell_to_semaphore.0,
            r.doorbell_to_semaphore.1,
        );
    }
    println!();
    println!("| poller | CPU, % of one core |");
    println!("| --- | ---: |");
    println!("| idle, queue still polled (quiet period 10 s) | {idle_polling:.1} |");
    println!(
        "| idle, queue back on notifications after the quiet period (50 ms) | {idle_quiet:.1} |"
    );
    println!("| under load (the polled path's escapes, doorbells and rounds) | {load_cpu:.1} |");
    drop((polled_daemon, sleeping_daemon, notified_daemon));

    let alone = run_shares(&[1], seconds);
    println!();
    println!("VMs streaming side by side for {seconds} s under one vgpud (sim-17c each); one VM alone: {:.3} GPU-s of work per s", alone.work_per_s);
    println!();
    println!(
        "| VMs | weights | whole seconds | max share error (pp) | aggregate work vs one alone |"
    );
    println!("| ---: | --- | ---: | ---: | ---: |");
    for n in [2usize, 4, 8] {
        for pattern in [&[1u32, 1][..], &[3, 1], &[1, 2, 3, 4]] {
            let weights: Vec<u32> = (0..n).map(|i| pattern[i % pattern.len()]).collect();
            let r = run_shares(&weights, seconds);
            let name = pattern
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(":");
            println!(
                "| {n} | {name} | {} | {:.2} | {:.1} % |",
                r.windows,
                r.max_error_pp,
                r.work_per_s / alone.work_per_s * 100.0
            );
        }
    }
}
