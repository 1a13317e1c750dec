//! `vgpu-image`: builds the guest images and boots them in the nested-KVM harness.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use guest_tools::report::Record;
use images::bench::{BootBench, Vmm};
use images::{Cache, Harness, HarnessRun, HarnessVariant, Qemu};
use std::path::PathBuf;
use std::time::Duration;

/// Builds the vGPU test guest and nested-KVM harness images from Debian packages, and boots them.
///
/// Images go into a cache directory (default `<workspace>/.cache/images`, or $VGPU_IMAGE_CACHE);
/// finished steps are not repeated. Needs apt-get, dpkg-deb, depmod,
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
    /// Boot the test guest under vgpu-vmm with a vGPU inside the harness; run vgpu-smi and a
    /// 3 s workload in it; summarise vgpu-smi, work done and the VMM's vGPU counters. Then two
    /// VMs (QEMU 11.1 on this host) share one vgpud under a 3:1 policy that is replaced by 1:1
    /// while they run: each VM's work per second of GPU time and its share.
    Demo {
        /// Only the two-VM part.
        #[arg(long)]
        share_only: bool,
        /// How long each VM of the two-VM part streams work, seconds.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(6..=120))]
        seconds: u64,
    },
    /// Boot benchmark: N test-guest boots each under vgpu-vmm and QEMU microvm in one harness
    /// boot; prints medians of the time from VMM start to the agent's first line and the ratio.
    Bench {
        /// Boots per VMM.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=50))]
        runs: u64,
        #[command(flatten)]
        output: BenchOutput,
    },
    /// Debian image benchmark: N boots of the Debian 12 image each under vgpu-vmm and QEMU
    /// microvm in one harness boot; prints medians of the time to systemd's multi-user target
    /// and of a 256 MiB O_DIRECT disk read, and the ratios. Builds the image first (root).
    DiskBench {
        /// Boots per VMM.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=10))]
        runs: u64,
        #[command(flatten)]
        output: BenchOutput,
    },
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
        /// Test-guest scenario (probe, vgpu, demo); vgpu and demo start vgpud in the harness
        /// and attach one sim-35c instance (vgpu with INTx wired).
        #[arg(long, conflicts_with = "guest_append")]
        guest_scenario: Option<String>,
        /// QEMU machine (-M) of the QEMU runs, e.g. `microvm,rtc=off`.
        #[arg(long, default_value = "microvm")]
        qemu_machine: String,
        /// Seconds before the whole harness boot is killed.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Boot-test a guest image: boot it under vgpu-vmm in the nested harness and decide from its
    /// serial console whether it booted.
    ///
    /// The image is the guest's /dev/vda (a virtio-blk disk; the guest's writes are kept in
    /// memory and dropped, the file is never written). Without --kernel the guest gets Debian's
    /// cloud kernel and a stock initramfs that mounts root= (default /dev/vda, ext4) and runs
    /// its /sbin/init; with --kernel, your kernel and --initrd (it must load virtio_pci and
    /// virtio_blk, or have them built in, to find its root); with --kernel-from-image, the
    /// kernel and initrd in the image's own /boot.
    ///
    /// The boot passes when every --expect pattern has matched the console, in the order
    /// given (with no --expect: when the guest powers off cleanly). It fails at the first
    /// kernel panic, emergency or rescue shell (systemd, initramfs-tools, dracut), when
    /// --timeout passes, or when the guest stops first.
    ///
    /// Prints progress on stderr and one line on stdout: `PASS: ...` or `FAIL (kind): ...`
    /// (kinds: kernel-panic, emergency-shell, timeout, guest-stopped, harness).
    /// Writes console.log (the guest's console), vmm-stderr.log and harness.log into
    /// --artifacts, and a JUnit XML report with --junit.
    ///
    /// Exit status: 0 the boot passed, 1 it failed, 2 bad arguments or the harness could not
    /// be built.
    #[command(verbatim_doc_comment)]
    BootTest(BootTestArgs),
    /// Build a Debian 12 minbase image with systemd and its own kernel (mmdebstrap; needs
    /// root) into the cache and print its paths and the boot-test command that boots it.
    Debian12,
    /// Fetch QEMU 11 from Debian forky into the cache (no root, private apt lists) and print
    /// its version and the command prefix that runs it.
    Qemu {
        /// Fetch forky's package lists again first (picks up newer versions).
        #[arg(long)]
        refresh: bool,
    },
}

