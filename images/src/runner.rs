//! Booting the harness under QEMU TCG and collecting what it reports.
//!
//! QEMU in TCG mode with `-cpu max` gives the harness kernel SVM, so `kvm-amd` works there and
//! the VMMs inside get a real KVM. The whole harness console is captured; result lines are
//! decoded with [`guest_tools::report`], and lines relayed by `vgpu-guest timed-run` are grouped
//! into one [`GuestRun`] per label.

use crate::harness::Harness;
use crate::Error;
use guest_tools::report::{Record, Relayed, Stream, TimedRun};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Harness kernel command line before the scenario parameters.
pub const HARNESS_CMDLINE: &str = "console=ttyS0 quiet panic=-1 reboot=t";

/// Prefix of the line the harness prints with `vgpuctl status --json` after a run.
pub const VGPUD_STATUS_PREFIX: &str = "VGPUD-STATUS ";

/// The harness parameters a test-guest scenario needs: `vgpu` and `demo` drive a vGPU, so the
/// harness starts vgpud and attaches one `sim-35c` instance (GFID 1, the default 64 MiB
/// window) to the guest's VMM; `vgpu` also has a pass with interrupt completion, so its INTx
/// is wired (`intr=intx`; polling works there too).
pub fn params_for(scenario: &str) -> &'static [(&'static str, &'static str)] {
    match scenario {
        "vgpu" => &[("vgpu", "sim-35c"), ("vgpu_intr", "intx")],
        "demo" => &[("vgpu", "sim-35c")],
        _ => &[],
    }
}

/// One boot of the harness.
#[derive(Debug, Clone)]
pub struct HarnessRun {
    /// Harness scenario (`boot`, `bench`).
    pub scenario: String,
    /// More `vgpu.KEY=VALUE` parameters (`vmm`, `runs`, `timeout`, `guest_append`).
    pub params: Vec<(String, String)>,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Echo console lines to stderr as they arrive.
    pub echo: bool,
    /// vCPUs of the harness (one QEMU TCG thread each).
    pub cpus: u32,
    /// RAM of the harness, MiB.
    pub memory_mib: u32,
    /// Boot this initramfs instead of the harness's own (the harness's with a layer appended).
    pub initrd: Option<PathBuf>,
    /// Raw images the outer QEMU offers the harness read-only as virtio disks
    /// (`/dev/vda`, `/dev/vdb`, ... in order).
    pub disks: Vec<PathBuf>,
}

/// What [`HarnessRun::run_with`] tells its observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarnessEvent<'a> {
    /// A console line arrived (carriage returns stripped).
    Line(&'a str),
    /// [`TICK`] passed without a line.
    Tick,
}

/// How often an observer hears from a quiet harness.
pub const TICK: Duration = Duration::from_secs(5);

/// What the observer wants after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep the harness running.
    Continue,
    /// Kill QEMU now (the observer has what it needs).
    Stop,
}

/// Everything a harness boot printed, and how it ended.
#[derive(Debug, Clone)]
pub struct HarnessOutcome {
    /// The whole harness console, line by line (carriage returns stripped).
    pub console: Vec<String>,
    /// Whether the runner killed QEMU at the timeout.
    pub timed_out: bool,
    /// QEMU's exit status, if it exited.
    pub qemu_exit: Option<i32>,
    /// Wall time of the whole harness boot.
    pub elapsed: Duration,
}

/// `VGPU_HARNESS_ECHO=1` echoes every harness console line to stderr as it arrives (what a
/// developer watching a slow nested test wants).
pub const ECHO_ENV: &str = "VGPU_HARNESS_ECHO";

/// The console and results of one VMM run inside the harness.
#[derive(Debug, Clone, Default)]
pub struct GuestRun {
    /// The run's label.
    pub label: String,
    /// The inner guest's console (the VMM's stdout).
    pub console: Vec<String>,
    /// The VMM's stderr.
    pub stderr: Vec<String>,
    /// Result lines the inner guest printed.
    pub records: Vec<Record>,
    /// Timing and exit status from `timed-run`.
    pub timing: Option<TimedRun>,
}

