//! `vgpu-image boot-test`: boots a user's guest image under `vgpu-vmm` in the nested harness
//! and decides whether it booted.
//!
//! The image reaches the harness as the outer QEMU's read-only virtio disk, so it is never
//! copied; inside, `vgpu-vmm` gets it as its own virtio-blk disk with the guest's writes kept in
//! memory (`--disk path=/dev/vda,snapshot`). The kernel, initramfs and command line travel in a
//! small cpio layer appended to the harness's initramfs for this run.
//!
//! [`Judge`] reads the guest's console line by line: the run passes once every `--expect`
//! pattern has matched, in order (or, with none, when the guest powers off cleanly), and fails
//! at the first kernel panic, emergency shell, at the timeout, or when the guest stops first.

use crate::cpio::CpioWriter;
use crate::harness::Harness;
use crate::runner::{Flow, HarnessEvent, HarnessRun};
use crate::Error;
use guest_tools::report::{Record, Relayed, Stream};
use regex::Regex;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The label `timed-run` gives the guest's lines in the harness.
const GUEST_LABEL: &str = "guest";
/// What the harness may take beyond the guest's own timeout (its boot under TCG, the module
/// loads, unpacking the layer).
const HARNESS_ALLOWANCE: Duration = Duration::from_secs(300);
/// How long the runner keeps reading after a failure was seen, for the log's sake (the
/// panic's backtrace, the shell's prompt).
const GRACE: Duration = Duration::from_secs(3);
/// How often a quiet run reports that it is still waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Harness RAM besides the guest's: the harness kernel, its initramfs and the layer.
pub(crate) const HARNESS_BASE_MIB: u32 = 1536;

/// Console lines that mean the kernel panicked.
const PANIC_MARKERS: &[&str] = &["Kernel panic - not syncing"];
/// Console lines that mean the guest gave up booting and offers a rescue shell: systemd's
/// emergency and rescue targets, initramfs-tools' (and the stock initramfs's) shell, dracut's.
const EMERGENCY_MARKERS: &[&str] = &[
    "You are in emergency mode",
    "You are in rescue mode",
    "Entering emergency mode",
    "Give root password for maintenance",
    "Dropping to a shell!",
    "dracut Warning: Could not boot",
];

/// What to boot and what to expect.
#[derive(Debug, Clone)]
pub struct BootTest {
    /// The raw disk image (the guest's `/dev/vda`).
    pub disk: PathBuf,
    /// The guest kernel (bzImage or ELF vmlinux).
    pub kernel: PathBuf,
    /// Its initramfs, if any.
    pub initrd: Option<PathBuf>,
    /// The guest's kernel command line.
    pub cmdline: String,
    /// Patterns the guest's console must show, in this order.
    pub expect: Vec<Regex>,
    /// How long the guest may take, from its VMM's start.
    pub timeout: Duration,
    /// Guest RAM, MiB.
    pub memory_mib: u32,
    /// A vGPU type: vgpud runs in the harness and the guest gets an instance of it.
    pub vgpu: Option<String>,
}

/// Why a boot failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The guest kernel panicked.
    KernelPanic,
    /// The guest dropped to an emergency or rescue shell.
    EmergencyShell,
    /// The timeout passed first.
    Timeout,
    /// The guest (its VMM) stopped before every pattern matched.
    GuestStopped,
    /// The harness failed before or around the guest (not the image's fault).
    Harness,
}

impl FailureKind {
    /// A short name (the JUnit failure type).
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::KernelPanic => "kernel-panic",
            FailureKind::EmergencyShell => "emergency-shell",
            FailureKind::Timeout => "timeout",
            FailureKind::GuestStopped => "guest-stopped",
            FailureKind::Harness => "harness",
        }
    }
}

/// The decision about one boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every pattern matched (or the guest powered off cleanly when none was given).
    Pass(String),
    /// The boot failed.
    Fail(FailureKind, String),
}

impl Verdict {
    /// Whether the boot passed.
    pub fn passed(&self) -> bool {
        matches!(self, Verdict::Pass(_))
    }

