//! Per-vCPU architectural setup: CPUID, registers for the 64-bit entry, boot MSRs, LAPIC.

pub mod cpuid;
pub mod msr;
pub mod regs;

/// Errors from configuring a vCPU.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// A KVM vCPU ioctl failed.
    #[error("{what} failed")]
    Kvm {
        /// The ioctl.
        what: &'static str,
        /// The errno.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM accepted fewer MSRs than given.
    #[error("KVM set {set} of {wanted} boot MSRs")]
    PartialMsrs {
        /// MSRs set.
        set: usize,
        /// MSRs given.
        wanted: usize,
    },
    /// Writing the GDT or page tables failed.
    #[error("cannot write boot tables to guest memory")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
    /// A fam-struct wrapper could not be built.
    #[error("cannot build {0} list")]
    Fam(&'static str),
}

/// Shorthand to wrap a KVM error with the name of the ioctl.
pub(crate) fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> CpuError {
    move |source| CpuError::Kvm { what, source }
}
