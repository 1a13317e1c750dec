//! The test guest: Debian's cloud kernel and an initramfs whose init is the `vgpu-guest` agent.

use crate::initramfs::{self, Compression};
use crate::kernel::{Flavour, Kernel};
use crate::static_bins::StaticBins;
use crate::{cache, tools, Cache, Error};
use std::path::PathBuf;

/// Bumped when the image layout changes.
const LAYOUT: u32 = 2;

/// Modules the test guest carries (their dependencies come along): the virtio PCI transport and
/// the userspace PCI driver the vGPU driver binds through.
pub const GUEST_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "uio",
    "uio_pci_generic",
];

/// Kernel command line every VMM gives the test guest, before VMM-specific additions and the
/// scenario: serial console, triple-fault reboot (which VMMs see as a shutdown exit), no reboot
/// loop on panic, and a quiet boot (serial output dominates VM exits).
pub const GUEST_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

/// A built test guest.
#[derive(Debug, Clone)]
pub struct TestGuest {
    /// The cloud kernel.
    pub kernel: Kernel,
    /// ELF vmlinux to boot (uncompressed: decompression is slow under emulation).
    pub vmlinux: PathBuf,
    /// The gzip-compressed initramfs.
    pub initrd: PathBuf,
    /// Cache key of the whole guest.
    pub key: String,
}

impl TestGuest {
    /// Builds the test guest in the default cache (see [`Cache::from_env`]).
    pub fn ensure() -> Result<TestGuest, Error> {
        let cache = Cache::from_env()?;
        let _lock = cache.lock()?;
        let bins = StaticBins::build(&cache)?;
        Self::ensure_in(&cache, &bins)
    }

    /// Builds the test guest in `cache` with the given agent binary; the caller holds the
    /// cache lock ([`Cache::lock`]).
    pub fn ensure_in(cache: &Cache, bins: &StaticBins) -> Result<TestGuest, Error> {
        let kernel = Kernel::ensure(cache, Flavour::Cloud)?;
        let busybox = initramfs::busybox_path()?;
        let key = format!(
            "layout {LAYOUT}; {}; guest {}; busybox {}; modules {}",
            kernel.key,
            cache::fingerprint(&bins.guest)?,
            cache::fingerprint(&busybox)?,
            GUEST_MODULES.join(",")
        );
        let dir = cache.path("guest");
        let initrd = dir.join("initrd.cpio.gz");
        cache.step("test-guest-initramfs", &key, &[&initrd], || {
            let root = dir.join("root");
            initramfs::new_staging(&root)?;
            initramfs::install_busybox(&root)?;
            tools::copy(&bins.guest, &root.join("init"))?;
            // `vgpu-smi` is the agent binary under another name (it dispatches on argv[0]).
            let smi = root.join("bin/vgpu-smi");
            std::os::unix::fs::symlink("/init", &smi).map_err(|e| Error::io(&smi, e))?;
            let copied = initramfs::install_modules(&kernel, GUEST_MODULES, &root)?;
            crate::progress(&format!("test guest modules: {}", copied.len()));
            initramfs::pack(&root, &initrd, Compression::Gzip)
        })?;
        Ok(TestGuest {
            vmlinux: kernel.vmlinux.clone(),
            initrd,
            key: cache::fingerprint_str(&key),
            kernel,
        })
    }
}
