//! `rm-trace`: tools over captured NVIDIA client traces.

use anyhow::Result;
use clap::{Parser, Subcommand};
use rm_trace::Report;
use std::path::PathBuf;

mod probe;

/// Tools over captured NVIDIA client traces (JSON lines, optionally gzipped).
#[derive(Parser)]
#[command(
    version,
    about = "Tools over captured NVIDIA client traces (JSON lines, optionally gzipped)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode and validate every record of the given traces against the 580 ABI; print escapes
    /// by kind, classes and controls known vs unknown, and failed records. Exits 1 if any
    /// record failed to decode.
    Check {
        /// Trace files (`.jsonl` or `.jsonl.gz`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Ask the host's NVIDIA driver for its GR engine description (every `GR_GET_INFO` index,
    /// GPC and TPC masks) and print it as JSON: the fixture the sim's GR answers are checked
    /// against. Needs `/dev/nvidiactl` and `/dev/nvidia<MINOR>`.
    ProbeGr {
        /// GPU minor number.
        #[arg(long, default_value_t = 0)]
        minor: u32,
    },
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("rm-trace: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Check { files } => {
            let mut report = Report::default();
            for f in &files {
                eprintln!("checking {}", f.display());
                report.check_file(f)?;
            }
            print!("{}", report.render());
            if !report.failures.is_empty() {
                anyhow::bail!("{} record(s) failed to decode", report.failures.len());
            }
            Ok(())
        }
        Command::ProbeGr { minor } => {
            let probe = probe::probe_gr(minor)?;
            println!("{}", serde_json::to_string_pretty(&probe)?);
            Ok(())
        }
    }
}
