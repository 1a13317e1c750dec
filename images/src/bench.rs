//! Boot benchmark: in one harness boot, start the same test guest N times under `vgpu-vmm` and N
//! times under QEMU (`-M microvm -enable-kvm -cpu host`), alternating, and compare the time from
//! VMM start to the agent's first result line. Both run on the same nested KVM inside the
//! same TCG harness, so only their ratio is meaningful, not the absolute times.

use crate::harness::{Harness, HarnessVariant};
use crate::runner::{GuestRun, HarnessRun};
use crate::{tools, Error};
use guest_tools::report::Record;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Heading of the section this benchmark owns in `docs/benchmarks.md`.
pub const DOC_HEADING: &str = "## Boot";

/// Which VMM a sample ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vmm {
    /// Ours.
    VgpuVmm,
    /// The baseline.
    Qemu,
}

impl Vmm {
    pub(crate) fn from_label(label: &str) -> Option<Vmm> {
        if label.starts_with("vgpu-vmm-") {
            Some(Vmm::VgpuVmm)
        } else if label.starts_with("qemu-") {
            Some(Vmm::Qemu)
        } else {
            None
        }
    }
}

/// One boot of the test guest.
#[derive(Debug, Clone)]
pub struct BootSample {
    /// VMM it ran under.
    pub vmm: Vmm,
    /// Milliseconds from VMM start to the agent's first line.
    pub first_line_ms: f64,
    /// The guest kernel's own boot time (CLOCK_BOOTTIME at agent start), in milliseconds.
    pub guest_boottime_ms: Option<f64>,
    /// KVM exits of the whole run (vgpu-vmm `--stats` only).
    pub exits: Option<u64>,
}

/// Results of one benchmark run.
#[derive(Debug, Clone)]
pub struct BootBench {
    /// Every boot, in order.
    pub samples: Vec<BootSample>,
    /// Wall time of the harness boot that ran them all.
    pub harness_elapsed: Duration,
    /// Sizes in bytes of the images and binaries, by name.
    pub sizes: Vec<(String, u64)>,
    /// Kernel and QEMU versions used.
    pub versions: Vec<(String, String)>,
}

/// Median of `values` (mean of the middle two for even counts); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    })
}

/// Total KVM exits from `vgpu-vmm --stats` output (`stats: exit total N`).
pub fn exit_total(stderr: &[String]) -> Option<u64> {
    stderr.iter().find_map(|l| {
        l.trim()
            .strip_prefix("stats: exit total ")?
            .trim()
            .parse()
            .ok()
    })
}

fn sample(run: &GuestRun) -> Result<Option<BootSample>, Error> {
    let Some(vmm) = Vmm::from_label(&run.label) else {
        return Ok(None);
    };
    let fail = |why: &str| Error::Run(format!("{}: {why}\n{}", run.label, run.console_tail(20)));
    let timing = run
        .timing
        .as_ref()
        .ok_or_else(|| fail("no timed_run record"))?;
    let first = timing
        .first_result_us
        .ok_or_else(|| fail("the guest printed no result line"))?;
    let guest_boottime_ms = run.records.iter().find_map(|r| match r {
        Record::Agent { boottime_ns, .. } => Some(*boottime_ns as f64 / 1e6),
        _ => None,
    });
    Ok(Some(BootSample {
        vmm,
        first_line_ms: first as f64 / 1000.0,
        guest_boottime_ms,
        exits: exit_total(&run.stderr),
    }))
}

impl BootBench {
    /// Builds the QEMU harness variant, boots it once with the `bench` scenario and collects
    /// `runs` boots per VMM.
    pub fn run(harness: &Harness, runs: usize, echo: bool) -> Result<BootBench, Error> {
        if harness.variant != HarnessVariant::WithQemu {
            return Err(Error::Run(
                "the boot benchmark needs the harness with QEMU".into(),
            ));
        }
        let mut run = HarnessRun::new("bench")
            .param("runs", &runs.to_string())
            .param("timeout", "120");
        run.timeout = Duration::from_secs(120 + 60 * runs as u64);
        run.echo = echo;
        let outcome = run.run(harness)?;
        if !outcome.harness_ok() {
            return Err(Error::Run(format!(
                "the harness did not finish the bench scenario (timed out: {})\n{}",
                outcome.timed_out,
                outcome.console_tail(40)
            )));
        }
        let mut samples = Vec::new();
        for r in outcome.runs() {
            samples.extend(sample(&r)?);
        }
        Ok(BootBench {
            samples,
            harness_elapsed: outcome.elapsed,
            sizes: sizes(harness),
            versions: versions(harness),
        })
    }

