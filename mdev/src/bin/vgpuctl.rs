//! `vgpuctl`: manages vgpud's vGPU instances, with mdevctl's verbs.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mdev::control::{Request, Response, Status};
use mdev::instance::StartMode;

#[derive(Parser, Debug)]
#[command(
    name = "vgpuctl",
    version,
    about = "Manage vgpud's vGPU instances (types, define, start, stop, list, status)",
    long_about = "Manage vgpud's vGPU instances, with mdevctl's verbs.\n\n\
        An instance has a UUID, a type (`vgpuctl types`), a GFID (its RM namespace, 1-63) and a \
        tenant (the policy tenant whose share it draws from). Definitions persist as JSON files \
        in mdevctl's schema under vgpud's --config-dir; `--auto` instances start with the \
        daemon. A started instance is a vfio-user socket: attach it with \
        `vgpu-vmm --vgpu socket=PATH` or QEMU's `-device vfio-user-pci`.\n\n\
        Exit status: 0 done, 1 refused (the reason is printed; nothing changed), 2 usage."
)]
struct Cli {
    /// vgpud's --run-dir (the control socket is <DIR>/vgpud.sock).
    #[arg(
        long,
        value_name = "DIR",
        env = "VGPUD_RUN_DIR",
        default_value = "/run/vgpud"
    )]
    run_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// The GPU's vGPU types and how many more of each fit.
    Types {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Defines an instance (prints its UUID).
    Define {
        /// UUID (a random one if not given).
        #[arg(short, long)]
        uuid: Option<String>,
        /// vGPU type.
        #[arg(short = 't', long = "type", value_name = "TYPE")]
        mdev_type: String,
        /// GFID (the lowest free one if not given).
        #[arg(long)]
        gfid: Option<u32>,
        /// Policy tenant.
        #[arg(long)]
        tenant: String,
        /// Start with the daemon.
        #[arg(short, long)]
        auto: bool,
    },
    /// Changes a definition (a started instance may change only its tenant and start mode).
    Modify {
        /// The instance.
        #[arg(short, long)]
        uuid: String,
        /// New type.
        #[arg(short = 't', long = "type", value_name = "TYPE")]
        mdev_type: Option<String>,
        /// New GFID.
        #[arg(long)]
        gfid: Option<u32>,
        /// New tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Start with the daemon.
        #[arg(short, long, conflicts_with = "manual")]
        auto: bool,
        /// Start only on `vgpuctl start`.
        #[arg(short, long)]
        manual: bool,
    },
    /// Removes a stopped instance's definition.
    Undefine {
        /// The instance.
        #[arg(short, long)]
        uuid: String,
    },
    /// Starts an instance (prints its vfio-user socket).
    Start {
        /// The instance.
        #[arg(short, long)]
        uuid: String,
    },
    /// Stops an instance no VM is attached to.
    Stop {
        /// The instance.
        #[arg(short, long)]
        uuid: String,
    },
    /// Every defined instance and its state (defined, started, attached).
    List {
        /// JSON instead of a table (mdevctl's --dumpjson).
        #[arg(long)]
        json: bool,
    },
    /// Per-instance figures: VM attached, tenant, share target vs achieved, escapes, doorbells,
    /// errors, objects held; and the poller's CPU use.
    Status {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn ask(run_dir: &std::path::Path, req: &Request) -> Result<Response> {
    let path = run_dir.join("vgpud.sock");
    let mut s = UnixStream::connect(&path)
        .with_context(|| format!("vgpud is not running at {}", path.display()))?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .context("reading vgpud's answer")?;
    serde_json::from_str(&answer).context("vgpud's answer does not parse")
}

fn print_status(s: &Status) {
    println!("GPU: {}", s.gpu);
    println!("Policy: {}", s.policy.as_deref().unwrap_or("none"));
    println!(
        "Poller: {}, {} queue(s) polled, {} requests served, CPU {:.2} s ({:.1} % of a core)",
        if s.poller.enabled { "on" } else { "off" },
        s.poller.polled,
        s.poller.served,
        s.poller.cpu_s,
        s.poller.cpu_percent
    );
    println!(
        "{:<36}  {:<10} {:>4} {:>4} {:>7} {:>7} {:>9} {:>8} {:>9} {:>6} {:>7}",
        "UUID",
        "TENANT",
        "GFID",
        "VM",
        "TARGET",
        "GOT",
        "ESCAPES",
        "NOTIFIES",
        "DOORBELLS",
        "ERRORS",
        "OBJECTS"
    );
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    for i in &s.instances {
        println!(
            "{:<36}  {:<10} {:>4} {:>4} {:>7} {:>7} {:>9} {:>8} {:>9} {:>6} {:>7}",
            i.uuid,
            i.tenant,
            i.gfid,
            if i.attached { "yes" } else { "no" },
            pct(i.share_target),
            pct(i.share_achieved),
            i.escapes,
            i.notifies,
            i.doorbells,
            i.errors + i.doorbells_rejected,
            i.objects
        );
    }
}

fn run(cli: Cli) -> Result<bool> {
    let (req, json) = match cli.cmd {
        Cmd::Types { json } => (Request::Types, json),
        Cmd::Define {
            uuid,
            mdev_type,
            gfid,
            tenant,
            auto,
        } => (
            Request::Define {
                uuid,
                mdev_type,
                gfid,
                tenant,
                start: if auto {
                    StartMode::Auto
                } else {
                    StartMode::Manual
                },
            },
            false,
        ),
        Cmd::Modify {
            uuid,
            mdev_type,
            gfid,
            tenant,
            auto,
            manual,
        } => (
            Request::Modify {
                uuid,
                mdev_type,
                gfid,
                tenant,
                start: match (auto, manual) {
                    (true, _) => Some(StartMode::Auto),
                    (_, true) => Some(StartMode::Manual),
                    _ => None,
                },
            },
            false,
        ),
        Cmd::Undefine { uuid } => (Request::Undefine { uuid }, false),
        Cmd::Start { uuid } => (Request::Start { uuid }, false),
        Cmd::Stop { uuid } => (Request::Stop { uuid }, false),
        Cmd::List { json } => (Request::List, json),
        Cmd::Status { json } => (Request::Status, json),
    };
    let answer = ask(&cli.run_dir, &req)?;
    if json {
        match &answer {
            Response::Types(t) => println!("{}", serde_json::to_string_pretty(t)?),
            Response::List(l) => println!("{}", serde_json::to_string_pretty(l)?),
            Response::Status(s) => println!("{}", serde_json::to_string_pretty(s)?),
            _ => {}
        }
    }
    match answer {
        Response::Ok(msg) => println!("{msg}"),
        Response::Error(e) => {
            eprintln!("vgpuctl: {e}");
            return Ok(false);
        }
        _ if json => {}
        Response::Types(types) => {
            println!(
                "{:<10} {:>10} {:>9} {:>9} {:>9} {:>15}",
                "TYPE", "FB (MiB)", "MAX", "AVAILABLE", "CHANNELS", "HOST MEM (MiB)"
            );
            for t in types {
                let host = match t.host_memory_bytes {
                    u64::MAX => "-".to_string(),
                    b => (b >> 20).to_string(),
                };
                println!(
                    "{:<10} {:>10} {:>9} {:>9} {:>9} {:>15}",
                    t.name,
                    t.fb_bytes >> 20,
                    t.max_instances,
                    t.available_instances,
                    t.channels,
                    host
                );
            }
        }
        Response::List(list) => {
            for i in list {
                println!(
                    "{} {} gfid={} tenant={} {} {}{}",
                    i.uuid,
                    i.mdev_type,
                    i.gfid,
                    i.tenant,
                    i.start,
                    i.state,
                    i.socket.map(|s| format!(" {s}")).unwrap_or_default()
                );
            }
        }
        Response::Status(s) => print_status(&s),
    }
    Ok(true)
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("vgpuctl: {e:#}");
            std::process::exit(1);
        }
    }
}
