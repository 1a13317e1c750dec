//! The `smi`, `workload`, `hostile` and `bench` commands of `vgpu-guest`.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::driver::Setup;
use crate::report::Record;
use crate::rmapi::RmClient;
use crate::session::{self, Session};
use crate::workload::{self, GpuContext, MemoryMode, RunLimit, TsgSettings};

fn strs(args: &[OsString]) -> anyhow::Result<Vec<&str>> {
    args.iter()
        .map(|a| a.to_str().context("arguments must be UTF-8"))
        .collect()
}

fn num<T: std::str::FromStr>(v: Option<&&str>, flag: &str) -> anyhow::Result<T> {
    v.and_then(|s| s.parse().ok())
        .with_context(|| format!("{flag} needs a number (see --help)"))
}

/// `vgpu-smi [--json]`.
pub fn smi(args: &[OsString]) -> anyhow::Result<()> {
    let json = match strs(args)?.as_slice() {
        [] => false,
        ["--json"] => true,
        other => bail!("smi: unexpected arguments {other:?} (usage: vgpu-smi [--json])"),
    };
    let s = Session::open(Setup::Reset)?;
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
            other => bail!("workload: unknown option {other:?} (see --help)"),
        }
    }
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be positive");
    }
    let s = Session::open(Setup::Reset)?;
    let t = &s.transport;
    let memory = memory.unwrap_or_else(|| MemoryMode::best(t));
    let mut ctx = GpuContext::create(t, TsgSettings::default(), memory)?;
    if smi {
        let (client, tsgs) = (ctx.objects().client, ctx.own_tsgs());
        let r = s.smi(ctx.client(), client, &tsgs)?;
        print!("{}", r.to_text());
    }
    let ring = |tok: u32| t.driver().doorbell(tok);
    let limit = RunLimit {
        rounds,
        duration: Duration::from_secs_f64(seconds),
    };
    let mut on_round = |r: u64| {
        if progress {
            println!("progress: round {r}");
        }
    };
    let report = workload::run(&mut ctx, limit, batch, work_ns, &ring, &mut on_round)?;
    ctx.destroy()?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "workload: {} rounds, {} GPFIFO entries, {} semaphores checked, {} copies checked, \
             {:.0} entries/s over {:.2} s ({:?} memory)",
            report.rounds,
            report.entries,
            report.semaphores_checked,
            report.copies_checked,
            report.entries_per_sec,
            report.seconds,
            report.memory
        );
    }
    Ok(())
}

/// `vgpu-guest hostile`: one result line per check; fails if any check failed.
pub fn hostile() -> anyhow::Result<()> {
    let s = Session::open(Setup::Reset)?;
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

/// `vgpu-guest bench [--escapes N] [--rounds N]`.
pub fn bench(args: &[OsString]) -> anyhow::Result<()> {
    let args = strs(args)?;
    let (mut escapes, mut rounds) = (2000usize, 500usize);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--escapes" => escapes = num(it.next(), "--escapes")?,
            "--rounds" => rounds = num(it.next(), "--rounds")?,
            other => bail!("bench: unknown option {other:?} (see --help)"),
        }
    }
    let s = Session::open(Setup::Reset)?;
    eprintln!("bench: {escapes} escapes, {rounds} doorbell rounds");
    let b = session::bench(&s.transport, escapes, rounds)?;
    println!(
        "escape round trip: p50 {:.1} us, p99 {:.1} us ({} samples)",
        b.escape.p50_us, b.escape.p99_us, b.escape.n
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

/// The `vgpu` scenario of the agent: every program once, each reporting a result line.
pub fn scenario() -> anyhow::Result<()> {
    {
        let s = Session::open(Setup::Reset)?;
        Record::Smi(Box::new(s.smi_standalone()?)).emit();
        let t = &s.transport;
        let mut ctx = GpuContext::create(t, TsgSettings::default(), MemoryMode::best(t))?;
        let (client, tsgs) = (ctx.objects().client, ctx.own_tsgs());
        let report = s.smi(ctx.client(), client, &tsgs)?;
        print!("{}", report.to_text());
        Record::Smi(Box::new(report)).emit();
        let ring = |tok: u32| t.driver().doorbell(tok);
        let limit = RunLimit {
            rounds: Some(200),
            duration: Duration::from_secs(60),
        };
        let report = workload::run(&mut ctx, limit, 8, 10_000, &ring, &mut |_| {})?;
        ctx.destroy()?;
        Record::Workload(report).emit();
        let checks = crate::hostile::run(t)?;
        for c in checks {
            Record::Hostile(c).emit();
        }
        Record::Bench(session::bench(t, 1000, 200)?).emit();
        let mut c = RmClient::open(t)?;
        c.alloc_root()?;
        c.close()?;
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    Record::KillCleanup(session::kill_and_reset(&exe, 20)?).emit();
    Ok(())
}