    /// The one-line reason.
    pub fn reason(&self) -> String {
        match self {
            Verdict::Pass(why) => format!("PASS: {why}"),
            Verdict::Fail(kind, why) => format!("FAIL ({}): {why}", kind.name()),
        }
    }
}

/// Decides a boot from the guest's console lines and how its VMM ended.
#[derive(Debug)]
pub struct Judge {
    expect: Vec<Regex>,
    matched: usize,
    timeout: Duration,
    last_line: String,
}

fn shorten(line: &str) -> String {
    const MAX: usize = 160;
    let line = line.trim();
    match line.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

impl Judge {
    /// A judge for `expect` (in order) within `timeout`.
    pub fn new(expect: Vec<Regex>, timeout: Duration) -> Self {
        Self {
            expect,
            matched: 0,
            timeout,
            last_line: String::new(),
        }
    }

    /// Patterns matched so far.
    pub fn matched(&self) -> usize {
        self.matched
    }

    /// The pattern waited for now, if any.
    pub fn waiting_for(&self) -> Option<&Regex> {
        self.expect.get(self.matched)
    }

    /// A guest console line: a verdict once it decides the boot.
    pub fn guest_line(&mut self, line: &str) -> Option<Verdict> {
        if !line.trim().is_empty() {
            self.last_line = shorten(line);
        }
        if let Some(at) = PANIC_MARKERS.iter().find_map(|m| line.find(m)) {
            return Some(Verdict::Fail(
                FailureKind::KernelPanic,
                shorten(&line[at..]),
            ));
        }
        if EMERGENCY_MARKERS.iter().any(|m| line.contains(m)) {
            return Some(Verdict::Fail(FailureKind::EmergencyShell, shorten(line)));
        }
        if self.waiting_for().is_some_and(|re| re.is_match(line)) {
            self.matched += 1;
            if self.matched == self.expect.len() {
                return Some(Verdict::Pass(format!(
                    "matched {} pattern{} in order (last: {:?})",
                    self.expect.len(),
                    if self.expect.len() == 1 { "" } else { "s" },
                    shorten(line)
                )));
            }
        }
        None
    }

    fn waiting(&self) -> String {
        let last = if self.last_line.is_empty() {
            "the guest printed nothing".to_string()
        } else {
            format!("last guest line: {:?}", self.last_line)
        };
        match self.waiting_for() {
            Some(re) => format!(
                "/{re}/ not seen ({} of {} patterns matched; {last})",
                self.matched,
                self.expect.len()
            ),
            None => format!("the guest did not power off ({last})"),
        }
    }

    /// The guest's VMM ended (`timed_out`: killed at the timeout) with `exit_code`.
    pub fn guest_ended(&self, exit_code: Option<i32>, timed_out: bool) -> Verdict {
        if timed_out {
            return Verdict::Fail(
                FailureKind::Timeout,
                format!(
                    "no boot within {} s: {}",
                    self.timeout.as_secs(),
                    self.waiting()
                ),
            );
        }
        if self.expect.is_empty() && exit_code == Some(0) {
            return Verdict::Pass("the guest powered off cleanly".into());
        }
        let how = match exit_code {
            Some(0) => "the guest powered off".to_string(),
            Some(80) => "the guest rebooted".to_string(),
            Some(81) => "the guest reset (triple fault or reboot=t)".to_string(),
            Some(c) => format!("vgpu-vmm exited with status {c}"),
            None => "vgpu-vmm was killed".to_string(),
        };
        Verdict::Fail(
            FailureKind::GuestStopped,
            format!("{how} before the boot passed: {}", self.waiting()),
        )
    }
}

/// Everything one boot test produced.
#[derive(Debug, Clone)]
pub struct BootTestOutcome {
    /// The decision.
    pub verdict: Verdict,
    /// The guest's console.
    pub console: Vec<String>,
    /// `vgpu-vmm`'s stderr.
    pub vmm_stderr: Vec<String>,
    /// The whole harness console (guest lines prefixed `guest| `).
    pub harness_console: Vec<String>,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// When the guest's first line arrived, from the run's start.
    pub guest_started: Option<Duration>,
    /// When the verdict was reached, from the run's start.
    pub decided: Option<Duration>,
}

/// Progress of a run, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The harness kernel ran its init.
    HarnessUp(Duration),
    /// The guest printed its first line.
    GuestStarted(Duration),
    /// Pattern `index` (of `total`) matched.
    Matched {
        /// When.
        at: Duration,
        /// Which pattern (0-based).
        index: usize,
        /// How many there are.
        total: usize,
        /// The line.
        line: String,
    },
    /// Still waiting.
    Waiting(Duration, String),
    /// A guest console line (for callers that echo the console).
    GuestLine(String),
}

