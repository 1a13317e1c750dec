//! Boot and disk benchmark of a real distribution image: in one harness boot, the Debian 12
//! image ([`DebianImage`]) boots N times under `vgpu-vmm` and N times under QEMU
//! (`-M microvm,pcie=on`, `virtio-blk-pci`, `snapshot=on`), alternating, on the same kernel,
//! initramfs and command line plus `vgpu.readbench`. Each boot is timed inside the harness by
//! `vgpu-guest timed-run` from spawning the VMM to systemd's `Multi-User System` line, then the
//! image's read benchmark unit reads [`READBENCH_MIB`] MiB of the disk with `O_DIRECT` and
//! prints dd's summary, and the boot is ended. Both VMMs read the disk through the harness's
//! page cache, whose first [`READBENCH_MIB`] MiB (the read's range) is filled before the first
//! boot; what systemd reads elsewhere on the disk is cold for the first boot only (a
//! `vgpu-vmm` one). They run on the same nested KVM inside the same TCG harness, so only the
//! ratios mean something.

use crate::bench::{median, Vmm};
use crate::boot_test::{BootTest, HARNESS_BASE_MIB};
use crate::debian_image::{DebianImage, READBENCH_MARK, READBENCH_MIB};
use crate::harness::{Harness, HarnessVariant};
use crate::runner::{GuestRun, HarnessRun};
use crate::stock_boot::STOCK_CMDLINE;
use crate::Error;
use std::path::Path;
use std::time::Duration;

/// Heading of the section this benchmark owns in `docs/benchmarks.md`.
pub const DOC_HEADING: &str = "## Debian image: boot to systemd and disk reads";
/// The guest's RAM, MiB (the boot test's default).
const GUEST_MIB: u32 = 512;
/// Limit of one boot inside the harness.
const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

/// One boot of the image.
#[derive(Debug, Clone)]
pub struct DiskSample {
    /// VMM it ran under.
    pub vmm: Vmm,
    /// Milliseconds from VMM start to systemd's `Multi-User System` line.
    pub target_ms: f64,
    /// Bytes the guest's dd read.
    pub read_bytes: u64,
    /// Seconds dd took for them.
    pub read_secs: f64,
}

impl DiskSample {
    /// Read throughput, MiB/s.
    pub fn read_mib_s(&self) -> f64 {
        self.read_bytes as f64 / (1024.0 * 1024.0) / self.read_secs
    }
}

/// Results of one benchmark run.
#[derive(Debug, Clone)]
pub struct DiskBench {
    /// Every boot, in order.
    pub samples: Vec<DiskSample>,
    /// Wall time of the harness boot that ran them all.
    pub harness_elapsed: Duration,
    /// The image's kernel package.
    pub kernel_package: String,
}

/// Bytes and seconds from dd's last line (`268435456 bytes (268 MB, 256 MiB) copied, 1.5 s,
/// 179 MB/s`), as coreutils prints it.
pub fn parse_dd_summary(line: &str) -> Option<(u64, f64)> {
    let bytes = line.split_whitespace().next()?.parse().ok()?;
    let secs = line
        .split(", ")
        .find_map(|part| part.strip_suffix(" s")?.parse::<f64>().ok())?;
    (secs > 0.0).then_some((bytes, secs))
}

fn sample(run: &GuestRun) -> Result<Option<DiskSample>, Error> {
    let Some(vmm) = Vmm::from_label(&run.label) else {
        return Ok(None);
    };
    let fail = |why: &str| Error::Run(format!("{}: {why}\n{}", run.label, run.console_tail(30)));
    let timing = run
        .timing
        .as_ref()
        .ok_or_else(|| fail("no timed_run record"))?;
    let target_us = timing
        .marks_us
        .first()
        .copied()
        .flatten()
        .ok_or_else(|| fail("systemd never reached Multi-User System"))?;
    let line = run
        .console
        .iter()
        .find_map(|l| l.split_once(READBENCH_MARK).map(|(_, rest)| rest.trim()))
        .ok_or_else(|| fail("the read benchmark printed nothing"))?;
    let (read_bytes, read_secs) =
        parse_dd_summary(line).ok_or_else(|| fail(&format!("dd's summary {line:?}")))?;
    if read_bytes != READBENCH_MIB << 20 {
        return Err(fail(&format!(
            "dd read {read_bytes} bytes, not {READBENCH_MIB} MiB"
        )));
    }
    Ok(Some(DiskSample {
        vmm,
        target_ms: target_us as f64 / 1000.0,
        read_bytes,
        read_secs,
    }))
}

