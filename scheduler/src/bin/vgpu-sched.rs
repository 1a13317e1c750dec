//! `vgpu-sched`: validate scheduling policy files, simulate them on a software GPU, render
//! scheduler logs as timelines, and run the scheduler benchmark.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};

use scheduler::analysis::window_shares;
use scheduler::bench::{markdown_table, run_bench, BenchConfig, TENANT_COUNTS};
use scheduler::experiment::{run, Experiment};
use scheduler::gpus::{AnyGpu, GpuKind};
use scheduler::log::SchedLog;
use scheduler::mechanism::load::LoadPattern;
use scheduler::policy_file::Policy;
use scheduler::reload::PolicyWatcher;
use scheduler::scheduler::Method;
use scheduler::timeline::{render_svg, TimelineOptions};
use scheduler::units::{format_duration, parse_duration};

#[derive(Parser)]
#[command(
    name = "vgpu-sched",
    version,
    about = "Per-tenant GPU time-slice policies for vGPUs: check, simulate, render, benchmark",
    long_about = "Per-tenant GPU time-slice policies for vGPUs.\n\n\
        A policy file (TOML) names a global policy (best_effort, equal_share, fixed_share, \
        weighted), a default timeslice and balance period, and per tenant its vGPUs or GFIDs, \
        weight, min/max share, timeslice and priority. See examples/*.toml.",
    after_help = "Examples:\n  \
        vgpu-sched check examples/weighted-3-1.toml\n  \
        vgpu-sched simulate examples/weighted-3-1.toml --tenants busy,busy --for 10s --svg out.svg --log out.jsonl\n  \
        vgpu-sched log out.jsonl --svg out.svg --from 1s --to 1.1s\n  \
        vgpu-sched bench --for 6s"
)]
struct Cli {
    /// Validate FILE and exit (same as `vgpu-sched check FILE`).
    #[arg(long, value_name = "FILE")]
    check: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate policy files without applying them; prints a summary or one error line per file.
    Check {
        /// Policy files.
        #[arg(required = true)]
        policies: Vec<PathBuf>,
    },
    /// Run a policy on a simulated GPU with synthetic tenants and print the achieved shares.
    Simulate(SimulateArgs),
    /// Render a scheduler log (JSON lines) as an SVG timeline and print its window shares.
    Log {
        /// Log written by `simulate --log` or the scheduler.
        log: PathBuf,
        /// Write the SVG timeline here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Draw from this time on (e.g. 1s).
        #[arg(long, value_parser = duration_arg)]
        from: Option<Duration>,
        /// Draw up to this time (e.g. 1.2s).
        #[arg(long, value_parser = duration_arg)]
        to: Option<Duration>,
    },
    /// Run the scheduler benchmark (2/4/8/32 tenants; 1:1, 3:1, 1:2:3:4; busy and bursty).
    Bench {
        /// GPU time per case.
        #[arg(long = "for", default_value = "6s", value_parser = duration_arg)]
        duration: Duration,
        /// GPU model to run on.
        #[arg(long, value_enum, default_value_t = GpuKind::Sim)]
        gpu: GpuKind,
        /// Method(s): auto (chosen from the GPU's levers), timeslice, gating, or all (both).
        #[arg(long, value_enum, default_value_t = MethodArg::All)]
        method: MethodArg,
        /// Tenant counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = TENANT_COUNTS.to_vec())]
        tenants: Vec<usize>,
        /// Also write the table (Markdown) to this file.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Policy file.
    policy: PathBuf,
    /// Loads, comma-separated, one per tenant in file order or one for all: busy, idle, bursty
    /// (30ms of work every 100ms) or bursty:WORK/PERIOD (e.g. bursty:5ms/20ms).
    #[arg(long, default_value = "busy")]
    tenants: String,
    /// GPU time to simulate (e.g. 10s, 500ms).
    #[arg(long = "for", default_value = "10s", value_parser = duration_arg)]
    duration: Duration,
    /// Write an SVG timeline here.
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Start of the SVG's time range (default: 1s, or 0 for runs of 1s or less).
    #[arg(long, value_parser = duration_arg)]
    svg_from: Option<Duration>,
    /// Length of the SVG's time range.
    #[arg(long, default_value = "100ms", value_parser = duration_arg)]
    svg_span: Duration,
    /// Write the scheduler log (JSON lines) here.
    #[arg(long)]
    log: Option<PathBuf>,
    /// GPU model: sim (the rm crate's software Hopper FIFO), fake (ideal GPU, all levers),
    /// fake-gsp (only channel gating and preempt take effect, as on an H200 under GSP).
    #[arg(long, value_enum, default_value_t = GpuKind::Sim)]
    gpu: GpuKind,
    /// Force a method instead of choosing from the GPU's levers.
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    method: MethodArg,
    /// Apply another policy file at a GPU time: TIME=FILE (repeatable), e.g. 5s=examples/equal-share.toml.
    #[arg(long = "reload-at", value_name = "TIME=FILE")]
    reload_at: Vec<String>,
    /// Pace GPU time to the wall clock and reload POLICY on SIGHUP or when it changes.
    #[arg(long)]
    realtime: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MethodArg {
    /// Choose from the GPU's effective levers.
    Auto,
    /// Program timeslices, let the GPU's round robin switch.
    Timeslice,
    /// Enable one tenant's channels at a time.
    Gating,
    /// Bench only: timeslice, then gating.
    All,
}

impl MethodArg {
    fn methods(self) -> Vec<Option<Method>> {
        match self {
            Self::Auto => vec![None],
            Self::Timeslice => vec![Some(Method::Timeslice)],
            Self::Gating => vec![Some(Method::Gating)],
            Self::All => vec![Some(Method::Timeslice), Some(Method::Gating)],
        }
    }
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vgpu-sched: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(path) = cli.check {
        return check(&[path]);
    }
    match cli.command {
        None => bail!("no command given; see `vgpu-sched --help`"),
        Some(Command::Check { policies }) => check(&policies),
        Some(Command::Simulate(args)) => simulate(args),
        Some(Command::Log { log, svg, from, to }) => render_log(&log, svg.as_deref(), from, to),
        Some(Command::Bench {
            duration,
            gpu,
            method,
            tenants,
            markdown,
        }) => bench(duration, gpu, method, tenants, markdown.as_deref()),
    }
}

fn check(paths: &[PathBuf]) -> Result<ExitCode> {
    let mut ok = true;
    for p in paths {
        match Policy::load(p) {
            Ok(policy) => println!("{}: ok: {policy}", p.display()),
            Err(e) => {
                println!("{e}");
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    if args.duration.is_zero() {
        bail!("--for must be longer than 0");
    }
    if args.svg_span.is_zero() {
        bail!("--svg-span must be longer than 0");
    }
    let policy = Policy::load(&args.policy)?;
    let loads = LoadPattern::parse_list(&args.tenants).map_err(anyhow::Error::msg)?;
    let methods = args.method.methods();
    if methods.len() != 1 {
        bail!("--method all is for bench only");
    }
    let mut reloads = Vec::new();
    for r in &args.reload_at {
        let (t, file) = r
            .split_once('=')
            .with_context(|| format!("--reload-at `{r}`: expected TIME=FILE"))?;
        let t = parse_duration(t).map_err(|e| anyhow::anyhow!("--reload-at `{r}`: {e}"))?;
        reloads.push((t, Policy::load(Path::new(file))?));
    }
    let exp = Experiment {
        policy: policy.clone(),
        loads,
        duration: args.duration,
        method: methods[0],
        reloads,
        sample_every: Duration::from_secs(1).min(args.duration),
        realtime: args.realtime,
    };
    let mut watcher = if args.realtime {
        Some(PolicyWatcher::new(&args.policy).context("watching the policy file")?)
    } else {
        None
    };
    if args.realtime {
        eprintln!(
            "pacing to the wall clock; edit {} or send SIGHUP (pid {}) to reload",
            args.policy.display(),
            std::process::id()
        );
    }
    let total = args.duration;
    // On a terminal the progress line rewrites itself; elsewhere (a log, a pipe) each report is
    // a line of its own, so carriage returns never glue reports together.
    let tty = std::io::stderr().is_terminal();
    let out = run(AnyGpu::new(args.gpu), &exp, watcher.as_mut(), |t| {
        let line = format!(
            "simulated {} of {}",
            format_duration(t),
            format_duration(total)
        );
        if tty {
            eprint!("\r{line}\x1b[K");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    });
    if tty {
        // End the progress line whether the run finished or failed.
        eprintln!();
    }
    let out = out?;
    println!("{} on {}, method {}", policy, out.gpu, out.method.name());
    let windows = window_shares(&out.samples);
    let skip = usize::from(windows.len() > 1);
    println!(
        "{:<16} {:>8} {:>9} {:>9} {:>9} {:>12}",
        "tenant", "target*", "achieved", "min/1s", "max/1s", "work done"
    );
    let first = &out.samples[skip.min(out.samples.len() - 1)];
    let last = out.samples.last().expect("at least one sample");
    let used: f64 = last
        .iter()
        .zip(first)
        .map(|(a, b)| (*a - *b).as_secs_f64())
        .sum();
    for (i, name) in out.tenants.iter().enumerate() {
        let achieved = (last[i] - first[i]).as_secs_f64() / used.max(1e-12);
        let per: Vec<f64> = windows.iter().skip(skip).map(|w| w[i]).collect();
        let min = per.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<16} {:>7.2}% {:>8.2}% {:>8.2}% {:>8.2}% {:>12}",
            name,
            out.targets[i] * 100.0,
            achieved * 100.0,
            min * 100.0,
            max * 100.0,
            format_duration(out.work[i])
        );
    }
    let work: Duration = out.work.iter().sum();
    println!("* target with every tenant busy; work-conserving policies give idle time to others");
    println!(
        "GPU busy with tenant work {:.2}% of {}; switching cost {} ({})",
        work.as_secs_f64() / out.end.as_secs_f64() * 100.0,
        format_duration(out.end),
        format_duration(out.switch_time),
        if skip == 1 {
            "shares exclude the first second"
        } else {
            "whole run"
        }
    );
    if let Some(path) = &args.log {
        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::new(f);
        out.log.write_jsonl(&mut w)?;
        w.flush()?;
        println!("log: {}", path.display());
    }
    if let Some(path) = &args.svg {
        let from = args.svg_from.unwrap_or(if total > Duration::from_secs(1) {
            Duration::from_secs(1)
        } else {
            Duration::ZERO
        });
        let svg = render_svg(
            &out.log,
            TimelineOptions {
                from: Some(from),
                to: Some(from + args.svg_span),
            },
        );
        std::fs::write(path, svg).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "timeline: {} ({} from {})",
            path.display(),
            format_duration(args.svg_span),
            format_duration(from)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn render_log(
    path: &Path,
    svg: Option<&Path>,
    from: Option<Duration>,
    to: Option<Duration>,
) -> Result<ExitCode> {
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            bail!("--from must be before --to");
        }
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let log =
        SchedLog::read_jsonl(BufReader::new(f)).with_context(|| path.display().to_string())?;
    println!(
        "{} records, {} slices, {} windows",
        log.records.len(),
        log.slices().count(),
        log.windows().count()
    );
    for w in log.windows() {
        let in_range = from.is_none_or(|f| w.end_ns >= f.as_nanos() as u64)
            && to.is_none_or(|t| w.start_ns <= t.as_nanos() as u64);
        if !in_range {
            continue;
        }
        let shares: Vec<String> = w
            .tenants
            .iter()
            .map(|t| format!("{} {:.1}%", t.tenant, t.share * 100.0))
            .collect();
        println!(
            "{:>10} .. {:>10}: {}",
            format_duration(Duration::from_nanos(w.start_ns)),
            format_duration(Duration::from_nanos(w.end_ns)),
            shares.join(", ")
        );
    }
    if let Some(out) = svg {
        std::fs::write(out, render_svg(&log, TimelineOptions { from, to }))
            .with_context(|| format!("writing {}", out.display()))?;
        println!("timeline: {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(
    duration: Duration,
    gpu: GpuKind,
    method: MethodArg,
    tenants: Vec<usize>,
    markdown: Option<&Path>,
) -> Result<ExitCode> {
    if duration < Duration::from_secs(2) {
        bail!("--for must be at least 2s (the first second is excluded from share errors)");
    }
    let cfg = BenchConfig {
        duration,
        methods: method.methods(),
        tenant_counts: tenants,
    };
    let cases = cfg.methods.len() * cfg.tenant_counts.len() * 6;
    println!(
        "scheduler benchmark on {}: {} cases of {} GPU time",
        AnyGpu::new(gpu).describe_kind(),
        cases,
        format_duration(duration)
    );
    let mut done = 0;
    let rows = run_bench(
        &cfg,
        || AnyGpu::new(gpu),
        |r| {
            done += 1;
            eprintln!(
                "[{done}/{cases}] {} tenants {} {} {}: error {:.3} pp, throughput {:.1} %",
                r.tenants,
                r.weights,
                r.load.name(),
                r.method.name(),
                r.max_error_pp,
                r.throughput * 100.0
            );
        },
    )?;
    let table = markdown_table(&rows);
    println!("{table}");
    if let Some(path) = markdown {
        std::fs::write(path, &table).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
