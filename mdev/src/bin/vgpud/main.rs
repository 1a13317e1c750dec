//! `vgpud`: the host daemon that owns the GPU.
//!
//! With `--backend sim` (the default) it holds the RM core over the sim GPU and serves vGPU
//! instances to VMMs over vfio-user (`vms`); with `--backend nvidia` it enforces the policy on a
//! real GPU for host processes running `librmshim.so` (`nvidia`).

mod nvidia;
mod vms;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// The GPU the daemon drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendKind {
    /// The simulated Hopper GPU; serves vGPU instances to VMs over vfio-user.
    Sim,
    /// The host's NVIDIA GPU; gates the channels of `librmshim.so` process tenants.
    Nvidia,
    /// The host's NVIDIA GPU; serves vGPU instances to VMs over vfio-user (no policy yet).
    NvidiaVm,
}

#[derive(Parser, Debug)]
#[command(
    name = "vgpud",
    version,
    about = "The vGPU host daemon: owns the GPU, serves vGPU instances to VMs over vfio-user, \
        and enforces per-tenant scheduling policies",
    long_about = "The vGPU host daemon: owns the GPU, serves vGPU instances to VMs over vfio-user, \
        and enforces per-tenant scheduling policies.\n\n\
        --backend sim (default): the RM core and the simulated H200 run in this process. \
        Instances are defined and started with `vgpuctl` (definitions are JSON files in mdevctl's \
        schema under --config-dir; `start: auto` ones start with the daemon). Each started \
        instance is a vfio-user socket <run-dir>/<uuid>.sock that one VMM at a time attaches to \
        (`vgpu-vmm --vgpu socket=PATH`, or QEMU's vfio-user-pci). A poller thread serves active \
        escape queues from the shared window without VM exits (--no-poll turns it off). With \
        --policy, every instance's channel groups are scheduled by the policy file: an instance \
        belongs to the policy tenant its definition names, and a tenant's share is the sum of \
        its instances'. The file is reloaded on SIGHUP and when it changes; an invalid file \
        leaves the old policy in force.\n\n\
        --backend nvidia-vm: as sim, but the RM core runs every guest's calls on the host's \
        NVIDIA GPU (--gpu N): each guest's RM tree becomes objects of vgpud's own clients on \
        the driver, window pages the guest wraps as OS descriptors become real system memory \
        the GPU reads and writes in place, and doorbells go to the real usermode page. No \
        --policy yet. Instance types keep the sim's names (sim-141c ... sim-17c), divided from \
        the real GPU's framebuffer.\n\n\
        --backend nvidia: tenants are processes started with LD_PRELOAD=librmshim.so; they \
        connect to --socket and name themselves with VGPU_TENANT. Each policy tenant's first \
        GFID identifies it. At start the daemon re-enables every channel listed in --state; on \
        SIGTERM or SIGINT it re-enables every channel it gated and exits.\n\n\
        Check a policy file first with `vgpu-sched check FILE`."
)]
struct Cli {
    /// Which GPU to drive.
    #[arg(long, value_enum, default_value = "sim")]
    backend: BackendKind,
    /// Scheduling policy file (TOML, see `vgpu-sched check`); reloaded on SIGHUP or change.
    /// Required with --backend nvidia.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// sim: where instance definitions live (`<dir>/vgpu-sim-0/<uuid>`).
    #[arg(long, value_name = "DIR", default_value = "/etc/vgpud")]
    config_dir: PathBuf,
    /// sim: where the control socket (`vgpud.sock`) and the instances' sockets go.
    #[arg(long, value_name = "DIR", default_value = "/run/vgpud")]
    run_dir: PathBuf,
    /// sim: size of each instance's window (BAR2): a power of two, 64K..16G.
    #[arg(long, value_name = "SIZE", default_value = "64M")]
    window: String,
    /// sim: serve escape queues only when the guest notifies (no poller thread).
    #[arg(long)]
    no_poll: bool,
    /// sim: serve `vgpuctl status`'s per-instance figures as Prometheus metrics at
    /// http://ADDR/metrics: HOST:PORT, :PORT (loopback) or HOST (port 9464). Give a
    /// non-loopback HOST only on a trusted network: the endpoint has no authentication.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// nvidia: Unix socket tenants connect to.
    #[arg(long, value_name = "PATH", default_value = "/run/vgpud.sock")]
    socket: PathBuf,
    /// nvidia: the socket's permission bits, in octal: 660 lets the daemon's user and group
    /// connect (`chgrp` the socket to the tenants' group); 666 lets every local user, who can
    /// then name any tenant.
    #[arg(long, value_name = "OCTAL", default_value = "660", value_parser = parse_mode)]
    socket_mode: u32,
    /// nvidia: file listing the channels of connected tenants (rewritten on every change).
    #[arg(long, value_name = "PATH", default_value = "/run/vgpud.state")]
    state: PathBuf,
    /// nvidia, nvidia-vm: GPU minor number (/dev/nvidiaN).
    #[arg(long, value_name = "N", default_value_t = 0)]
    gpu: u32,
    /// nvidia: write statistics (JSON) here every second and at exit.
    #[arg(long, value_name = "PATH")]
    stats: Option<PathBuf>,
    /// Append the scheduler log (JSON lines shaped like `nvidia-smi vgpu -sl`) to this file every
    /// second; render it with `vgpu-sched log FILE --svg out.svg`.
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
}

/// An octal permission mode of at most 0o777.
fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|&m| m <= 0o777)
        .ok_or_else(|| format!("{s:?} is not an octal mode of at most 777"))
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // The connection caps, not the default 1024 descriptors, bound the daemon's clients.
    let fds = mdev::acceptor::raise_fd_limit();
    tracing::debug!("open-file limit {fds}");
    let result = match cli.backend {
        BackendKind::Nvidia => match cli.policy {
            Some(policy) => nvidia::run(nvidia::NvidiaArgs {
                policy,
                socket: cli.socket,
                socket_mode: cli.socket_mode,
                state: cli.state,
                gpu: cli.gpu,
                stats: cli.stats,
                log: cli.log,
            }),
            None => Err(anyhow::anyhow!("--backend nvidia needs --policy FILE")),
        },
        BackendKind::Sim | BackendKind::NvidiaVm => vms::run(vms::VmArgs {
            gpu: match cli.backend {
                BackendKind::NvidiaVm => vms::VmGpu::Nvidia(cli.gpu),
                _ => vms::VmGpu::Sim,
            },
            policy: cli.policy,
            config_dir: cli.config_dir,
            run_dir: cli.run_dir,
            window: cli.window,
            poll: !cli.no_poll,
            metrics: cli.metrics,
            log: cli.log,
        }),
    };
    if let Err(e) = result {
        eprintln!("vgpud: {e:#}");
        std::process::exit(1);
    }
}
