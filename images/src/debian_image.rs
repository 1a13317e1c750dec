//! A real distribution image for boot tests: Debian 12 (bookworm) minbase with systemd as init
//! and the cloud kernel the other images pin, built by `mmdebstrap` (Debian's successor of
//! `debootstrap`, which takes the security suite beside the main one) into the cache, then made
//! a raw ext4 image with `mkfs.ext4 -d`. The kernel and the initramfs that initramfs-tools built
//! inside it are copied out, so a boot test boots the image the way its own bootloader would.
//! One unit is added: `vgpu-readbench.service`, which reads the disk with dd once systemd reached
//! `multi-user.target`, only when `vgpu.readbench` is on the kernel command line (the
//! `disk-bench` benchmark, [`crate::disk_bench`]).
//!
//! Building it runs the packages' maintainer scripts in a chroot, so it needs root
//! (`mmdebstrap --mode=root`); the result is cached like every other image.

use crate::kernel::Flavour;
use crate::{apt, tools, Cache, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the recipe changes.
const LAYOUT: u32 = 2;
/// The suite.
pub const SUITE: &str = "bookworm";
/// Where the packages come from: the main suite and its security updates (the pinned kernel
/// is a security release).
const MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// Packages on top of minbase.
const PACKAGES: &[&str] = &["systemd", "systemd-sysv", "initramfs-tools"];
/// Size of the ext4 image (sparse; minbase with systemd and a kernel takes about 350 MB).
const IMAGE_SIZE: &str = "1G";
/// The image's host name, which its login prompt shows (`boottest login:`).
pub const HOSTNAME: &str = "boottest";
/// Prefix of the console line the read benchmark unit prints: dd's summary of reading
/// [`READBENCH_MIB`] MiB of `/dev/vda` with `O_DIRECT`.
pub const READBENCH_MARK: &str = "VGPU-READBENCH";
/// How much of the disk the read benchmark reads, MiB.
pub const READBENCH_MIB: u64 = 256;
/// A unit that runs once systemd reached `multi-user.target`, only when `vgpu.readbench` is on
/// the kernel command line (`vgpu-image disk-bench` adds it; boot tests never see it).
fn readbench_unit() -> String {
    format!(
        "[Unit]\n\
         Description=vgpu-image disk read benchmark\n\
         ConditionKernelCommandLine=vgpu.readbench\n\
         After=multi-user.target\n\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/bin/sh -c 'dd if=/dev/vda of=/dev/null bs=1M count={READBENCH_MIB} \
         iflag=direct 2>&1 | tail -n 1 | sed \"s/^/{READBENCH_MARK} /\" >/dev/console'\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// A built Debian image.
#[derive(Debug, Clone)]
pub struct DebianImage {
    /// The raw ext4 image (the whole disk is the root file system: `root=/dev/vda`).
    pub image: PathBuf,
    /// Its kernel (`/boot/vmlinuz-*`).
    pub vmlinuz: PathBuf,
    /// Its initramfs (`/boot/initrd.img-*`, built by initramfs-tools; loads virtio_blk).
    pub initrd: PathBuf,
    /// The kernel package inside.
    pub kernel_package: String,
}

impl DebianImage {
    /// Builds the image in `cache` unless it is up to date; the caller holds the cache lock
    /// ([`Cache::lock`]).
    pub fn ensure_in(cache: &Cache) -> Result<DebianImage, Error> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(Error::Tool(
                "building the Debian 12 image runs mmdebstrap --mode=root: run as root".into(),
            ));
        }
        let kernel = match apt::resolve_package(Flavour::Cloud.pinned()) {
            Ok(p) => p,
            Err(_) => apt::resolve_kernel(Flavour::Cloud.metapackage())?,
        };
        let dir = cache.path("debian12");
        let image = dir.join("debian12.img");
        let vmlinuz = dir.join("vmlinuz");
        let initrd = dir.join("initrd.img");
        let key = format!(
            "layout {LAYOUT}; {SUITE}; mirrors {}; packages {}; kernel {}={}; size {IMAGE_SIZE}; \
             host {HOSTNAME}; readbench {}",
            MIRRORS.join(" | "),
            PACKAGES.join(","),
            kernel.name,
            kernel.version,
            readbench_unit()
        );
        cache.step("debian12-image", &key, &[&image, &vmlinuz, &initrd], || {
            build(&dir, &kernel.name, &image, &vmlinuz, &initrd)
        })?;
        Ok(DebianImage {
            image,
            vmlinuz,
            initrd,
            kernel_package: kernel.name,
        })
    }
}

fn build(
    dir: &Path,
    kernel: &str,
    image: &Path,
    vmlinuz: &Path,
    initrd: &Path,
) -> Result<(), Error> {
    let root = dir.join("root");
    tools::remove_all(&root)?;
    tools::mkdir(dir)?;
    let include = PACKAGES
        .iter()
        .copied()
        .chain([kernel])
        .collect::<Vec<_>>()
        .join(",");
    crate::progress(&format!(
        "mmdebstrap {SUITE} minbase + {include} (downloads about 150 MB, a minute or two)"
    ));
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(["--mode=root", "--variant=minbase", "--quiet"])
        .arg(format!("--include={include}"))
        .arg(format!(
            "--customize-hook=echo {HOSTNAME} > \"$1/etc/hostname\""
        ))
        .arg("--customize-hook=echo '/dev/vda / ext4 defaults 0 1' > \"$1/etc/fstab\"")
        .arg(SUITE)
        .arg(&root)
        .args(MIRRORS);
    let on_path = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mmdebstrap").exists()));
    if !on_path {
        return Err(Error::Tool(
            "mmdebstrap not found: install it (bash .ci/setup)".into(),
        ));
    }
    tools::run(&mut cmd)?;
    let units = root.join("etc/systemd/system");
    let wants = units.join("multi-user.target.wants");
    tools::mkdir(&wants)?;
    tools::write_atomic(
        &units.join("vgpu-readbench.service"),
        readbench_unit().as_bytes(),
    )?;
    let link = wants.join("vgpu-readbench.service");
    std::os::unix::fs::symlink("../vgpu-readbench.service", &link)
        .map_err(|e| Error::io(&link, e))?;
    let boot = root.join("boot");
    let find = |prefix: &str| -> Result<PathBuf, Error> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
            .map_err(|e| Error::io(&boot, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect();
        found.sort();
        found
            .pop()
            .ok_or_else(|| Error::Tool(format!("the Debian image has no /boot/{prefix}*")))
    };
    tools::copy(&find("vmlinuz-")?, vmlinuz)?;
    tools::copy(&find("initrd.img-")?, initrd)?;
    let partial = image.with_extension("partial");
    let _ = std::fs::remove_file(&partial);
    crate::progress(&format!("mkfs.ext4 -d {} ({IMAGE_SIZE})", root.display()));
    tools::run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "debian12", "-d"])
            .arg(&root)
            .arg(&partial)
            .arg(IMAGE_SIZE),
    )?;
    std::fs::rename(&partial, image).map_err(|e| Error::io(image, e))?;
    tools::remove_all(&root)
}
