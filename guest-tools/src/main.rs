//! `vgpu-guest`: the test guest's init agent, and the harness's `timed-run` helper.

use anyhow::{bail, Context};
use guest_tools::agent::{self, AgentMode};
use guest_tools::timed_run::{self, TimedRunSpec};
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

const HELP: &str = "\
vgpu-guest: test agent of the vGPU test guest

USAGE:
    vgpu-guest                       as PID 1: run the agent as init (mount proc, sys, dev;
                                     run the scenario named by vgpu.scenario= on the kernel
                                     command line; print result lines; power off)
    vgpu-guest agent                 run the agent as a normal process (no mounts, no power-off)
    vgpu-guest timed-run [OPTIONS] -- COMMAND [ARGS...]
                                     run COMMAND, relay its stdout as `LABEL| line` and stderr as
                                     `LABEL! line`, then print a timed_run result line with the
                                     time from spawn to its first VGPU-RESULT stdout line
    vgpu-guest smi [--json] [--completion poll|irq] [--vfio-user SOCKET]
                                     vgpu-smi: GPU name, UUID, framebuffer, engines, vGPU
                                     counters, in nvidia-smi -q style (also run as `vgpu-smi`)
    vgpu-guest workload [OPTIONS]    compute + copy TSGs, GPFIFO work with semaphore releases
                                     through the doorbell, every value checked; prints entries/s
    vgpu-guest hostile [--vfio-user SOCKET]
                                     send the vGPU malformed requests and foreign doorbells,
                                     check each is refused, then check it still serves
    vgpu-guest bench [--escapes N] [--rounds N] [--completion poll|irq] [--vfio-user SOCKET]
                                     escape round trip and doorbell-to-semaphore latency (p50/p99)
    vgpu-guest cmdline-param KEY     print the value of KEY=VALUE from /proc/cmdline (quotes
                                     removed; empty line when absent); for the harness init script
    vgpu-guest --help                this text

WORKLOAD OPTIONS:
    --rounds N          stop after N rounds (default: run for --seconds)
    --seconds S         stop after S seconds (default 5)
    --batch B           GPFIFO entries per channel per round: 1, 2, 4, ... 32 (default 8)
    --work-ns NS        sim compute work per compute entry in ns (default 10000; 0 sends only
                        real Hopper methods, for a real GPU)
    --memory MODE       window (OS descriptors over window pages, the default when the vGPU
                        offers them) or video (video memory through MAPPING_READ/WRITE)
    --progress          print `progress: round N` after every round
    --smi               print the vgpu-smi report with this process's channel groups first
    --json              print the results as one JSON object
    --completion MODE   poll (default) or irq (smi and bench take it too; hostile always polls)
    --vfio-user SOCKET  drive a vgpud instance from this host process (smi, bench and hostile
                        take it too; see WITHOUT A VM)

COMPLETION:
    poll   spin on the escape queue's used ring (INTR_ENABLE = 0)
    irq    bind the vGPU to uio_pci_generic (loaded if needed; `10de 7f61` > its new_id),
           enable INTR_ENABLE.QUEUE, and sleep on /dev/uioN until the device's INTx for each
           escape; acknowledge INTR_STATUS, then unmask by clearing Command.INTx_Disable in
           the function's sysfs config file (uio_pci_generic masks it per interrupt). Needs the
           VMM's `--vgpu ...,intr=intx`. Semaphores of GPU work are always polled in memory
           (the device has no interrupt cause for them).

The vGPU is found in /sys/bus/pci/devices (10de:7f61), its BARs mapped through resourceN; one
process drives it at a time (a lock on resource0). Needs root.

