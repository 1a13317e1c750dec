//! `vgpu-image`: builds the guest images and boots them in the nested-KVM harness.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use images::{Cache, Harness, HarnessRun, HarnessVariant};
use std::path::PathBuf;
use std::time::Duration;

/// Builds the vGPU test guest and nested-KVM harness images from Debian packages, and boots them.
///
/// Images go into a cache directory (default `<workspace>/.cache/images`, or $VGPU_IMAGE_CACHE);
/// finished steps are not repeated. Needs apt-get, dpkg-deb, depmod, gzip, xz, lz4, zstd,
/// busybox-static and qemu-system-x86 (`bash .ci/setup` installs them).
#[derive(Parser, Debug)]
#[command(name = "vgpu-image", version)]
struct Cli {
    /// Cache directory (overrides $VGPU_IMAGE_CACHE and the default).
    #[arg(long, global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Build the test guest and the harness (with the QEMU layer) and print their paths.
    Build,
    /// Boot the test guest under vgpu-vmm inside the harness; show its console and results.
    Demo,
    /// Boot the harness with a scenario and print its whole console.
    Run {
        /// Harness scenario: boot (one test-guest boot) or bench.
        #[arg(long, default_value = "boot")]
        scenario: String,
        /// Inner VMM for the boot scenario: vgpu-vmm or qemu.
        #[arg(long, default_value = "vgpu-vmm")]
        vmm: String,
        /// Words appended to the test guest's kernel command line.
        #[arg(long)]
        guest_append: Option<String>,
        /// Seconds before the whole harness boot is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let cache = match &cli.cache {
        Some(dir) => Cache::at(dir.clone())?,
        None => Cache::from_env()?,
    };
    match cli.command {
        Cmd::Build => {
            let h = Harness::ensure_in(&cache, HarnessVariant::WithQemu)?;
            println!("test guest kernel:  {}", h.guest.vmlinux.display());
            println!("test guest initrd:  {}", h.guest.initrd.display());
            println!("harness kernel:     {}", h.vmlinux.display());
            println!("harness initrd:     {}", h.initrd.display());
            Ok(())
        }
        Cmd::Demo => bail!("demo: not yet"),
        Cmd::Run {
            scenario,
            vmm,
            guest_append,
            timeout,
        } => {
            let variant = if vmm == "qemu" || scenario == "bench" {
                HarnessVariant::WithQemu
            } else {
                HarnessVariant::Vmm
            };
            let h = Harness::ensure_in(&cache, variant)?;
            let mut run = HarnessRun::new(&scenario).param("vmm", &vmm);
            if let Some(a) = guest_append {
                run = run.param("guest_append", &a);
            }
            run.timeout = Duration::from_secs(timeout);
            run.echo = true;
            let out = run.run(&h).context("booting the harness")?;
            eprintln!(
                "[vgpu-image] harness finished in {:.1} s (ok: {}, timed out: {})",
                out.elapsed.as_secs_f64(),
                out.harness_ok(),
                out.timed_out
            );
            if !out.harness_ok() {
                bail!("the harness did not finish its scenario");
            }
            Ok(())
        }
    }
}
