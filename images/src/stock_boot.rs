//! The stock kernel and initramfs `vgpu-image boot-test` boots a root file system image with
//! when the user brings no kernel: Debian's cloud kernel (the test guest's) and a small
//! initramfs with busybox, the virtio disk modules and an init (`stock-boot/init.sh`) that
//! mounts `root=` and switches to the image's own init.

use crate::guest::GUEST_MODULES;
use crate::initramfs::{self, Compression};
use crate::kernel::{Flavour, Kernel};
use crate::{cache, Cache, Error};
use std::path::PathBuf;

/// Bumped when the image layout changes.
const LAYOUT: u32 = 1;

/// The stock initramfs's init script.
pub const INIT_SCRIPT: &str = include_str!("../stock-boot/init.sh");

/// The virtio disk driver on top of the test guest's virtio PCI modules.
const DISK_MODULES: &[&str] = &["virtio_blk"];

/// Command line the stock kernel gets unless the user gives one: serial console, the disk as
/// a writable root (the VMM keeps the guest's writes in memory), a triple-fault reboot and no
/// reboot loop on panic, so a crashed guest ends the VMM.
pub const STOCK_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 root=/dev/vda rw";

/// A built stock kernel and initramfs.
#[derive(Debug, Clone)]
pub struct StockBoot {
    /// The cloud kernel package.
    pub kernel: Kernel,
    /// ELF vmlinux to boot.
    pub vmlinux: PathBuf,
    /// The gzip-compressed initramfs.
    pub initrd: PathBuf,
}

impl StockBoot {
    /// Builds (or finds up to date) the stock initramfs in `cache`; the caller holds the
    /// cache lock ([`Cache::lock`]).
    pub fn ensure_in(cache: &Cache) -> Result<StockBoot, Error> {
        let kernel = Kernel::ensure(cache, Flavour::Cloud)?;
        let busybox = initramfs::busybox_path()?;
        let modules: Vec<&str> = GUEST_MODULES.iter().chain(DISK_MODULES).copied().collect();
        let key = format!(
            "layout {LAYOUT}; {}; busybox {}; init {}; modules {}",
            kernel.key,
            cache::fingerprint(&busybox)?,
            cache::fingerprint_str(INIT_SCRIPT),
            modules.join(",")
        );
        let dir = cache.path("stock-boot");
        let initrd = dir.join("initrd.cpio.gz");
        cache.step("stock-boot-initramfs", &key, &[&initrd], || {
            let root = dir.join("root");
            initramfs::new_staging(&root)?;
            initramfs::install_busybox(&root)?;
            crate::harness::write_file(&root.join("init"), INIT_SCRIPT.as_bytes(), 0o755)?;
            initramfs::install_modules(&kernel, &modules, &root)?;
            initramfs::pack(&root, &initrd, Compression::Gzip)
        })?;
        Ok(StockBoot {
            vmlinux: kernel.vmlinux.clone(),
            initrd,
            kernel,
        })
    }
}