impl HarnessRun {
    /// A run of `scenario` with default limits.
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            params: Vec::new(),
            timeout: Duration::from_secs(300),
            echo: std::env::var_os(ECHO_ENV).is_some_and(|v| v == "1"),
            cpus: 1,
            memory_mib: 2048,
            initrd: None,
            disks: Vec::new(),
        }
    }

    /// Runs the test guest's scenario `scenario` (appended to its command line as
    /// `vgpu.scenario=`) with the harness parameters that scenario needs ([`params_for`]).
    pub fn guest_scenario(self, scenario: &str) -> Self {
        let mut run = self.param("guest_append", &format!("vgpu.scenario={scenario}"));
        for (k, v) in params_for(scenario) {
            run = run.param(k, v);
        }
        run
    }

    /// Adds a `vgpu.KEY=VALUE` harness parameter.
    pub fn param(mut self, key: &str, value: &str) -> Self {
        self.params.push((key.to_string(), value.to_string()));
        self
    }

    /// The harness kernel command line for this run.
    pub fn cmdline(&self) -> String {
        let mut c = format!("{HARNESS_CMDLINE} vgpu.scenario={}", self.scenario);
        for (k, v) in &self.params {
            if v.contains(char::is_whitespace) {
                c.push_str(&format!(" vgpu.{k}=\"{v}\""));
            } else {
                c.push_str(&format!(" vgpu.{k}={v}"));
            }
        }
        c
    }

    /// The QEMU command that boots `harness` for this run.
    pub fn command(&self, harness: &Harness) -> Command {
        let mut cmd = harness.outer.command();
        // The `pc` machine, not microvm: microvm has no HPET or PM timer, and on a loaded host
        // the harness kernel's TSC calibration then fails and it hangs early in boot.
        cmd.args(["-M", "pc", "-accel", "tcg", "-cpu", "max"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.max(1).to_string()])
            .args(["-nographic", "-nic", "none", "-no-reboot"])
            .arg("-kernel")
            .arg(&harness.vmlinux)
            .arg("-initrd")
            .arg(self.initrd.as_ref().unwrap_or(&harness.initrd))
            .arg("-append")
            .arg(self.cmdline());
        for disk in &self.disks {
            // QEMU's -drive separates options with commas; a comma in the path is doubled.
            let path = disk.to_string_lossy().replace(',', ",,");
            cmd.arg("-drive")
                .arg(format!("file={path},format=raw,if=virtio,readonly=on"));
        }
        cmd
    }

    /// Boots the harness and captures its console until QEMU exits or the timeout passes.
    pub fn run(&self, harness: &Harness) -> Result<HarnessOutcome, Error> {
        self.run_with(harness, |_| Flow::Continue)
    }

    /// As [`HarnessRun::run`], telling `observe` of every console line as it arrives and of
    /// every [`TICK`] without one; QEMU is killed when `observe` says [`Flow::Stop`].
    pub fn run_with(
        &self,
        harness: &Harness,
        mut observe: impl FnMut(HarnessEvent<'_>) -> Flow,
    ) -> Result<HarnessOutcome, Error> {
        let start = Instant::now();
        let mut child = self
            .command(harness)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Run(format!("starting qemu-system-x86_64: {e}")))?;
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("piped")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped")),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n') {
                    let Ok(line) = line else { break };
                    let text = String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_string();
                    if tx.send(text).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let deadline = start + self.timeout;
        let mut console = Vec::new();
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(TICK)) {
                Ok(line) => {
                    if self.echo {
                        eprintln!("{line}");
                    }
                    let flow = observe(HarnessEvent::Line(&line));
                    console.push(line);
                    if flow == Flow::Stop {
                        let _ = child.kill();
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    timed_out = true;
                    let _ = child.kill();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if observe(HarnessEvent::Tick) == Flow::Stop {
                        let _ = child.kill();
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child
            .wait()
            .map_err(|e| Error::Run(format!("waiting for qemu: {e}")))?;
        Ok(HarnessOutcome {
            console,
            timed_out,
            qemu_exit: status.code(),
            elapsed: start.elapsed(),
        })
    }
}

impl HarnessOutcome {
    /// Result lines the harness itself printed (not relayed from an inner guest), in order.
    /// Lines that carry the prefix but do not decode are skipped.
    pub fn harness_records(&self) -> Vec<Record> {
        self.console
            .iter()
            .filter(|l| Relayed::parse(l).is_none())
            .filter_map(|l| Record::parse_line(l)?.ok())
            .collect()
    }

    /// Whether the harness reported that it finished its scenario.
    pub fn harness_ok(&self) -> bool {
        self.harness_records()
            .iter()
            .any(|r| matches!(r, Record::HarnessEnd { ok: true, .. }))
    }

    /// The inner VMM runs, in the order they started.
    pub fn runs(&self) -> Vec<GuestRun> {
        let mut runs: Vec<GuestRun> = Vec::new();
        fn slot<'a>(runs: &'a mut Vec<GuestRun>, label: &str) -> &'a mut GuestRun {
            if let Some(i) = runs.iter().position(|r| r.label == label) {
                return &mut runs[i];
            }
            runs.push(GuestRun {
                label: label.to_string(),
                ..GuestRun::default()
            });
            runs.last_mut().expect("just pushed")
        }
        for line in &self.console {
            if let Some(rel) = Relayed::parse(line) {
                let run = slot(&mut runs, rel.label);
                match rel.stream {
                    Stream::Stdout => {
                        run.console.push(rel.text.to_string());
                        if let Some(Ok(rec)) = Record::parse_line(rel.text) {
                            run.records.push(rec);
                        }
                    }
                    Stream::Stderr => run.stderr.push(rel.text.to_string()),
                }
            } else if let Some(Ok(Record::TimedRun(t))) = Record::parse_line(line) {
                let label = t.label.clone();
                slot(&mut runs, &label).timing = Some(t);
            }
        }
        runs
    }

    /// What vgpud reported (`vgpuctl status --json`) after the run labelled `label`, if the
    /// harness ran one.
    pub fn vgpud_status(&self, label: &str) -> Option<mdev::control::Status> {
        self.console.iter().find_map(|l| {
            let rest = l.strip_prefix(VGPUD_STATUS_PREFIX)?.strip_prefix(label)?;
            serde_json::from_str(rest.trim()).ok()
        })
    }

    /// The last `n` lines of the harness console, for failure reports.
    pub fn console_tail(&self, n: usize) -> String {
        tail_lines(&self.console, n)
    }
}