WITHOUT A VM:
    --vfio-user SOCKET attaches the instance at SOCKET (`vgpuctl start` prints it) from a host
    process, as a VMM would: BAR0 accesses become vfio-user region messages, the window is
    mapped from the memfd vgpud sends, and with --completion irq an eventfd of this process
    is the INTx trigger. One client per instance at a time (a VMM attached to it holds it).
    Needs access to the socket (vgpud's user), not root.

TIMED-RUN OPTIONS:
    --label LABEL      label of relayed lines and of the result (default: run)
    --timeout SECS     kill COMMAND after SECS seconds (default: 120)
    --partial-after MS relay a line without its newline once COMMAND was quiet MS ms (a
                       login prompt); by default only whole lines are relayed
    --mark TEXT        time the first stdout output holding TEXT (repeatable; the record's
                       marks_us, in order)
    --stop-after-marks kill COMMAND once every mark has been seen and no line holding one
                       is still unfinished (ended, or relayed by --partial-after)

Result lines are `VGPU-RESULT {json}`, one JSON object with a `record` tag each
(agent, module, pci_function, scenario_end, timed_run, harness_start, harness_end).
Scenarios: probe (default): boot time, load virtio_pci and uio_pci_generic, list PCI functions.
           vgpu: what probe does, then vgpu-smi, workload, hostile requests, bench, then a
           workload killed with SIGKILL and the device reset (all against the vGPU, one
           result line each), then bench and a 50-round workload with irq completion (needs
           intr=intx).
           demo: vgpu-smi, then a 3 s workload, as text and result lines.
";

fn main() {
    if let Err(e) = run() {
        eprintln!("vgpu-guest: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if std::process::id() == 1 {
        agent::run(AgentMode { as_init: true });
        unreachable!("the agent powers off as init");
    }
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "vgpu-smi")
    {
        return guest_tools::cli::smi(&args);
    }
    let first = args.first().and_then(|a| a.to_str());
    match first {
        Some("smi") => guest_tools::cli::smi(&args[1..]),
        Some("workload") => guest_tools::cli::workload(&args[1..]),
        Some("hostile") => guest_tools::cli::hostile(&args[1..]),
        Some("bench") => guest_tools::cli::bench(&args[1..]),
        Some("--help") | Some("-h") | Some("help") => {
            print!("{HELP}");
            Ok(())
        }
        Some("agent") if args.len() == 1 => {
            let ok = agent::run(AgentMode { as_init: false });
            std::process::exit(if ok { 0 } else { 1 });
        }
        Some("cmdline-param") if args.len() == 2 => {
            let key = args[1]
                .to_str()
                .context("cmdline-param: KEY is not UTF-8")?;
            let value = guest_tools::cmdline::param(&guest_tools::cmdline::read_proc(), key);
            println!("{}", value.unwrap_or_default());
            Ok(())
        }
        Some("timed-run") => {
            let spec = parse_timed_run(&args[1..])?;
            let result = timed_run::run_and_report(&spec)?;
            std::process::exit(result.exit_code.unwrap_or(1));
        }
        Some(other) => bail!("unknown command or argument {other:?} (see --help)"),
        None => bail!("not PID 1: give a command (see --help)"),
    }
}

fn parse_timed_run(args: &[OsString]) -> anyhow::Result<TimedRunSpec> {
    let mut label = "run".to_string();
    let mut timeout = Duration::from_secs(120);
    let mut partial_after = None;
    let mut marks = Vec::new();
    let mut stop_after_marks = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.to_str() {
            Some("--") => {
                let command: Vec<OsString> = it.cloned().collect();
                if command.is_empty() {
                    bail!("timed-run: no command after --");
                }
                if stop_after_marks && marks.is_empty() {
                    bail!("timed-run: --stop-after-marks needs at least one --mark");
                }
                return Ok(TimedRunSpec {
                    label,
                    timeout,
                    command,
                    partial_after,
                    marks,
                    stop_after_marks,
                });
            }
            Some("--label") => {
                label = value(it.next(), "--label")?;
            }
            Some("--partial-after") => {
                let ms: u64 = value(it.next(), "--partial-after")?
                    .parse()
                    .context("timed-run: --partial-after takes milliseconds")?;
                partial_after = Some(Duration::from_millis(ms.max(1)));
            }
            Some("--mark") => {
                let mark = value(it.next(), "--mark")?;
                if mark.is_empty() {
                    bail!("timed-run: --mark takes a non-empty text");
                }
                marks.push(mark);
            }
            Some("--stop-after-marks") => stop_after_marks = true,
            Some("--timeout") => {
                let secs: f64 = value(it.next(), "--timeout")?
                    .parse()
                    .context("timed-run: --timeout takes seconds")?;
                if !(secs.is_finite() && secs > 0.0) {
                    bail!("timed-run: --timeout must be positive");
                }
                timeout = Duration::from_secs_f64(secs);
            }
            _ => bail!("timed-run: unexpected argument {arg:?} (see --help)"),
        }
    }
    bail!("timed-run: missing `-- COMMAND`")
}

fn value(arg: Option<&OsString>, flag: &str) -> anyhow::Result<String> {
    arg.and_then(|a| a.to_str())
        .map(str::to_string)
        .with_context(|| format!("timed-run: {flag} needs a value"))
}