    fn of(&self, vmm: Vmm) -> impl Iterator<Item = &BootSample> {
        self.samples.iter().filter(move |s| s.vmm == vmm)
    }

    /// Median time to the agent's first line under `vmm`, in milliseconds.
    pub fn median_first_line_ms(&self, vmm: Vmm) -> Option<f64> {
        median(&self.of(vmm).map(|s| s.first_line_ms).collect::<Vec<_>>())
    }

    /// Median guest kernel boot time under `vmm`, in milliseconds.
    pub fn median_guest_boottime_ms(&self, vmm: Vmm) -> Option<f64> {
        median(
            &self
                .of(vmm)
                .filter_map(|s| s.guest_boottime_ms)
                .collect::<Vec<_>>(),
        )
    }

    /// Median KVM exits per boot under `vmm` (known for vgpu-vmm only).
    pub fn median_exits(&self, vmm: Vmm) -> Option<f64> {
        median(
            &self
                .of(vmm)
                .filter_map(|s| s.exits.map(|e| e as f64))
                .collect::<Vec<_>>(),
        )
    }

    /// Ours over QEMU, by median time to the first line (below 1: ours is faster).
    pub fn ratio(&self) -> Option<f64> {
        Some(self.median_first_line_ms(Vmm::VgpuVmm)? / self.median_first_line_ms(Vmm::Qemu)?)
    }

    /// The `## Boot` section of `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
        let list = |vmm| {
            self.of(vmm)
                .map(|s| format!("{:.0}", s.first_line_ms))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let runs = self.of(Vmm::VgpuVmm).count();
        let mut md = format!(
            "{DOC_HEADING}\n\n\
`cargo run --release -p images --bin vgpu-image -- bench --runs {runs} --write-docs` \
(2-core CI-kind machine shared with other jobs). One boot of the nested harness (Debian's \
generic kernel in QEMU TCG, `-cpu max`, which gives it SVM, so `kvm-amd` loads) starts the same \
test guest (Debian's cloud kernel as ELF vmlinux, the gzip initramfs with the `vgpu-guest` agent, \
256 MiB, 1 vCPU, `{}`) {runs} times under each VMM, alternating. The time is measured inside the \
harness by `vgpu-guest timed-run`, from spawning the VMM to the guest agent's first result line \
on the VMM's stdout. QEMU runs `-M microvm -enable-kvm -cpu host` with the same kernel, initramfs \
and command line. Everything runs on nested KVM under TCG, so absolute times are far slower than \
on hardware and only the ratio between the two VMMs means something.\n\n\
| VMM | median ms to agent's first line | runs (ms) | median guest boot time (ms, CLOCK_BOOTTIME) | KVM exits per boot (median) |\n\
| --- | ---: | --- | ---: | ---: |\n",
            crate::guest::GUEST_CMDLINE
        );
        for (name, vmm) in [
            ("vgpu-vmm", Vmm::VgpuVmm),
            ("QEMU microvm (baseline)", Vmm::Qemu),
        ] {
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                ms(self.median_first_line_ms(vmm)),
                list(vmm),
                ms(self.median_guest_boottime_ms(vmm)),
                ms(self.median_exits(vmm)),
            ));
        }
        md.push_str(&format!(
            "\nRatio ours/QEMU (median time to first line): **{}**. The harness boot with all {} \
guest boots took {:.0} s. QEMU's exits are not counted (it has no such statistics). \
The load of the shared machine makes single boots vary by 2x; the alternation keeps both VMMs \
under the same load. Where QEMU's extra time goes (seen with `vgpu-image run --vmm qemu \
--guest-append loglevel=7`): about 4 s of its guest's boot is the `rtc_cmos` probe, which \
ends in `broken or not accessible` (also with `-M microvm,rtc=off`); under vgpu-vmm, whose CMOS ports read 0, the same probe \
gives up at once (`only 24-hr supported`).\n\n",
            self.ratio().map_or("-".into(), |r| format!("{r:.2}")),
            2 * runs,
            self.harness_elapsed.as_secs_f64()
        ));
        md.push_str("| image | bytes |\n| --- | ---: |\n");
        for (name, size) in &self.sizes {
            md.push_str(&format!("| {name} | {size} |\n"));
        }
        md.push('\n');
        for (what, version) in &self.versions {
            md.push_str(&format!("- {what}: {version}\n"));
        }
        md
    }
}