impl DiskBench {
    /// Boots `harness` (the variant with QEMU) once with `image` as its disk and collects
    /// `runs` boots per VMM.
    pub fn run(
        harness: &Harness,
        image: &DebianImage,
        runs: usize,
        echo: bool,
    ) -> Result<DiskBench, Error> {
        if harness.variant != HarnessVariant::WithQemu {
            return Err(Error::Run(
                "the disk benchmark needs the harness with QEMU".into(),
            ));
        }
        let guest = BootTest {
            disk: image.image.clone(),
            kernel: image.vmlinuz.clone(),
            initrd: Some(image.initrd.clone()),
            cmdline: STOCK_CMDLINE.to_string(),
            expect: Vec::new(),
            timeout: BOOT_TIMEOUT,
            memory_mib: GUEST_MIB,
            vgpu: None,
        };
        let scratch = tempfile::tempdir().map_err(|e| Error::io(Path::new("/tmp"), e))?;
        let initrd = scratch.path().join("harness-diskbench.cpio");
        guest.write_initrd(harness, &initrd)?;
        let mut run = HarnessRun::new("diskbench")
            .param("runs", &runs.to_string())
            .param("timeout", &BOOT_TIMEOUT.as_secs().to_string());
        run.initrd = Some(initrd);
        run.disks = vec![image.image.clone()];
        run.memory_mib = HARNESS_BASE_MIB + GUEST_MIB;
        run.timeout = Duration::from_secs(120) + BOOT_TIMEOUT * (2 * runs as u32);
        run.echo = echo;
        let outcome = run.run(harness)?;
        let mut samples = Vec::new();
        for r in outcome.runs() {
            samples.extend(sample(&r)?);
        }
        if !outcome.harness_ok() || samples.len() != 2 * runs {
            return Err(Error::Run(format!(
                "the harness did not finish the diskbench scenario ({} of {} boots measured, \
                 timed out: {})\n{}",
                samples.len(),
                2 * runs,
                outcome.timed_out,
                outcome.console_tail(40)
            )));
        }
        Ok(DiskBench {
            samples,
            harness_elapsed: outcome.elapsed,
            kernel_package: image.kernel_package.clone(),
        })
    }

    fn of(&self, vmm: Vmm) -> impl Iterator<Item = &DiskSample> {
        self.samples.iter().filter(move |s| s.vmm == vmm)
    }

    /// Median time to systemd's multi-user target under `vmm`, in milliseconds.
    pub fn median_target_ms(&self, vmm: Vmm) -> Option<f64> {
        median(&self.of(vmm).map(|s| s.target_ms).collect::<Vec<_>>())
    }

    /// Median read throughput under `vmm`, MiB/s.
    pub fn median_read_mib_s(&self, vmm: Vmm) -> Option<f64> {
        median(&self.of(vmm).map(DiskSample::read_mib_s).collect::<Vec<_>>())
    }

    /// Ours over QEMU by median boot time (below 1: ours boots faster).
    pub fn boot_ratio(&self) -> Option<f64> {
        Some(self.median_target_ms(Vmm::VgpuVmm)? / self.median_target_ms(Vmm::Qemu)?)
    }

    /// Ours over QEMU by median read throughput (above 1: ours reads faster).
    pub fn read_ratio(&self) -> Option<f64> {
        Some(self.median_read_mib_s(Vmm::VgpuVmm)? / self.median_read_mib_s(Vmm::Qemu)?)
    }