impl BootTest {
    /// The harness initramfs for this run: `harness`'s with a layer holding the kernel, the
    /// initramfs, the command line and the guest's RAM size, written to `out`.
    pub(crate) fn write_initrd(&self, harness: &Harness, out: &Path) -> Result<(), Error> {
        let mut file = std::fs::File::create(out).map_err(|e| Error::io(out, e))?;
        let mut base =
            std::fs::File::open(&harness.initrd).map_err(|e| Error::io(&harness.initrd, e))?;
        std::io::copy(&mut base, &mut file).map_err(|e| Error::io(out, e))?;
        let mut cpio = CpioWriter::new(std::io::BufWriter::new(file));
        let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
        let io = |e| Error::io(out, e);
        cpio.dir("boottest", 0o755).map_err(io)?;
        cpio.file("boottest/kernel", 0o644, &read(&self.kernel)?)
            .map_err(io)?;
        if let Some(initrd) = &self.initrd {
            cpio.file("boottest/initrd", 0o644, &read(initrd)?)
                .map_err(io)?;
        }
        cpio.file("boottest/cmdline", 0o644, self.cmdline.as_bytes())
            .map_err(io)?;
        cpio.file(
            "boottest/memory",
            0o644,
            self.memory_mib.to_string().as_bytes(),
        )
        .map_err(io)?;
        cpio.finish().and_then(|mut w| w.flush()).map_err(io)
    }

