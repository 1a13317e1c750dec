//! The nested-KVM harness: Debian's generic kernel and an initramfs that loads `kvm-amd`, holds
//! `vgpu-vmm` and the test guest, and runs one scenario (see `harness/init.sh`).
//!
//! The QEMU baseline of the boot benchmark needs `qemu-system-x86_64` with its shared libraries
//! and microvm firmware (about 50 MB); that lives in a separate layer appended to the base image
//! only for [`HarnessVariant::WithQemu`], so the boot test does not unpack it.
//! [`HarnessVariant::WithVfioUserQemu`] carries QEMU 11.1 from the forky tree instead (its
//! `vfio-user-pci` attaches vgpud's instances), for a QEMU guest beside `vgpu-vmm` guests.

use crate::guest::{TestGuest, GUEST_CMDLINE};
use crate::initramfs::{self, Compression};
use crate::kernel::{Flavour, Kernel};
use crate::qemu::Qemu;
use crate::static_bins::StaticBins;
use crate::{cache, tools, Cache, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the image layout changes.
const LAYOUT: u32 = 1;

/// The harness init script.
pub const INIT_SCRIPT: &str = include_str!("../harness/init.sh");

/// Modules the harness loads (dependencies come along): KVM, and the virtio disk driver the
/// boot-test scenario reads the user's image through.
pub const HARNESS_MODULES: &[&str] = &["kvm_amd", "virtio_pci", "virtio_blk"];

/// Words `vgpu-vmm` adds to the guest command line (the scenario is appended after them).
pub const VMM_GUEST_CMDLINE: &str = "";

/// The QEMU baseline's firmware and option ROMs for `-M microvm` with `-kernel`.
const QEMU_FIRMWARE: &[&str] = &[
    "bios-microvm.bin",
    "qboot.rom",
    "pvh.bin",
    "linuxboot.bin",
    "linuxboot_dma.bin",
    "multiboot_dma.bin",
    "kvmvapic.bin",
];
const QEMU_BINARY: &str = "/usr/bin/qemu-system-x86_64";

/// Which harness image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarnessVariant {
    /// kvm-amd, vgpu-vmm and the test guest.
    Vmm,
    /// Also QEMU, for the boot benchmark's baseline.
    WithQemu,
    /// Also QEMU 11.1 from forky (the harness's own outer emulator), whose `vfio-user-pci`
    /// attaches vgpud's instances: a QEMU guest beside `vgpu-vmm` guests on one vgpud.
    WithVfioUserQemu,
}

/// A built harness.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The harness (L1) kernel package.
    pub kernel: Kernel,
    /// The L1 kernel to boot (ELF vmlinux).
    pub vmlinux: PathBuf,
    /// The L1 initramfs of the chosen variant.
    pub initrd: PathBuf,
    /// Which variant `initrd` is.
    pub variant: HarnessVariant,
    /// The test guest inside it.
    pub guest: TestGuest,
    /// The static binaries inside it.
    pub bins: StaticBins,
    /// The outer emulator (L0): QEMU 11.1 rather than Debian 12's 7.2. Under 7.2 the whole
    /// harness kernel froze now and then (its own shell loop stopped) while a nested guest
    /// took interrupts; 7.2's TCG is known to miss an interrupt that becomes deliverable
    /// right after `sti` when the translation block goes on (reported to QEMU in 2023), the
    /// suspected cause.
    pub outer: Qemu,
}

impl Harness {
    /// Builds everything the harness needs in the default cache (see [`Cache::from_env`]).
    pub fn ensure(variant: HarnessVariant) -> Result<Harness, Error> {
        let cache = Cache::from_env()?;
        Self::ensure_in(&cache, variant)
    }

    /// Builds the harness (and the test guest and static binaries) in `cache`.
    pub fn ensure_in(cache: &Cache, variant: HarnessVariant) -> Result<Harness, Error> {
        let _lock = cache.lock()?;
        let bins = StaticBins::build(cache)?;
        let guest = TestGuest::ensure_in(cache, &bins)?;
        let kernel = Kernel::ensure(cache, Flavour::Generic)?;
        let outer = Qemu::ensure_locked(cache)?;
        let busybox = initramfs::busybox_path()?;
        let key = format!(
            "layout {LAYOUT}; {}; {}; guest {}; busybox {}; init {}; cmdline {VMM_GUEST_CMDLINE}; \
             modules {}",
            kernel.key,
            bins.key,
            guest.key,
            cache::fingerprint(&busybox)?,
            cache::fingerprint_str(INIT_SCRIPT),
            HARNESS_MODULES.join(","),
        );
        let dir = cache.path("harness");
        let base = dir.join("harness.cpio");
        cache.step("harness-initramfs", &key, &[&base], || {
            build_base(&dir.join("root"), &base, &kernel, &bins, &guest)
        })?;
        let initrd = match variant {
            HarnessVariant::Vmm => base,
            HarnessVariant::WithQemu => {
                let layer = dir.join("qemu-layer.cpio.gz");
                let files = qemu_files()?;
                let mut layer_key = format!("layout {LAYOUT}");
                for f in &files {
                    layer_key.push_str(&format!("; {} {}", f.display(), cache::fingerprint(f)?));
                }
                cache.step("harness-qemu-layer", &layer_key, &[&layer], || {
                    build_qemu_layer(&dir.join("qemu-root"), &layer, &files)
                })?;
                let combined = dir.join("harness-qemu.cpio");
                let combined_key = format!("{key}; {layer_key}");
                cache.step("harness-with-qemu", &combined_key, &[&combined], || {
                    initramfs::concat(&[&base, &layer], &combined)
                })?;
                combined
            }
            HarnessVariant::WithVfioUserQemu => {
                let layer = dir.join("qemu11-layer.cpio.gz");
                let files = outer.runtime_files()?;
                let mut layer_key = format!("layout {LAYOUT}; qemu {}", outer.key());
                for (_, to) in &files {
                    layer_key.push_str(&format!("; {}", to.display()));
                }
                cache.step("harness-qemu11-layer", &layer_key, &[&layer], || {
                    build_layer(&dir.join("qemu11-root"), &layer, &files)
                })?;
                let combined = dir.join("harness-qemu11.cpio");
                let combined_key = format!("{key}; {layer_key}");
                cache.step("harness-with-qemu11", &combined_key, &[&combined], || {
                    initramfs::concat(&[&base, &layer], &combined)
                })?;
                combined
            }
        };
        Ok(Harness {
            vmlinux: kernel.vmlinux.clone(),
            kernel,
            initrd,
            variant,
            guest,
            bins,
            outer,
        })
    }
}

