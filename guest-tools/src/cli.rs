//! The `smi`, `workload`, `hostile` and `bench` commands of `vgpu-guest`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::driver::{Completion, Setup};
use crate::report::Record;
use crate::rmapi::RmClient;
use crate::session::{self, Session};
use crate::workload::{
    self, GpuContext, MemoryMode, RunLimit, StreamConfig, TsgSettings, WorkloadReport,
};

fn strs(args: &[OsString]) -> anyhow::Result<Vec<&str>> {
    args.iter()
        .map(|a| a.to_str().context("arguments must be UTF-8"))
        .collect()
}

fn num<T: std::str::FromStr>(v: Option<&&str>, flag: &str) -> anyhow::Result<T> {
    v.and_then(|s| s.parse().ok())
        .with_context(|| format!("{flag} needs a number (see --help)"))
}

/// Which vGPU a command drives and how its requests complete: the flags every device
/// command takes.
#[derive(Debug, Default)]
struct Target {
    completion: Completion,
    socket: Option<PathBuf>,
}

impl Target {
    /// Consumes `a` (and its value from `it`) if it is `--completion` or `--vfio-user`.
    fn take(&mut self, a: &str, it: &mut std::slice::Iter<'_, &str>) -> anyhow::Result<bool> {
        match a {
            "--completion" => {
                self.completion = it
                    .next()
                    .context("--completion needs poll or irq")?
                    .parse()
                    .map_err(anyhow::Error::msg)?;
            }
            "--vfio-user" => {
                let path = it
                    .next()
                    .context("--vfio-user needs an instance's socket")?;
                self.socket = Some(PathBuf::from(path));
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Opens the vGPU: the instance behind `--vfio-user`, else the guest's PCI function.
    fn open(&self, setup: Setup) -> anyhow::Result<Session> {
        match &self.socket {
            Some(socket) => Session::attach(socket, setup, self.completion)
                .with_context(|| format!("attaching {}", socket.display())),
            None => Session::open(setup, self.completion),
        }
    }
}

/// `vgpu-smi [--json] [--completion poll|irq] [--vfio-user SOCKET]`.
pub fn smi(args: &[OsString]) -> anyhow::Result<()> {
    let args = strs(args)?;
    let (mut json, mut target) = (false, Target::default());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--json" => json = true,
            other if target.take(other, &mut it)? => {}
            other => bail!(
                "smi: unexpected argument {other:?} (usage: vgpu-smi [--json] \
                 [--completion poll|irq] [--vfio-user SOCKET])"
            ),
        }
    }
    let s = target.open(Setup::Reset)?;
    let r = s.smi_standalone()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", r.to_text());
    }
    Ok(())
}

/// `vgpu-guest workload [OPTIONS]`.
pub fn workload(args: &[OsString]) -> anyhow::Result<()> {
    let args = strs(args)?;
    let (mut rounds, mut seconds, mut batch, mut work_ns) = (None, 5.0f64, 8u32, 10_000u32);
    let (mut memory, mut progress, mut smi, mut json) = (None, false, false, false);
    let mut target = Target::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--rounds" => rounds = Some(num::<u64>(it.next(), "--rounds")?),
            "--seconds" => seconds = num(it.next(), "--seconds")?,
            "--batch" => batch = num(it.next(), "--batch")?,
            "--work-ns" => work_ns = num(it.next(), "--work-ns")?,
            "--memory" => {
                memory = Some(match it.next() {
                    Some(&"video") => MemoryMode::Video,
                    Some(&"window") => MemoryMode::Window,
                    _ => bail!("--memory takes video or window"),
                })
            }
            "--progress" => progress = true,
            "--smi" => smi = true,
            "--json" => json = true,
            other if target.take(other, &mut it)? => {}
            other => bail!("workload: unknown option {other:?} (see --help)"),
        }
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be positive");
    }
    let s = target.open(Setup::Reset)?;
    let limit = RunLimit {
        rounds,
        duration: Duration::from_secs_f64(seconds),
    };
    let mut on_smi = |r: crate::smi::SmiReport| print!("{}", r.to_text());
    let mut on_round = |r: u64| {
        if progress {
            println!("progress: round {r}");
        }
    };
    let report = run_workload(
        &s,
        memory,
        limit,
        (batch, work_ns),
        smi.then_some(&mut on_smi as &mut dyn FnMut(_)),
        &mut on_round,
    )?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{}", workload_line(&report));
    }
    Ok(())
}