fn sizes(h: &Harness) -> Vec<(String, u64)> {
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let base = h.initrd.with_file_name("harness.cpio");
    let layer = h.initrd.with_file_name("qemu-layer.cpio.gz");
    vec![
        (
            "test guest kernel (ELF vmlinux)".into(),
            size(&h.guest.vmlinux),
        ),
        (
            "test guest initramfs (cpio.gz)".into(),
            size(&h.guest.initrd),
        ),
        ("harness kernel (ELF vmlinux)".into(), size(&h.vmlinux)),
        ("harness initramfs (cpio, uncompressed)".into(), size(&base)),
        ("harness QEMU layer (cpio.gz)".into(), size(&layer)),
        ("vgpu-vmm (static)".into(), size(&h.bins.vmm)),
        ("vgpu-guest (static)".into(), size(&h.bins.guest)),
    ]
}

fn versions(h: &Harness) -> Vec<(String, String)> {
    let qemu = tools::run(Command::new("qemu-system-x86_64").arg("--version"))
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|e| e.to_string());
    vec![
        (
            "test guest kernel".into(),
            format!(
                "{} ({})",
                h.guest.kernel.package.name, h.guest.kernel.package.version
            ),
        ),
        (
            "harness kernel".into(),
            format!("{} ({})", h.kernel.package.name, h.kernel.package.version),
        ),
        ("QEMU".into(), qemu),
    ]
}

/// Replaces the section starting at `heading` (up to the next `## ` heading) in the Markdown file
/// at `doc` with `section`, or appends it; creates the file with a title if it is missing.
pub fn write_section(doc: &Path, heading: &str, section: &str) -> Result<(), Error> {
    let text = std::fs::read_to_string(doc).unwrap_or_else(|_| "# Benchmarks\n".to_string());
    let updated = replace_section(&text, heading, section);
    tools::write_atomic(doc, updated.as_bytes())
}

fn replace_section(text: &str, heading: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_end());
    let start = text.match_indices(heading).map(|(i, _)| i).find(|&i| {
        (i == 0 || text[..i].ends_with('\n')) && text[i + heading.len()..].starts_with('\n')
    });
    match start {
        Some(i) => {
            let rest = &text[i + heading.len()..];
            let end = rest
                .match_indices("\n## ")
                .next()
                .map_or(text.len(), |(j, _)| i + heading.len() + j + 1);
            let tail = &text[end..];
            if tail.is_empty() {
                format!("{}{section}", &text[..i])
            } else {
                format!("{}{section}\n{tail}", &text[..i])
            }
        }
        None => format!("{}\n\n{section}", text.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_even_and_empty_sets() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn exit_total_comes_from_stats_lines() {
        let lines = [
            "stats: exit io_in 3".to_string(),
            "stats: exit total 1036".to_string(),
        ];
        assert_eq!(exit_total(&lines), Some(1036));
        assert_eq!(exit_total(&["nothing".to_string()]), None);
    }

    #[test]
    fn sections_are_replaced_in_place_or_appended() {
        let doc = "# B\n\n## RM core\n\nrm\n\n## Boot\n\nold\n\n## Later\n\nx\n";
        let out = replace_section(doc, "## Boot", "## Boot\n\nnew\n");
        assert_eq!(
            out,
            "# B\n\n## RM core\n\nrm\n\n## Boot\n\nnew\n\n## Later\n\nx\n"
        );
        let out = replace_section("# B\n\n## RM core\n\nrm\n", "## Boot", "## Boot\n\nnew");
        assert_eq!(out, "# B\n\n## RM core\n\nrm\n\n## Boot\n\nnew\n");
        let out = replace_section("# B\n\n## Boot\n\nold\n", "## Boot", "## Boot\n\nnew");
        assert_eq!(out, "# B\n\n## Boot\n\nnew\n");
        assert_eq!(
            replace_section("## Booting\n", "## Boot", "## Boot\n"),
            "## Booting\n\n## Boot\n"
        );
    }
}