/// `vgpu-image boot-test`'s arguments.
/// Where a benchmark's results go, shared by `bench` and `disk-bench`.
#[derive(clap::Args, Debug)]
struct BenchOutput {
    /// Write the results into the benchmark's section of docs/benchmarks.md.
    #[arg(long)]
    write_docs: bool,
    /// Markdown file for --write-docs (default: <workspace>/docs/benchmarks.md).
    #[arg(long, requires = "write_docs")]
    docs: Option<PathBuf>,
    /// Echo the harness console while it runs.
    #[arg(long)]
    verbose: bool,
}

impl BenchOutput {
    /// Writes `markdown` as the section under `heading` of the docs file, or prints it.
    fn publish(self, heading: &str, markdown: &str) -> anyhow::Result<()> {
        if self.write_docs {
            let doc = self
                .docs
                .unwrap_or_else(|| images::workspace_root().join("docs/benchmarks.md"));
            images::bench::write_section(&doc, heading, markdown)?;
            println!("wrote {}", doc.display());
        } else {
            println!("\n{markdown}");
        }
        Ok(())
    }
}

#[derive(clap::Args, Debug)]
struct BootTestArgs {
    /// The raw disk image to boot (a file or a block device; the guest's /dev/vda).
    #[arg(long, value_name = "IMG", value_parser = disk_image)]
    disk: PathBuf,
    /// Guest kernel (bzImage such as /boot/vmlinuz-*, or an ELF vmlinux). Default: Debian's
    /// cloud kernel with the stock initramfs.
    #[arg(long, value_name = "FILE", value_parser = regular_file)]
    kernel: Option<PathBuf>,
    /// Initramfs for --kernel.
    #[arg(long, value_name = "FILE", value_parser = regular_file, requires = "kernel")]
    initrd: Option<PathBuf>,
    /// Boot the newest /boot/vmlinuz-* of the image itself, with its initrd.img-* (read with
    /// debugfs; the image must be one ext2/3/4 file system, not a partitioned disk).
    #[arg(long, conflicts_with_all = ["kernel", "initrd"])]
    kernel_from_image: bool,
    /// The guest's whole kernel command line [default: console=ttyS0 reboot=t panic=-1
    /// root=/dev/vda rw]. Keep console=ttyS0: the verdict comes from the serial console.
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Words appended to the command line (e.g. `init=/bin/sh`, `systemd.unit=...`).
    #[arg(long, value_name = "STR")]
    append: Option<String>,
    /// A regular expression the console must show; repeatable, matched in the order given,
    /// each against one line (e.g. --expect 'login:' or --expect 'Reached target.*Multi-User').
    #[arg(long, value_name = "REGEX", value_parser = regex::Regex::new)]
    expect: Vec<regex::Regex>,
    /// Seconds the guest may take from its VMM's start (the harness's own boot, about half a
    /// minute under TCG, comes on top).
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(5..=3600))]
    timeout: u64,
    /// Attach a vGPU: vgpud starts in the harness and the guest gets an instance of TYPE over
    /// vfio-user (a PCI device 10de:7f61; `vgpu-image` lists the types in this error when TYPE
    /// is unknown). The image needs its own driver or `vgpu-smi` to use it.
    #[arg(long, value_name = "TYPE", value_parser = vgpu_type)]
    vgpu: Option<String>,
    /// Guest RAM, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(64..=8192))]
    memory: u32,
    /// Directory for console.log, vmm-stderr.log and harness.log (created).
    #[arg(long, value_name = "DIR", default_value = "boot-test-artifacts")]
    artifacts: PathBuf,
    /// Also write a JUnit XML report (one test case) to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The JUnit test case's name [default: the image's file name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Echo the guest's console on stderr as it arrives.
    #[arg(long)]
    verbose: bool,
}

fn vgpu_type(s: &str) -> Result<String, String> {
    let names = mdev::profile::names();
    if names.contains(&s) {
        Ok(s.to_string())
    } else {
        Err(format!("unknown vGPU type (known: {})", names.join(", ")))
    }
}