    /// Boots the guest in `harness` (built with [`crate::HarnessVariant::Vmm`]) and decides;
    /// `progress` hears what happens as it happens.
    pub fn run(
        &self,
        harness: &Harness,
        mut progress: impl FnMut(Progress),
    ) -> Result<BootTestOutcome, Error> {
        let scratch = tempfile::tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
        let initrd = scratch.path().join("harness-boottest.cpio");
        self.write_initrd(harness, &initrd)?;

        let mut run =
            HarnessRun::new("boottest").param("timeout", &self.timeout.as_secs().to_string());
        if let Some(ty) = &self.vgpu {
            run = run.param("vgpu", ty);
        }
        run.initrd = Some(initrd);
        run.disks = vec![self.disk.clone()];
        run.memory_mib = HARNESS_BASE_MIB + self.memory_mib;
        run.timeout = self.timeout + HARNESS_ALLOWANCE;

        let start = Instant::now();
        let mut judge = Judge::new(self.expect.clone(), self.timeout);
        let mut verdict: Option<Verdict> = None;
        let mut decided: Option<Instant> = None;
        let mut guest_started = None;
        let mut guest_ended = false;
        let mut harness_error: Option<String> = None;
        let mut last_progress = Instant::now();
        let outcome = run.run_with(harness, |event| {
            let now = Instant::now();
            match event {
                HarnessEvent::Line(line) => {
                    if let Some(rel) = Relayed::parse(line).filter(|r| r.label == GUEST_LABEL) {
                        if rel.stream == Stream::Stdout {
                            if guest_started.is_none() {
                                guest_started = Some(now - start);
                                progress(Progress::GuestStarted(now - start));
                            }
                            progress(Progress::GuestLine(rel.text.to_string()));
                            let before = judge.matched();
                            let v = judge.guest_line(rel.text);
                            if judge.matched() > before {
                                last_progress = now;
                                progress(Progress::Matched {
                                    at: now - start,
                                    index: before,
                                    total: self.expect.len(),
                                    line: shorten(rel.text),
                                });
                            }
                            if verdict.is_none() && v.is_some() {
                                verdict = v;
                                decided = Some(now);
                            }
                        }
                    } else {
                        match Record::parse_line(line) {
                            Some(Ok(Record::HarnessStart { .. })) => {
                                progress(Progress::HarnessUp(now - start))
                            }
                            Some(Ok(Record::TimedRun(t))) if t.label == GUEST_LABEL => {
                                guest_ended = true;
                                if verdict.is_none() {
                                    verdict = Some(judge.guest_ended(t.exit_code, t.timed_out));
                                    decided = Some(now);
                                }
                            }
                            Some(Ok(Record::HarnessEnd {
                                ok: false, error, ..
                            })) => {
                                harness_error = Some(error.unwrap_or_default());
                            }
                            _ => {}
                        }
                    }
                }
                HarnessEvent::Tick => {}
            }
            if verdict.is_none() && now - last_progress >= PROGRESS_EVERY {
                last_progress = now;
                progress(Progress::Waiting(now - start, judge.waiting()));
            }
            match (&verdict, decided) {
                (Some(Verdict::Pass(_)), _) => Flow::Stop,
                (Some(_), _) if guest_ended || harness_error.is_some() => Flow::Stop,
                (Some(_), Some(at)) if now - at >= GRACE => Flow::Stop,
                _ => Flow::Continue,
            }
        })?;

        let verdict = verdict.unwrap_or_else(|| {
            let last = outcome
                .console
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or("nothing".to_string(), |l| shorten(l));
            let why = match (&harness_error, outcome.timed_out) {
                (Some(e), _) => format!("the harness failed: {e}"),
                (None, true) => format!(
                    "the harness did not finish within {} s (last line: {last:?})",
                    run.timeout.as_secs()
                ),
                (None, false) => format!(
                    "the harness stopped (QEMU exit {:?}) without running the guest to an end \
                     (last line: {last:?})",
                    outcome.qemu_exit
                ),
            };
            Verdict::Fail(FailureKind::Harness, why)
        });
        let runs = outcome.runs();
        let guest = runs.into_iter().find(|r| r.label == GUEST_LABEL);
        let (console, vmm_stderr) =
            guest.map_or((Vec::new(), Vec::new()), |g| (g.console, g.stderr));
        Ok(BootTestOutcome {
            verdict,
            console,
            vmm_stderr,
            harness_console: outcome.console,
            elapsed: outcome.elapsed,
            guest_started,
            decided: decided.map(|d| d - start),
        })
    }
}

impl BootTestOutcome {
    /// Writes `console.log` (the guest's console), `vmm-stderr.log` and `harness.log` into
    /// `dir` (created if missing); returns the console log's path.
    pub fn write_artifacts(&self, dir: &Path) -> Result<PathBuf, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for (name, lines) in [
            ("console.log", &self.console),
            ("vmm-stderr.log", &self.vmm_stderr),
            ("harness.log", &self.harness_console),
        ] {
            let path = dir.join(name);
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        }
        Ok(dir.join("console.log"))
    }

    /// A JUnit XML report of this boot as one test case `name` in suite `suite`.
    pub fn junit_xml(&self, suite: &str, name: &str) -> String {
        let secs = self.elapsed.as_secs_f64();
        let failures = u32::from(!self.verdict.passed());
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites tests=\"1\" failures=\"{failures}\" time=\"{secs:.3}\">\n  \
             <testsuite name=\"{}\" tests=\"1\" failures=\"{failures}\" errors=\"0\" time=\"{secs:.3}\">\n    \
             <testcase classname=\"{}\" name=\"{}\" time=\"{secs:.3}\">",
            xml_escape(suite),
            xml_escape(suite),
            xml_escape(name)
        );
        if let Verdict::Fail(kind, why) = &self.verdict {
            let tail = &self.console[self.console.len().saturating_sub(50)..];
            let _ = writeln!(
                x,
                "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                kind.name(),
                xml_escape(&self.verdict.reason()),
                xml_escape(&format!(
                    "{why}\n\nlast guest console lines:\n{}",
                    tail.join("\n")
                ))
            );
        }
        let _ = writeln!(
            x,
            "      <system-out>{}</system-out>\n    </testcase>\n  </testsuite>\n</testsuites>",
            xml_escape(&self.console.join("\n"))
        );
        x
    }
}