fn build_base(
    root: &Path,
    out: &Path,
    kernel: &Kernel,
    bins: &StaticBins,
    guest: &TestGuest,
) -> Result<(), Error> {
    initramfs::new_staging(root)?;
    initramfs::install_busybox(root)?;
    write_file(&root.join("init"), INIT_SCRIPT.as_bytes(), 0o755)?;
    tools::copy(&bins.vmm, &root.join("bin/vgpu-vmm"))?;
    tools::copy(&bins.vgpud, &root.join("bin/vgpud"))?;
    tools::copy(&bins.vgpuctl, &root.join("bin/vgpuctl"))?;
    tools::copy(&bins.guest, &root.join("bin/vgpu-guest"))?;
    tools::copy(&guest.vmlinux, &root.join("guest/vmlinux"))?;
    tools::copy(&guest.initrd, &root.join("guest/initrd.cpio.gz"))?;
    let vmm_cmdline = join_words(&[GUEST_CMDLINE, VMM_GUEST_CMDLINE, "vgpu.scenario=probe"]);
    let qemu_cmdline = join_words(&[GUEST_CMDLINE, "vgpu.scenario=probe"]);
    tools::mkdir(&root.join("etc/vgpu"))?;
    write_file(
        &root.join("etc/vgpu/vmm-cmdline"),
        vmm_cmdline.as_bytes(),
        0o644,
    )?;
    write_file(
        &root.join("etc/vgpu/qemu-cmdline"),
        qemu_cmdline.as_bytes(),
        0o644,
    )?;
    initramfs::install_modules(kernel, HARNESS_MODULES, root)?;
    initramfs::pack(root, out, Compression::None)
}

fn join_words(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split_whitespace())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        tools::mkdir(parent)?;
    }
    std::fs::write(path, data).map_err(|e| Error::io(path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path, e))
}

/// QEMU, the shared libraries `ldd` names for it, and its microvm firmware.
fn qemu_files() -> Result<Vec<PathBuf>, Error> {
    let qemu = Path::new(QEMU_BINARY);
    if !qemu.exists() {
        return Err(Error::Tool(format!(
            "{QEMU_BINARY} not found: install qemu-system-x86 (bash .ci/setup)"
        )));
    }
    let out = tools::run(Command::new("ldd").arg(qemu))?;
    let mut files = vec![qemu.to_path_buf()];
    files.extend(tools::ldd_paths(&String::from_utf8_lossy(&out.stdout)));
    for fw in QEMU_FIRMWARE {
        let p = Path::new("/usr/share/qemu").join(fw);
        if p.exists() {
            files.push(p);
        }
    }
    Ok(files)
}

fn build_qemu_layer(root: &Path, out: &Path, files: &[PathBuf]) -> Result<(), Error> {
    // Each file lands at the path it has on this host.
    let pairs: Vec<(PathBuf, PathBuf)> = files
        .iter()
        .map(|f| {
            (
                f.clone(),
                f.strip_prefix("/").expect("absolute paths").to_path_buf(),
            )
        })
        .collect();
    build_layer(root, out, &pairs)
}

/// A gzip'd cpio layer holding each `(source, path in the image)`; copies follow symlinks, so
/// every file lands as a regular file.
fn build_layer(root: &Path, out: &Path, files: &[(PathBuf, PathBuf)]) -> Result<(), Error> {
    tools::remove_all(root)?;
    for (from, to) in files {
        tools::copy(from, &root.join(to))?;
    }
    tools::mkdir(&root.join("dev"))?;
    initramfs::pack(root, out, Compression::Gzip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_words_are_joined_with_single_spaces() {
        assert_eq!(join_words(&["a  b", "", " c"]), "a b c");
    }
}
