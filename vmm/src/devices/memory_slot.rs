//! KVM memory slots for host-memory BARs: the pages of a device's mmap-able region mapped into
//! the guest at the BAR's address, so guest accesses to it never exit.

use std::ops::Range;
use std::sync::Arc;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

/// Adds and removes KVM memory slots (a trait so the slot logic is testable without KVM).
pub trait MemorySlots: Send {
    /// Maps `size` bytes of host memory at `host` into the guest at `gpa` as slot `slot`.
    ///
    /// # Safety
    /// `host..host + size` must stay mapped until [`MemorySlots::clear_slot`] removes the slot
    /// or the VM is destroyed.
    unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> std::io::Result<()>;
    /// Removes slot `slot`.
    fn clear_slot(&self, slot: u32) -> std::io::Result<()>;
}

impl<T: MemorySlots + Sync + ?Sized> MemorySlots for Arc<T> {
    unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> std::io::Result<()> {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { (**self).set_slot(slot, gpa, size, host) }
    }

    fn clear_slot(&self, slot: u32) -> std::io::Result<()> {
        (**self).clear_slot(slot)
    }
}

/// [`MemorySlots`] of a KVM VM.
#[derive(Debug)]
pub struct KvmSlots(pub Arc<VmFd>);

impl MemorySlots for KvmSlots {
    unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> std::io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
        };
        // SAFETY: the caller keeps the host range mapped while the slot exists.
        unsafe { self.0.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn clear_slot(&self, slot: u32) -> std::io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            ..Default::default()
        };
        // SAFETY: a zero-sized region deletes the slot; no host memory is named.
        unsafe { self.0.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// The KVM slot that backs a host-memory BAR (the vGPU's window): follows the BAR and memory
/// decoding, and is never left behind at an old address. A BAR programmed outside the PCI
/// windows gets no slot, so it cannot shadow RAM or the APICs.
pub struct BarSlot {
    slots: Box<dyn MemorySlots>,
    slot: u32,
    host: u64,
    size: u64,
    allowed: Vec<Range<u64>>,
    mapped: Option<u64>,
}

impl std::fmt::Debug for BarSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarSlot")
            .field("slot", &self.slot)
            .field("size", &self.size)
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

impl BarSlot {
    /// A slot for `size` bytes at host address `host`, placed only inside `allowed` ranges.
    ///
    /// # Safety
    /// `host..host + size` must stay mapped for as long as this `BarSlot` lives (its `Drop`
    /// removes the slot).
    pub unsafe fn new(
        slots: Box<dyn MemorySlots>,
        slot: u32,
        host: u64,
        size: u64,
        allowed: Vec<Range<u64>>,
    ) -> Self {
        Self {
            slots,
            slot,
            host,
            size,
            allowed,
            mapped: None,
        }
    }

    /// Where the BAR is mapped now.
    pub fn mapped_at(&self) -> Option<u64> {
        self.mapped
    }

    /// Maps the BAR at `wanted` (or nowhere): removes the old slot first, then adds the new
    /// one if the whole BAR lies in an allowed range.
    pub fn place(&mut self, wanted: Option<u64>) {
        let wanted = wanted.filter(|&gpa| {
            gpa.checked_add(self.size)
                .is_some_and(|end| self.allowed.iter().any(|r| r.start <= gpa && end <= r.end))
        });
        if wanted == self.mapped {
            return;
        }
        if self.mapped.take().is_some() {
            if let Err(e) = self.slots.clear_slot(self.slot) {
                tracing::error!(slot = self.slot, "cannot remove the BAR slot: {e}");
            }
        }
        if let Some(gpa) = wanted {
            // SAFETY: `new`'s contract keeps the host range mapped while `self` lives, and
            // `Drop` removes the slot.
            match unsafe { self.slots.set_slot(self.slot, gpa, self.size, self.host) } {
                Ok(()) => {
                    tracing::debug!(gpa, size = self.size, "BAR mapped");
                    self.mapped = Some(gpa);
                }
                Err(e) => tracing::warn!(gpa, "BAR not mapped: {e}"),
            }
        }
    }
}

impl Drop for BarSlot {
    fn drop(&mut self) {
        self.place(None);
    }
}
