//! `vgpu-vmm`: boots one Linux guest on KVM. See `vgpu-vmm --help` and the `vmm` crate docs
//! for the exit statuses.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;

use vmm::cli::Args;
use vmm::devices;
use vmm::devices::vfio_user::{stats_report, AttachedDevice};
use vmm::exit::{GuestExit, STATUS_GUEST_DIED, STATUS_USAGE};
use vmm::vm::{ConsoleOutput, Vm};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help / --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let line = rendered.lines().next().unwrap_or("error: bad arguments");
            eprintln!("vgpu-vmm: {line}");
            return ExitCode::from(STATUS_USAGE as u8);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let started = Instant::now();
    let (outcome, stats, vgpu) = match run(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vgpu-vmm: error: {e:#}");
            return ExitCode::from(STATUS_GUEST_DIED as u8);
        }
    };
    if args.stats {
        eprint!("{}", stats.report());
        eprintln!("stats: run_ms {}", started.elapsed().as_millis());
        for (i, v) in vgpu.iter().enumerate() {
            let counters = v
                .function
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counters();
            eprint!("{}", stats_report(i, &counters));
        }
    }
    drop(vgpu);
    match &outcome {
        GuestExit::Died { .. } => eprintln!("vgpu-vmm: {outcome}"),
        other => tracing::info!("{other}"),
    }
    ExitCode::from(outcome.status() as u8)
}

fn run(
    args: &Args,
) -> anyhow::Result<(GuestExit, Arc<vmm::stats::ExitStats>, Vec<AttachedDevice>)> {
    let console = match &args.console_log {
        Some(path) => ConsoleOutput::File(path.clone()),
        None => ConsoleOutput::Stdout,
    };
    let mut vm = Vm::new(args.memory, args.vcpus, console).context("cannot build the VM")?;
    let mut vgpu = Vec::new();
    for (i, spec) in args.vgpu.iter().enumerate() {
        let v = devices::vfio_user::attach(vm.pci_bus(), vm.shared_vm_fd(), spec, i as u32)
            .with_context(|| format!("cannot attach vGPU {}", spec.socket.display()))?;
        vgpu.push(v);
    }
    for (i, spec) in args.disk.iter().enumerate() {
        devices::virtio_blk::attach(
            vm.pci_bus(),
            vm.shared_vm_fd(),
            vm.guest_memory().clone(),
            spec,
            i,
        )
        .with_context(|| format!("cannot attach disk {}", spec.path.display()))?;
    }
    vm.load_linux(&args.kernel, args.initrd.as_deref(), &args.cmdline)
        .context("cannot load the guest")?;
    let stats = vm.stats();
    let outcome = vm.run().context("VM run failed")?;
    Ok((outcome, stats, vgpu))
}