impl GuestRun {
    /// The last `n` lines of this guest's console and of its VMM's stderr, for failure reports.
    pub fn console_tail(&self, n: usize) -> String {
        format!(
            "--- {} guest console (last {n} lines) ---\n{}\n--- {} VMM stderr (last {n} lines) ---\n{}",
            self.label,
            tail_lines(&self.console, n),
            self.label,
            tail_lines(&self.stderr, n)
        )
    }
}

fn tail_lines(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(lines: &[&str]) -> HarnessOutcome {
        HarnessOutcome {
            console: lines.iter().map(|s| s.to_string()).collect(),
            timed_out: false,
            qemu_exit: Some(0),
            elapsed: Duration::ZERO,
        }
    }

    #[test]
    fn console_splits_into_harness_records_and_guest_runs() {
        let timing = Record::TimedRun(TimedRun {
            label: "guest".into(),
            exit_code: Some(0),
            signal: None,
            timed_out: false,
            first_result_us: Some(10),
            elapsed_us: 20,
            marks_us: Vec::new(),
        })
        .to_line();
        let agent = Record::Agent {
            version: "0".into(),
            scenario: "probe".into(),
            boottime_ns: 5,
        }
        .to_line();
        let lines = [
            "VGPU-RESULT {\"record\":\"harness_start\",\"scenario\":\"boot\"}",
            &format!("guest| {agent}"),
            "guest! exits: 3",
            "guest| plain console line",
            &timing,
            "VGPU-RESULT {\"record\":\"harness_end\",\"scenario\":\"boot\",\"ok\":true,\"error\":null}",
        ];
        let out = outcome(&lines);
        assert!(out.harness_ok());
        assert_eq!(out.harness_records().len(), 3, "start, timed_run, end");
        let runs = out.runs();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].console.len(), 2);
        assert_eq!(runs[0].stderr, ["exits: 3"]);
        assert!(matches!(
            runs[0].records[..],
            [Record::Agent { boottime_ns: 5, .. }]
        ));
        assert_eq!(runs[0].timing.as_ref().unwrap().first_result_us, Some(10));
    }

    #[test]
    fn failed_harness_is_not_ok() {
        let out = outcome(&[
            "VGPU-RESULT {\"record\":\"harness_end\",\"scenario\":\"x\",\"ok\":false,\"error\":\"no kvm\"}",
        ]);
        assert!(!out.harness_ok());
        assert!(!outcome(&["Kernel panic"]).harness_ok());
    }

    #[test]
    fn vgpu_scenario_attaches_a_vgpu() {
        let run = HarnessRun::new("boot").guest_scenario("vgpu");
        assert!(run.cmdline().ends_with(
            "vgpu.guest_append=vgpu.scenario=vgpu vgpu.vgpu=sim-35c vgpu.vgpu_intr=intx"
        ));
        assert!(params_for("probe").is_empty());
    }

    #[test]
    fn parameters_with_spaces_are_quoted() {
        let run = HarnessRun::new("boot")
            .param("vmm", "qemu")
            .param("guest_append", "a b");
        assert_eq!(
            run.cmdline(),
            format!("{HARNESS_CMDLINE} vgpu.scenario=boot vgpu.vmm=qemu vgpu.guest_append=\"a b\"")
        );
    }
}
