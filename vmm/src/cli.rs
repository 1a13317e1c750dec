//! Command-line interface of `vgpu-vmm`.

use std::path::PathBuf;

use clap::Parser;

use crate::devices::vfio_user::VgpuSpec;
use crate::devices::virtio_blk::DiskSpec;

/// The command line the guest gets when `--cmdline` is not given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

const AFTER_HELP: &str = "\
Exit status:
  0   the guest powered off (ACPI S5, e.g. busybox `poweroff -f`)
  80  the guest requested a reboot (i8042 0xFE or the ACPI reset register)
  81  triple fault / KVM_EXIT_SHUTDOWN (what the guest's `reboot=t` produces)
  1   the VMM failed or the guest died (internal error, failed entry, unknown exit);
      one line on stderr says why, with the exit reason and RIP where known
  2   usage error (bad flag, bad value, missing file)

Guest platform: COM1 at 0x3f8 (IRQ 4), PCI root bus with type-1 config access (0xCF8/0xCFC)
and a host bridge at 00:00.0, ACPI (RSDP/XSDT/FADT/DSDT with a PCI _PRT/MADT; power off through
the FADT sleep registers at I/O 0x600), in-kernel LAPIC/IOAPIC/PIT, i8042, CMOS reading 0; with
--vgpu, each vGPU (10de:7f61, protocol in vgpu/PROTOCOL.md) at the next free slot from 00:01.0;
with --disk, each disk (virtio-blk, 1af4:1042, INTx) at the next free slot after the vGPUs.
The guest needs neither `pci=off` nor `acpi=off`; recommended command line:
  console=ttyS0 reboot=t panic=-1 quiet

Logging: RUST_LOG=debug (or trace) prints the VMM's log on stderr.";

/// `vgpu-vmm`: boot one Linux guest on KVM.
#[derive(Debug, Parser)]
#[command(name = "vgpu-vmm", version, about, after_help = AFTER_HELP)]
pub struct Args {
    /// Guest kernel: an uncompressed ELF vmlinux (faster) or a bzImage; detected from the file.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    pub kernel: PathBuf,

    /// Initial ramdisk (cpio archive, optionally compressed) loaded at the top of low RAM.
    #[arg(long, value_name = "FILE", value_parser = existing_file)]
    pub initrd: Option<PathBuf>,

    /// Kernel command line (at most 2047 bytes).
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Guest RAM in MiB (16 to 1048576); RAM above 3 GiB is placed above 4 GiB.
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(16..=1_048_576))]
    pub memory: u64,

    /// Number of vCPUs (1 to 64); described to the guest by the ACPI MADT.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=64))]
    pub vcpus: u8,

    /// Write the serial console to FILE instead of stdout (created or truncated).
    #[arg(long, value_name = "FILE")]
    pub console_log: Option<PathBuf>,

    /// At exit, print KVM exit counts to stderr, one `stats: exit <reason> <count>` line per
    /// reason, then `stats: exit total <count>` and `stats: run_ms <ms>`. With vGPUs also
    /// `stats: vgpuN <counter> <n>` for bar_reads and bar_writes (trapped accesses, each a
    /// socket round trip to vgpud), config_forwards and irq_changes; the device's own counters
    /// and the RM objects are vgpud's (`vgpuctl status`).
    #[arg(long)]
    pub stats: bool,

    /// Attach a vGPU instance served by vgpud: `socket=PATH[,intr=poll|intx]` (repeatable).
    /// Define and start the instance first (`vgpuctl define ...; vgpuctl start -u UUID`
    /// prints PATH). The window BAR is mapped from the fd vgpud sends (no exits); BAR0 accesses
    /// go over the socket. intx wires INTA through the DSDT's _PRT to GSI 16 + (slot + pin) % 8;
    /// poll (the default) leaves the pin at 0. One VMM per instance at a time.
    #[arg(long, value_name = "SPEC")]
    pub vgpu: Vec<VgpuSpec>,

    /// Attach a raw disk image as a virtio-blk PCI function (repeatable; the guest's
    /// /dev/vda, /dev/vdb, ... in order): `path=IMG[,readonly|,snapshot][,overlay_mib=N]`.
    /// IMG is a raw image file or a block device. Without a mode the guest's writes go to IMG;
    /// readonly offers a read-only disk (writes fail with an I/O error); snapshot keeps the
    /// guest's writes in host memory, at most overlay_mib MiB (default 256; writes past that
    /// fail with an I/O error), and leaves IMG untouched. The guest needs the virtio_pci and
    /// virtio_blk drivers (modules in Debian's kernels: load them from the initrd).
    #[arg(long, value_name = "SPEC")]
    pub disk: Vec<DiskSpec>,
}

fn existing_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("{s} is not a regular file")),
        Err(e) => Err(format!("{s}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_documents_every_flag_and_status() {
        let help = Args::command().render_long_help().to_string();
        for flag in [
            "--kernel",
            "--initrd",
            "--cmdline",
            "--memory",
            "--vcpus",
            "--console-log",
            "--stats",
            "--vgpu",
            "--disk",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        for status in ["  0 ", "  80 ", "  81 ", "  1 ", "  2 "] {
            assert!(help.contains(status), "status {status} missing from --help");
        }
    }

    #[test]
    fn parses_and_rejects() {
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        let a =
            Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--vcpus", "2", "--stats"]).unwrap();
        assert_eq!((a.vcpus, a.memory, a.stats), (2, 256, true));
        assert_eq!(a.cmdline, DEFAULT_CMDLINE);
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", "/nonexistent"]).is_err());
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--vcpus", "0"]).is_err());
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--memory", "8"]).is_err());
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", "/"]).is_err());
        assert!(Args::try_parse_from(["vgpu-vmm"]).is_err());
        let a = Args::try_parse_from([
            "vgpu-vmm",
            "--kernel",
            exe,
            "--vgpu",
            "socket=/a",
            "--vgpu",
            "socket=/b,intr=intx",
        ])
        .unwrap();
        assert_eq!(a.vgpu.len(), 2);
        assert_eq!(a.vgpu[1].socket, PathBuf::from("/b"));
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--vgpu", "type=x"]).is_err());
        let a = Args::try_parse_from([
            "vgpu-vmm",
            "--kernel",
            exe,
            "--disk",
            "path=/a,snapshot",
            "--disk",
            "path=/b",
        ])
        .unwrap();
        assert_eq!(a.disk.len(), 2);
        assert!(Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--disk", "snapshot"]).is_err());
        assert!(
            Args::try_parse_from(["vgpu-vmm", "--kernel", exe, "--vgpu", "intr=intx"]).is_err()
        );
    }
}