    /// The section of `docs/benchmarks.md`.
    pub fn markdown(&self) -> String {
        let runs = self.of(Vmm::VgpuVmm).count();
        let fmt = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
        let mut md = format!(
            "{DOC_HEADING}\n\n\
`cargo run --release -p images --bin vgpu-image -- disk-bench --runs {runs} --write-docs` \
(2-core CI-kind machine). One boot of the nested harness boots the Debian 12 minbase image \
(systemd, its own `{}` kernel and initramfs-tools initramfs, {GUEST_MIB} MiB, 1 vCPU, \
`{STOCK_CMDLINE} vgpu.readbench`) {runs} times under each VMM, alternating: `vgpu-vmm --disk \
path=/dev/vda,snapshot` and QEMU `-M microvm,pcie=on -enable-kvm -cpu host` with \
`virtio-blk-pci` on `-drive format=raw,snapshot=on`. Boot time is measured inside the harness \
by `vgpu-guest timed-run`, from spawning the VMM to systemd's `Reached target multi-user.target \
- Multi-User System` line; then a unit of the image reads {READBENCH_MIB} MiB of `/dev/vda` \
with `dd bs=1M iflag=direct` and prints dd's summary. Both VMMs read the image through the \
harness's page cache, its first {READBENCH_MIB} MiB filled before the first boot (the rest is \
cold for the first boot only, a `vgpu-vmm` one): `vgpu-vmm` reads from it straight into the guest's buffers on the \
notifying vCPU and completes with INTx; QEMU serves the queue from its event loop and completes \
with MSI-X. Everything runs on nested KVM under TCG, so only the ratios mean something.\n\n\
| VMM | median s to multi-user | runs (s) | median read MiB/s | runs (MiB/s) |\n\
| --- | ---: | --- | ---: | --- |\n",
            self.kernel_package
        );
        for (name, vmm) in [
            ("vgpu-vmm", Vmm::VgpuVmm),
            ("QEMU microvm (baseline)", Vmm::Qemu),
        ] {
            let list = |f: &dyn Fn(&DiskSample) -> f64| {
                self.of(vmm)
                    .map(|s| format!("{:.1}", f(s)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} |\n",
                fmt(self.median_target_ms(vmm).map(|v| v / 1000.0), 1),
                list(&|s| s.target_ms / 1000.0),
                fmt(self.median_read_mib_s(vmm), 1),
                list(&DiskSample::read_mib_s),
            ));
        }
        md.push_str(&format!(
            "\nRatios ours/QEMU: boot time **{}**, read throughput **{}**. The harness boot with \
all {} guest boots took {:.0} s.\n",
            fmt(self.boot_ratio(), 2),
            fmt(self.read_ratio(), 2),
            2 * runs,
            self.harness_elapsed.as_secs_f64()
        ));
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_summaries_give_bytes_and_seconds() {
        assert_eq!(
            parse_dd_summary("268435456 bytes (268 MB, 256 MiB) copied, 1.52341 s, 176 MB/s"),
            Some((268_435_456, 1.52341))
        );
        // Under a second dd prints the seconds with an exponent sometimes.
        assert_eq!(
            parse_dd_summary("1048576 bytes (1.0 MB, 1.0 MiB) copied, 5.1e-05 s, 20.6 GB/s"),
            Some((1_048_576, 5.1e-05))
        );
        assert_eq!(parse_dd_summary("dd: failed to open '/dev/vda'"), None);
        assert_eq!(parse_dd_summary("0 bytes copied, 0 s, 0 B/s"), None);
    }

    #[test]
    fn throughput_is_mebibytes_per_second() {
        let s = DiskSample {
            vmm: Vmm::Qemu,
            target_ms: 1.0,
            read_bytes: 256 << 20,
            read_secs: 2.0,
        };
        assert_eq!(s.read_mib_s(), 128.0);
    }
}