fn regular_file(s: &str) -> Result<PathBuf, String> {
    match std::fs::metadata(s) {
        Ok(m) if m.is_file() => Ok(PathBuf::from(s)),
        Ok(_) => Err(format!("{s} is not a regular file")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

fn disk_image(s: &str) -> Result<PathBuf, String> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileTypeExt;
    let m = std::fs::metadata(s).map_err(|e| format!("{s}: {e}"))?;
    if !m.is_file() && !m.file_type().is_block_device() {
        return Err(format!("{s} is neither a regular file nor a block device"));
    }
    let size = std::fs::File::open(s)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(|e| format!("{s}: {e}"))?;
    if size < 512 {
        return Err(format!(
            "{s} holds {size} bytes: a disk image needs at least one 512-byte sector"
        ));
    }
    Ok(PathBuf::from(s))
}

/// Exit status of a boot that failed.
const STATUS_FAILED: i32 = 1;
/// Exit status of bad arguments or a harness that could not be built.
const STATUS_ERROR: i32 = 2;

fn main() {
    match run() {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("vgpu-image: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn boot_test(cache: &Cache, args: BootTestArgs) -> i32 {
    match boot_test_inner(cache, args) {
        Ok(passed) => {
            if passed {
                0
            } else {
                STATUS_FAILED
            }
        }
        Err(e) => {
            eprintln!("vgpu-image boot-test: error: {e:#}");
            STATUS_ERROR
        }
    }
}

fn boot_test_inner(cache: &Cache, args: BootTestArgs) -> anyhow::Result<bool> {
    use images::boot_test::{BootTest, Progress};
    use images::stock_boot::{StockBoot, STOCK_CMDLINE};
    let say = |m: &str| eprintln!("[boot-test] {m}");
    say("building the harness (cached after the first run)");
    let boot_files = tempfile::tempdir().context("creating a scratch directory")?;
    let from_image = if args.kernel_from_image {
        let k = images::image_kernel::extract(&args.disk, boot_files.path())?;
        say(&format!(
            "booting the image's own /boot/vmlinuz-{}{}",
            k.release,
            if k.initrd.is_some() {
                format!(" with initrd.img-{}", k.release)
            } else {
                " (no initrd.img for it)".to_string()
            }
        ));
        Some(k)
    } else {
        None
    };
    let (harness, stock) = {
        let h = Harness::ensure_in(cache, HarnessVariant::Vmm)?;
        let stock = match (&args.kernel, &from_image) {
            (Some(_), _) | (_, Some(_)) => None,
            (None, None) => {
                let _lock = cache.lock()?;
                Some(StockBoot::ensure_in(cache)?)
            }
        };
        (h, stock)
    };
    let (kernel, initrd) = match (&args.kernel, &from_image, &stock) {
        (Some(k), _, _) => (k.clone(), args.initrd.clone()),
        (None, Some(k), _) => (k.kernel.clone(), k.initrd.clone()),
        (None, None, Some(s)) => (s.vmlinux.clone(), Some(s.initrd.clone())),
        (None, None, None) => unreachable!("the stock boot is built when no kernel is given"),
    };
    let mut cmdline = args.cmdline.unwrap_or_else(|| STOCK_CMDLINE.to_string());
    if let Some(a) = &args.append {
        cmdline = format!("{cmdline} {a}");
    }
    let test = BootTest {
        disk: args.disk.clone(),
        kernel,
        initrd,
        cmdline,
        expect: args.expect,
        timeout: Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        vgpu: args.vgpu,
    };
    say(&format!(
        "booting {} in the nested harness (QEMU TCG, then vgpu-vmm on its KVM); timeout {} s",
        args.disk.display(),
        args.timeout
    ));
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let verbose = args.verbose;
    let outcome = test.run(&harness, |p| match p {
        Progress::HarnessUp(at) => say(&format!("{}: harness up, starting vgpu-vmm", secs(at))),
        Progress::GuestStarted(at) => say(&format!("{}: the guest is printing", secs(at))),
        Progress::Matched {
            at,
            index,
            total,
            line,
        } => say(&format!(
            "{}: matched pattern {}/{total}: {line:?}",
            secs(at),
            index + 1
        )),
        Progress::Waiting(at, what) => say(&format!("{}: waiting: {what}", secs(at))),
        Progress::GuestLine(line) if verbose => eprintln!("guest| {line}"),
        Progress::GuestLine(_) => {}
    })?;
    let log = outcome.write_artifacts(&args.artifacts)?;
    say(&format!(
        "{} in {}; console log {}",
        if outcome.verdict.passed() {
            "passed"
        } else {
            "failed"
        },
        secs(outcome.elapsed),
        log.display()
    ));
    if let Some(path) = &args.junit {
        let name = args.name.clone().unwrap_or_else(|| {
            args.disk
                .file_name()
                .map_or("disk".into(), |n| n.to_string_lossy().into_owned())
        });
        std::fs::write(path, outcome.junit_xml("vgpu-image boot-test", &name))
            .with_context(|| format!("writing {}", path.display()))?;
        say(&format!("JUnit report {}", path.display()));
    }
    println!("{}", outcome.verdict.reason());
    Ok(outcome.verdict.passed())
}

fn run() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    let cache = match &cli.cache {
        Some(dir) => Cache::at(dir.clone())?,
        None => Cache::from_env()?,
    };
    if let Cmd::BootTest(args) = cli.command {
        return Ok(boot_test(&cache, args));
    }
    run_command(cache, cli.command)?;
    Ok(0)
}

fn run_command(cache: Cache, command: Cmd) -> anyhow::Result<()> {
    match command {
        Cmd::Build => {
            let h = Harness::ensure_in(&cache, HarnessVariant::WithQemu)?;
            println!("test guest kernel:  {}", h.guest.vmlinux.display());
            println!("test guest initrd:  {}", h.guest.initrd.display());
            println!("harness kernel:     {}", h.vmlinux.display());
            println!("harness initrd:     {}", h.initrd.display());
            Ok(())
        }
        Cmd::Demo {
            share_only,
            seconds,
        } => {
            if !share_only {
                demo(&cache)?;
            }
            share_demo(&cache, seconds)
        }
        Cmd::Qemu { refresh } => {
            if refresh {
                Qemu::refresh_lists(&cache)?;
            }
            let qemu = Qemu::ensure(&cache)?;
            let bytes: u64 = qemu.debs().iter().map(|d| d.size).sum();
            println!("version:  {}", qemu.version()?);
            println!(
                "packages: {} from {}, {:.1} MB",
                qemu.debs().len(),
                images::qemu::SUITE,
                bytes as f64 / 1e6
            );
            println!("root:     {}", qemu.root().display());
            println!("command:  {}", images::tools::describe(&qemu.command()));
            Ok(())
        }
        Cmd::Bench { runs, output } => {
            let h = Harness::ensure_in(&cache, HarnessVariant::WithQemu)?;
            eprintln!("[vgpu-image] booting the harness: {runs} boots under vgpu-vmm and {runs} under QEMU");
            let bench = BootBench::run(&h, runs as usize, output.verbose)?;
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0} ms"));
            println!(
                "vgpu-vmm median to first agent line: {}",
                ms(bench.median_first_line_ms(Vmm::VgpuVmm))
            );
            println!(
                "QEMU     median to first agent line: {}",
                ms(bench.median_first_line_ms(Vmm::Qemu))
            );
            println!(
                "ratio ours/QEMU: {}",
                bench.ratio().map_or("-".into(), |r| format!("{r:.2}"))
            );
            println!(
                "vgpu-vmm KVM exits per boot (median): {}",
                bench
                    .median_exits(Vmm::VgpuVmm)
                    .map_or("-".into(), |e| format!("{e:.0}"))
            );
            output.publish(images::bench::DOC_HEADING, &bench.markdown())
        }
        Cmd::DiskBench { runs, output } => {
            use images::disk_bench::DiskBench;
            let h = Harness::ensure_in(&cache, HarnessVariant::WithQemu)?;
            let image = {
                let _lock = cache.lock()?;
                images::debian_image::DebianImage::ensure_in(&cache)?
            };
            eprintln!(
                "[vgpu-image] booting the harness: the Debian image {runs} times under vgpu-vmm \
                 and {runs} times under QEMU (a few minutes per boot)"
            );
            let bench = DiskBench::run(&h, &image, runs as usize, output.verbose)?;
            let fmt =
                |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:.1} {unit}"));
            for (name, vmm) in [("vgpu-vmm", Vmm::VgpuVmm), ("QEMU    ", Vmm::Qemu)] {
                println!(
                    "{name} median to multi-user: {}, read: {}",
                    fmt(bench.median_target_ms(vmm).map(|v| v / 1000.0), "s"),
                    fmt(bench.median_read_mib_s(vmm), "MiB/s")
                );
            }
            println!(
                "ratios ours/QEMU: boot {}, read {}",
                bench.boot_ratio().map_or("-".into(), |r| format!("{r:.2}")),
                bench.read_ratio().map_or("-".into(), |r| format!("{r:.2}"))
            );
            output.publish(images::disk_bench::DOC_HEADING, &bench.markdown())
        }
        Cmd::Run {
            scenario,
            vmm,
            guest_append,
            guest_scenario,
            qemu_machine,
            timeout,
        } => {
            let variant = if vmm == "qemu" || scenario == "bench" {
                HarnessVariant::WithQemu
            } else {
                HarnessVariant::Vmm
            };
            let h = Harness::ensure_in(&cache, variant)?;
            let mut run = HarnessRun::new(&scenario)
                .param("vmm", &vmm)
                .param("qemu_machine", &qemu_machine);
            if let Some(a) = guest_append {
                run = run.param("guest_append", &a);
            }
            if let Some(s) = guest_scenario {
                run = run.guest_scenario(&s);
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
        Cmd::Debian12 => {
            let d = {
                let _lock = cache.lock()?;
                images::debian_image::DebianImage::ensure_in(&cache)?
            };
            println!("image:   {}", d.image.display());
            println!("kernel:  {} ({})", d.vmlinuz.display(), d.kernel_package);
            println!("initrd:  {}", d.initrd.display());
            println!(
                "try:     vgpu-image boot-test --disk {} --kernel-from-image \\\n         \
                 --expect 'Reached target.*Multi-User System' --expect '{} login:'",
                d.image.display(),
                images::debian_image::HOSTNAME
            );
            Ok(())
        }
        Cmd::BootTest(_) => unreachable!("handled by boot_test"),
    }
}

/// The README demo: boot the test guest under vgpu-vmm with a vGPU in the harness (consoles
/// shown live), let its `demo` scenario run vgpu-smi and a short workload, then summarise what
/// the guest reported and what the VMM counted.
fn demo(cache: &Cache) -> anyhow::Result<()> {
    let h = Harness::ensure_in(cache, HarnessVariant::Vmm)?;
    eprintln!(
        "[vgpu-image] booting the nested harness (QEMU TCG, then vgpud and vgpu-vmm with one vGPU on its KVM);"
    );
    eprintln!(
        "[vgpu-image] lines from the test guest are prefixed `guest|`, vgpu-vmm's stderr `guest!`"
    );
    let mut run = HarnessRun::new("boot")
        .param("vmm", "vgpu-vmm")
        .guest_scenario("demo");
    run.echo = true;
    let out = run.run(&h)?;
    let runs = out.runs();
    let Some(guest) = runs.iter().find(|r| r.label == "guest") else {
        bail!("the harness ran no guest:\n{}", out.console_tail(30));
    };
    let mut ok = false;
    println!();
    for rec in &guest.records {
        match rec {
            Record::Agent { boottime_ns, .. } => println!(
                "== test guest: Debian cloud kernel booted to the agent in {:.2} s",
                *boottime_ns as f64 / 1e9
            ),
            Record::Smi(smi) => {
                println!("== vgpu-smi in the guest\n");
                print!("{}", smi.to_text());
                println!();
            }
            Record::Workload(w) => println!(
                "== workload in the guest: {} rounds of {} GPFIFO entries per channel (compute + copy)\n   \
                 {:.0} entries/s over {:.2} s, {} semaphores checked, {} copies checked, {:?} memory",
                w.rounds,
                w.entries / w.rounds.max(1) / 2,
                w.entries_per_sec,
                w.seconds,
                w.semaphores_checked,
                w.copies_checked,
                w.memory
            ),
            Record::ScenarioEnd {
                scenario,
                ok: end_ok,
                error,
            } => {
                ok = *end_ok;
                if !end_ok {
                    println!(
                        "== scenario {scenario} FAILED: {}",
                        error.as_deref().unwrap_or("?")
                    );
                }
            }
            _ => {}
        }
    }
    let instance = out
        .vgpud_status("guest")
        .and_then(|s| s.instances.into_iter().next());
    match &instance {
        Some(i) => println!(
            "== vgpud's instance after the VM: {} doorbells, {} escape requests ({} queue notifies, {} malformed), \
             {} RM objects left for GFID {}",
            i.doorbells, i.escapes, i.notifies, i.errors, i.objects, i.gfid
        ),
        None => println!("== vgpud reported no instance status"),
    }
    let Some(t) = &guest.timing else {
        bail!("no timing record for the guest:\n{}", out.console_tail(30));
    };
    println!(
        "== vgpu-vmm: exit status {:?}, {} KVM exits, {:.1} s from start to power-off; harness total {:.1} s",
        t.exit_code,
        images::bench::exit_total(&guest.stderr).map_or("?".into(), |e| e.to_string()),
        t.elapsed_us as f64 / 1e6,
        out.elapsed.as_secs_f64()
    );
    if !ok || t.exit_code != Some(0) || !out.harness_ok() {
        bail!("the demo guest did not finish its scenario and power off cleanly");
    }
    if instance.map(|i| i.objects) != Some(0) {
        bail!("the RM core still holds objects of the demo guest's GFID");
    }
    Ok(())
}

fn share_policy(prod: u32, batch: u32) -> String {
    format!(
        "policy = \"weighted\"\n[[tenant]]\nname = \"prod\"\nweight = {prod}\n\
         [[tenant]]\nname = \"batch\"\nweight = {batch}\n"
    )
}

/// The two-VM part of the demo: one vgpud, two instances, two QEMU guests streaming work,
/// the policy replaced halfway; a table of each second of GPU time from the guests' own
/// semaphore timestamps.
fn share_demo(cache: &Cache, seconds: u64) -> anyhow::Result<()> {
    use images::qemu_vm::{Kit, QemuVm};
    use images::vgpud::Vgpud;
    const SEC: u64 = 1_000_000_000;
    let wait = Duration::from_secs(120);

    let kit = Kit::ensure(cache)?;
    println!("\n== two VMs, one GPU: vgpud (sim H200) under policy prod:batch = 3:1, one sim-35c");
    println!("   instance per VM, QEMU 11.1 guests attached over vfio-user, each streaming work");
    let daemon = Vgpud::start(&kit.bins, Some(&share_policy(3, 1)))?;
    let append = format!("vgpu.scenario=share vgpu.stream_seconds={seconds}");
    let mut vms = Vec::new();
    for (gfid, tenant) in [(1, "prod"), (2, "batch")] {
        let socket = daemon.new_instance("sim-35c", gfid, tenant)?;
        println!("   {tenant}: GFID {gfid}, {}", socket.display());
        vms.push(QemuVm::boot(&kit, &append, &[&socket])?);
    }
    let mut both = 0;
    for vm in &vms {
        let at = vm.wait_for(wait, |r| match r {
            Record::StreamStart { gpu_ns } => Some(*gpu_ns),
            _ => None,
        });
        both = both.max(at.context("a VM did not start streaming")?);
    }
    std::thread::sleep(Duration::from_secs(seconds / 2 - 1));
    println!(
        "\n== vgpuctl status under 3:1\n{}",
        daemon.vgpuctl(&["status"])?
    );
    let written = daemon.status()?.gpu_time_ns;
    daemon.set_policy(&share_policy(1, 1))?;
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "\n== vgpuctl status 2 s after the policy file was replaced by 1:1\n{}",
        daemon.vgpuctl(&["status"])?
    );
    let mut streams = Vec::new();
    for (vm, name) in vms.into_iter().zip(["prod", "batch"]) {
        let out = vm.finish(wait);
        let stream = out.records.iter().find_map(|r| match r {
            Record::Stream(s) => Some(s.clone()),
            _ => None,
        });
        streams
            .push(stream.with_context(|| format!("{name}: no stream report\n{}", out.tail(20)))?);
    }
    let (prod, batch) = (&streams[0], &streams[1]);
    println!(
        "\n== work completed per second of GPU time (GPU-seconds, from each guest's semaphores)"
    );
    println!("   GPU time        prod    batch   prod's share   policy");
    let end = prod.last_gpu_ns.min(batch.last_gpu_ns);
    let from = both.div_ceil(SEC) * SEC;
    for (t, a, b) in guest_tools::workload::paired_work(prod, batch, from, end, SEC) {
        let policy = if t + SEC <= written {
            "3:1"
        } else if t >= written {
            "1:1"
        } else {
            "3:1 -> 1:1"
        };
        println!(
            "   {:>5.1}-{:<5.1} s  {:.3}   {:.3}   {:>5.1} %        {policy}",
            t as f64 / 1e9,
            (t + SEC) as f64 / 1e9,
            a as f64 / 1e9,
            b as f64 / 1e9,
            100.0 * a as f64 / (a + b).max(1) as f64
        );
    }
    println!(
        "   (the policy file was replaced at GPU time {:.2} s)",
        written as f64 / 1e9
    );
    Ok(())
}