/// One line saying what a workload run did.
pub fn workload_line(r: &WorkloadReport) -> String {
    let irq = match r.completion {
        Completion::Poll => String::new(),
        Completion::Irq => format!(", escapes by interrupt: {}", r.interrupts),
    };
    format!(
        "workload: {} rounds, {} GPFIFO entries, {} semaphores checked, {} copies checked, \
         {:.0} entries/s over {:.2} s ({:?} memory{irq})",
        r.rounds,
        r.entries,
        r.semaphores_checked,
        r.copies_checked,
        r.entries_per_sec,
        r.seconds,
        r.memory
    )
}

/// Creates the workload's objects on `s` (memory: `memory`, or the best the vGPU offers), hands
/// `on_smi` the vgpu-smi report with its channel groups, runs rounds of `(batch, work_ns)` until
/// `limit`, and destroys the objects. The report says how escapes completed.
pub fn run_workload(
    s: &Session,
    memory: Option<MemoryMode>,
    limit: RunLimit,
    (batch, work_ns): (u32, u32),
    on_smi: Option<&mut dyn FnMut(crate::smi::SmiReport)>,
    on_round: &mut dyn FnMut(u64),
) -> anyhow::Result<WorkloadReport> {
    let t = &s.transport;
    let irq_before = t.driver().interrupts();
    let memory = memory.unwrap_or_else(|| MemoryMode::best(t));
    let mut ctx = GpuContext::create(t, TsgSettings::default(), memory)?;
    if let Some(on_smi) = on_smi {
        let (client, tsgs) = (ctx.objects().client, ctx.own_tsgs());
        on_smi(s.smi(ctx.client(), client, &tsgs)?);
    }
    let ring = |tok: u32| t.driver().doorbell(tok);
    let mut report = workload::run(&mut ctx, limit, batch, work_ns, &ring, on_round)?;
    ctx.destroy()?;
    let d = t.driver();
    report.completion = d.completion();
    report.interrupts = d.interrupts() - irq_before;
    Ok(report)
}

/// `vgpu-guest hostile [--vfio-user SOCKET]`: one result line per check; fails if any check
/// failed. Always polls (the checks count the device's answers, not interrupts).
pub fn hostile(args: &[OsString]) -> anyhow::Result<()> {
    let args = strs(args)?;
    let mut target = Target::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--vfio-user" if target.take(a, &mut it)? => {}
            other => bail!("hostile: unexpected argument {other:?} (see --help)"),
        }
    }
    let s = target.open(Setup::Reset)?;
    let checks = crate::hostile::run(&s.transport)?;
    let failed = checks.iter().filter(|c| !c.ok).count();
    for c in checks {
        Record::Hostile(c).emit();
    }
    if failed > 0 {
        bail!("{failed} hostile request(s) were not refused as the protocol says");
    }
    Ok(())
}

/// `vgpu-guest bench [--escapes N] [--rounds N] [--completion poll|irq] [--vfio-user SOCKET]`.
pub fn bench(args: &[OsString]) -> anyhow::Result<()> {
    let args = strs(args)?;
    let (mut escapes, mut rounds) = (2000usize, 500usize);
    let mut target = Target::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--escapes" => escapes = num(it.next(), "--escapes")?,
            "--rounds" => rounds = num(it.next(), "--rounds")?,
            other if target.take(other, &mut it)? => {}
            other => bail!("bench: unknown option {other:?} (see --help)"),
        }
    }
    let s = target.open(Setup::Reset)?;
    eprintln!(
        "bench: {escapes} escapes ({} completion), {rounds} doorbell rounds",
        target.completion.name()
    );
    let b = session::bench(&s, escapes, rounds)?;
    println!(
        "escape round trip: p50 {:.1} us, p99 {:.1} us ({} samples, {} completion, {} interrupts)",
        b.escape.p50_us,
        b.escape.p99_us,
        b.escape.n,
        b.completion.name(),
        b.interrupts
    );
    println!(
        "doorbell to semaphore: p50 {:.1} us, p99 {:.1} us ({} rounds, {:?} memory)",
        b.doorbell_to_semaphore.p50_us,
        b.doorbell_to_semaphore.p99_us,
        b.doorbell_to_semaphore.n,
        b.memory
    );
    Record::Bench(b).emit();
    Ok(())
}

