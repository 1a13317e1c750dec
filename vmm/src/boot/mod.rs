//! Loading a Linux kernel and the data the 64-bit boot protocol hands it.

pub mod e820;
pub mod loader;
pub mod zero_page;

pub use loader::{load_initrd, load_kernel, InitrdPlacement, KernelFormat, LoadedKernel};
pub use zero_page::build_zero_page;

/// Errors from preparing the guest for boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The kernel file could not be opened or read.
    #[error("cannot read kernel {path}")]
    KernelFile {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is neither an ELF vmlinux nor a bzImage.
    #[error("kernel {0} is neither an ELF vmlinux nor a bzImage")]
    UnknownKernelFormat(String),
    /// linux-loader refused the kernel.
    #[error("cannot load kernel")]
    Load(#[from] linux_loader::loader::Error),
    /// The initrd could not be read.
    #[error("cannot read initrd {path}")]
    InitrdFile {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The initrd does not fit below the kernel's limit.
    #[error("initrd of {size} bytes does not fit in guest RAM below {limit:#x}")]
    InitrdTooBig {
        /// Initrd size.
        size: u64,
        /// Highest usable address.
        limit: u64,
    },
    /// The command line is too long or has bad characters.
    #[error("bad kernel command line")]
    Cmdline(#[from] linux_loader::cmdline::Error),
    /// Writing boot data into guest memory failed.
    #[error("cannot write boot data to guest memory")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// Too many e820 entries for the zero page.
    #[error("too many e820 entries ({0})")]
    TooManyE820Entries(usize),
}