/// Escapes text for XML content and attributes, dropping characters XML 1.0 cannot carry
/// (a guest console holds escape sequences and stray control bytes).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(patterns: &[&str]) -> Judge {
        Judge::new(
            patterns.iter().map(|p| Regex::new(p).unwrap()).collect(),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn patterns_match_in_order_only() {
        let mut j = judge(&["second", "first"]);
        assert_eq!(j.guest_line("first"), None);
        assert_eq!(j.matched(), 0, "the first pattern waits for `second`");
        assert_eq!(j.guest_line("the second line"), None);
        let v = j.guest_line("first again").unwrap();
        assert!(v.passed(), "{v:?}");
        assert!(v.reason().starts_with("PASS: matched 2 patterns"));
    }

    #[test]
    fn panics_and_emergency_shells_fail_with_their_line() {
        let mut j = judge(&["login:"]);
        let v = j
            .guest_line("[    1.2] Kernel panic - not syncing: No working init found.")
            .unwrap();
        assert_eq!(
            v,
            Verdict::Fail(
                FailureKind::KernelPanic,
                "Kernel panic - not syncing: No working init found.".into()
            )
        );
        let mut j = judge(&["login:"]);
        let v = j
            .guest_line("You are in emergency mode. After logging in, type \"journalctl -xb\"")
            .unwrap();
        assert!(matches!(v, Verdict::Fail(FailureKind::EmergencyShell, _)));
        assert!(v
            .reason()
            .starts_with("FAIL (emergency-shell): You are in emergency mode"));
        let mut j = judge(&["login:"]);
        assert!(matches!(
            j.guest_line("ALERT! /dev/vda does not exist. Dropping to a shell!"),
            Some(Verdict::Fail(FailureKind::EmergencyShell, _))
        ));
    }

    #[test]
    fn the_end_of_the_guest_decides_what_the_lines_did_not() {
        let mut j = judge(&["ready", "done"]);
        j.guest_line("ready");
        j.guest_line("still booting");
        let v = j.guest_ended(None, true);
        assert_eq!(
            v.reason(),
            "FAIL (timeout): no boot within 60 s: /done/ not seen (1 of 2 patterns matched; \
             last guest line: \"still booting\")"
        );
        let v = j.guest_ended(Some(81), false);
        assert!(matches!(v, Verdict::Fail(FailureKind::GuestStopped, _)));
        assert!(v.reason().contains("triple fault"));
        // Without patterns a clean power-off passes and a reset does not.
        let j = judge(&[]);
        assert!(j.guest_ended(Some(0), false).passed());
        assert!(!j.guest_ended(Some(81), false).passed());
        assert!(j
            .guest_ended(None, true)
            .reason()
            .contains("the guest printed nothing"));
    }

    #[test]
    fn junit_reports_escape_the_console() {
        let out = BootTestOutcome {
            verdict: Verdict::Fail(FailureKind::KernelPanic, "Kernel panic <x>".into()),
            console: vec!["a & b".into(), "\u{1b}[0mKernel panic <x>".into()],
            vmm_stderr: vec![],
            harness_console: vec![],
            elapsed: Duration::from_millis(1500),
            guest_started: None,
            decided: None,
        };
        let x = out.junit_xml("boot-test", "img \"1\"");
        assert!(x.contains("name=\"img &quot;1&quot;\""));
        assert!(x.contains("<failure type=\"kernel-panic\" message=\"FAIL (kernel-panic): Kernel panic &lt;x&gt;\">"));
        assert!(x.contains("a &amp; b\n[0mKernel panic &lt;x&gt;</system-out>"));
        assert!(x.contains("failures=\"1\""));
        assert!(!x.contains('\u{1b}'));
        let pass = BootTestOutcome {
            verdict: Verdict::Pass("ok".into()),
            ..out
        };
        let x = pass.junit_xml("s", "n");
        assert!(!x.contains("<failure"));
        assert!(x.contains("failures=\"0\""));
    }

    #[test]
    fn long_lines_are_shortened_on_a_char_boundary() {
        let line = "é".repeat(300);
        let s = shorten(&line);
        assert_eq!(s.chars().count(), 163);
        assert!(s.ends_with("..."));
    }
}