/// The `vgpu` scenario of the agent: every program once with polled completion, each reporting
/// a result line; a workload killed with SIGKILL and the device reset; then the bench and a
/// short workload again with interrupt completion (the VMM must wire INTx).
pub fn scenario() -> anyhow::Result<()> {
    {
        let s = Session::open(Setup::Reset, Completion::Poll)?;
        Record::Smi(Box::new(s.smi_standalone()?)).emit();
        let limit = RunLimit {
            rounds: Some(200),
            duration: Duration::from_secs(60),
        };
        let mut on_smi = |r: crate::smi::SmiReport| {
            print!("{}", r.to_text());
            Record::Smi(Box::new(r)).emit();
        };
        let report = run_workload(&s, None, limit, (8, 10_000), Some(&mut on_smi), &mut |_| {})?;
        Record::Workload(report).emit();
        let t = &s.transport;
        let checks = crate::hostile::run(t)?;
        for c in checks {
            Record::Hostile(c).emit();
        }
        Record::Bench(session::bench(&s, 1000, 200)?).emit();
        let mut c = RmClient::open(t)?;
        c.alloc_root()?;
        c.close()?;
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    Record::KillCleanup(session::kill_and_reset(&exe, 20)?).emit();

    // Fewer rounds than with polling: each interrupt costs a dozen exits of a nested guest
    // (about 20 ms under TCG), and the point here is that every one arrives.
    let s = Session::open(Setup::Reset, Completion::Irq)?;
    Record::Bench(session::bench(&s, 300, 100)?).emit();
    let limit = RunLimit {
        rounds: Some(50),
        duration: Duration::from_secs(60),
    };
    Record::Workload(run_workload(
        &s,
        None,
        limit,
        (8, 10_000),
        None,
        &mut |_| {},
    )?)
    .emit();
    Ok(())
}

/// The stream the `share` scenario runs: 2 ms units (20 methods of 0.1 ms), 31 in flight
/// (62 ms of queued work at a whole GPU), refilled every 2 ms, reported in 100 ms buckets.
pub fn share_stream(seconds: f64) -> StreamConfig {
    StreamConfig {
        duration: Duration::from_secs_f64(seconds),
        depth: workload::MAX_STREAM_DEPTH,
        items: 20,
        bucket: Duration::from_millis(100),
        refill_every: Duration::from_millis(2),
    }
}

/// The `share` scenario: keeps the vGPU's compute engine loaded for `seconds` and reports the
/// work it completed per 100 ms of GPU time (what several VMs sharing one GPU compare).
pub fn share(seconds: f64) -> anyhow::Result<()> {
    let s = Session::open(Setup::Reset, Completion::Poll)?;
    let t = &s.transport;
    let ctx = GpuContext::create(t, TsgSettings::default(), MemoryMode::best(t))?;
    let ring = |tok: u32| t.driver().doorbell(tok);
    let report = ctx.stream(share_stream(seconds), &ring, &mut |gpu_ns| {
        Record::StreamStart { gpu_ns }.emit();
    })?;
    println!(
        "stream: {} units of {:.1} ms in {:.1} s",
        report.units,
        report.unit_ns as f64 / 1e6,
        report.seconds
    );
    Record::Stream(report).emit();
    Ok(())
}

/// The `demo` scenario (what `cargo demo` shows): `vgpu-smi`, then the workload for
/// `seconds`, both printed as text on the console and reported as result lines.
pub fn demo(seconds: f64) -> anyhow::Result<()> {
    let s = Session::open(Setup::Reset, Completion::Poll)?;
    let smi = s.smi_standalone()?;
    print!("{}", smi.to_text());
    Record::Smi(Box::new(smi)).emit();
    let limit = RunLimit {
        rounds: None,
        duration: Duration::from_secs_f64(seconds),
    };
    let report = run_workload(&s, None, limit, (8, 10_000), None, &mut |_| {})?;
    println!("{}", workload_line(&report));
    Record::Workload(report).emit();
    Ok(())
}
