//! `vgpud --backend sim` and `--backend nvidia-vm`: the RM core over the sim GPU or the host's
//! NVIDIA GPU, vGPU instances served over vfio-user, the control socket `vgpuctl` talks to.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use mdev::control::{Request, Response, MAX_LINE};
use mdev::daemon::Daemon;
use mdev::metrics::MetricsServer;
use mdev::nvidia_host::NvidiaHost;
use mdev::poller::{PollConfig, Poller};
use mdev::protocol::{peer_credentials, ConnectionSlots};
use mdev::sim_host::{GpuHost, SimHost};
use mdev::vm_scheduler::VmScheduler;

/// Control connections served at once; more are closed at once.
const MAX_CONTROL_CONNECTIONS: usize = 16;

/// How long a control client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The GPU behind the instances.
#[derive(Debug, Clone, Copy)]
pub enum VmGpu {
    /// The simulated H200.
    Sim,
    /// The host's NVIDIA GPU with this minor number.
    Nvidia(u32),
}

/// What the VM daemon needs from the command line.
#[derive(Debug)]
pub struct VmArgs {
    /// The GPU.
    pub gpu: VmGpu,
    /// Policy file.
    pub policy: Option<PathBuf>,
    /// Definitions directory.
    pub config_dir: PathBuf,
    /// Sockets directory.
    pub run_dir: PathBuf,
    /// Window size, as typed.
    pub window: String,
    /// Run the poller.
    pub poll: bool,
    /// Metrics address.
    pub metrics: Option<String>,
    /// Scheduler log file.
    pub log: Option<PathBuf>,
}

fn lock(d: &Mutex<Daemon>) -> MutexGuard<'_, Daemon> {
    d.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until SIGTERM or SIGINT.
pub fn run(args: VmArgs) -> Result<()> {
    let window = vgpu::window::parse_size(&args.window)
        .filter(|w| {
            w.is_power_of_two()
                && (vgpu::protocol::MIN_WINDOW_SIZE..=vgpu::protocol::MAX_WINDOW_SIZE).contains(w)
        })
        .with_context(|| {
            format!(
                "--window {}: not a power of two between 64K and 16G",
                args.window
            )
        })?;
    if args.log.is_some() && args.policy.is_none() {
        bail!("--log records the scheduler's decisions: it needs --policy FILE");
    }
    let metrics_addr = args
        .metrics
        .as_deref()
        .map(mdev::metrics::parse_addr)
        .transpose()?;
    let host: Box<dyn GpuHost> = match args.gpu {
        VmGpu::Sim => Box::new(SimHost::real_time().context("starting the sim GPU")?),
        VmGpu::Nvidia(minor) => {
            if args.policy.is_some() {
                bail!(
                    "--policy is not supported with --backend nvidia-vm yet: the VM scheduler's \
                     levers are the sim's (instances share the GPU by the hardware's round robin)"
                );
            }
            let host = NvidiaHost::open(minor)
                .with_context(|| format!("opening /dev/nvidia{minor} for VM instances"))?;
            eprintln!(
                "vgpud: VM instances on {} (/dev/nvidia{minor})",
                host.gpu_info().name
            );
            Box::new(host)
        }
    };
    let poller =
        Poller::spawn(args.poll.then(PollConfig::default)).context("starting the poller")?;
    let (daemon, skipped) = Daemon::new(
        host,
        &args.config_dir,
        &args.run_dir,
        window,
        poller,
        args.poll,
    )?;
    for e in skipped {
        eprintln!("vgpud: skipping a definition: {e}");
    }
    let daemon = Arc::new(Mutex::new(daemon));
    if let Some(policy) = &args.policy {
        let gpu = lock(&daemon)
            .host()
            .sim_gpu()
            .context("the VM scheduler needs the sim GPU")?;
        let sched = VmScheduler::start(gpu, policy, args.log.as_deref())
            .with_context(|| format!("starting the scheduler with {}", policy.display()))?;
        eprintln!(
            "vgpud: scheduling by {} ({})",
            policy.display(),
            sched.view().policy
        );
        lock(&daemon).set_scheduler(sched);
    }
    let _metrics = match metrics_addr {
        Some(addr) => {
            let d = daemon.clone();
            let m = MetricsServer::start(addr, move || match lock(&d).handle(Request::Status) {
                Response::Status(s) => s,
                _ => unreachable!("status always answers with a status"),
            })?;
            if !m.addr().ip().is_loopback() {
                eprintln!(
                    "vgpud: warning: metrics are served beyond this host on {}",
                    m.addr()
                );
            }
            eprintln!("vgpud: metrics on http://{}/metrics", m.addr());
            Some(m)
        }
        None => None,
    };
    for e in lock(&daemon).start_auto() {
        eprintln!("vgpud: {e}");
    }

    let control = args.run_dir.join("vgpud.sock");
    let _ = std::fs::remove_file(&control);
    let listener =
        UnixListener::bind(&control).with_context(|| format!("binding {}", control.display()))?;
    std::fs::set_permissions(&control, std::fs::Permissions::from_mode(0o600))?;
    {
        let daemon = daemon.clone();
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || accept(listener, daemon))?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    {
        let d = lock(&daemon);
        eprintln!(
            "vgpud: {}, {} instance(s) defined, {} started; control socket {}",
            d.host().gpu_info().name,
            d.definitions().iter().count(),
            d.running().len(),
            control.display()
        );
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    lock(&daemon).stop_all();
    let _ = std::fs::remove_file(&control);
    eprintln!("vgpud: stopped");
    Ok(())
}

fn accept(listener: UnixListener, daemon: Arc<Mutex<Daemon>>) {
    // One limit for all: the control socket is the operator's, not the tenants'.
    let slots = ConnectionSlots::new(MAX_CONTROL_CONNECTIONS, MAX_CONTROL_CONNECTIONS);
    mdev::acceptor::accept_loop(&listener, |stream| {
        let Ok(peer) = peer_credentials(&stream) else {
            return;
        };
        let Some(slot) = slots.try_acquire(peer.uid) else {
            return;
        };
        let daemon = daemon.clone();
        let _ = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let _slot = slot;
                serve(stream, &daemon)
            });
    });
}

/// One control connection: requests and answers, one JSON line each, until end of file.
fn serve(stream: UnixStream, daemon: &Mutex<Daemon>) {
    if stream.set_read_timeout(Some(REQUEST_TIMEOUT)).is_err() {
        return;
    }
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut buf = Vec::new();
        match reader
            .by_ref()
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let response = if buf.len() > MAX_LINE {
            Response::Error(format!("request longer than {MAX_LINE} bytes"))
        } else {
            match serde_json::from_slice::<Request>(&buf) {
                Ok(req) => lock(daemon).handle(req),
                Err(e) => Response::Error(format!("bad request: {e}")),
            }
        };
        let mut line = serde_json::to_string(&response).unwrap_or_default();
        line.push('\n');
        if out.write_all(line.as_bytes()).is_err() || buf.len() > MAX_LINE {
            return;
        }
    }
}
