//! Guest images for the vGPU project, built from Debian packages into a cache directory.
//!
//! * the **test guest** ([`TestGuest`]): Debian's cloud kernel as an ELF vmlinux and an initramfs
//!   with busybox, the static `vgpu-guest` agent as `/init` and the PCI/virtio/uio modules;
//! * the **nested harness** ([`Harness`]): Debian's generic kernel and an initramfs with the
//!   `kvm-amd` modules, the static `vgpu-vmm`, the test guest and an init script that runs one
//!   scenario and powers off; optionally QEMU as a baseline VMM ([`HarnessVariant::WithQemu`]);
//! * **QEMU 11** ([`Qemu`]): Debian forky's `qemu-system-x86` unpacked into the cache (without
//!   root): the harness's outer emulator, and a second VMM with a vfio-user client that boots
//!   the test guest directly under TCG ([`qemu_vm`]) against a `vgpud` on this host
//!   ([`vgpud`]);
//! * **boot tests** ([`boot_test`]): a user's disk image booted under `vgpu-vmm` in the harness,
//!   judged from its console (`vgpu-image boot-test`), with Debian's cloud kernel and a stock
//!   initramfs ([`stock_boot`]) for images that bring no kernel, and a Debian 12 minbase image
//!   with systemd and its own kernel ([`debian_image`]) as the real-distribution case, also
//!   booted under `vgpu-vmm` and QEMU microvm side by side ([`disk_bench`]);
//! * the **runner** ([`runner`]): boots the harness under QEMU TCG (which gives its kernel a real
//!   KVM with nested SVM, see the architecture notes) and collects the result lines.
//!
//! Every step is stamped with the inputs it was built from ([`cache`]), so a warm cache costs a
//! few seconds.

pub mod apt;
pub mod bench;
pub mod boot_test;
pub mod cache;
pub mod cpio;
pub mod debian_image;
pub mod disk_bench;
pub mod guest;
pub mod harness;
pub mod image_kernel;
pub mod initramfs;
pub mod kernel;
pub mod qemu;
pub mod qemu_vm;
pub mod runner;
pub mod static_bins;
pub mod stock_boot;
pub mod tools;
pub mod vgpud;

pub use cache::Cache;
pub use guest::TestGuest;
pub use harness::{Harness, HarnessVariant};
pub use qemu::Qemu;
pub use runner::{Flow, GuestRun, HarnessEvent, HarnessOutcome, HarnessRun};

use std::path::{Path, PathBuf};

/// Error building or running images.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file operation failed.
    #[error("{path}: {error}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
    /// An external tool failed or gave unexpected output.
    #[error("{0}")]
    Tool(String),
    /// A Debian package could not be resolved or fetched.
    #[error("apt: {0}")]
    Apt(String),
    /// A kernel package did not hold what a kernel package holds.
    #[error("kernel {path}: {reason}")]
    Kernel {
        /// The file or directory that was wrong.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Booting the harness failed before it produced results.
    #[error("harness run: {0}")]
    Run(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// The workspace this crate was built in (the images embed its static binaries).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the images crate lives inside the workspace")
        .to_path_buf()
}

/// Prints a progress line for long work on stderr.
pub fn progress(msg: &str) {
    eprintln!("[vgpu-image] {msg}");
}
