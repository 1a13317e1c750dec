//! Guest physical memory: the address map and the RAM backing it.

use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The guest-physical address map. Everything the VMM places in the guest lives here.
pub mod layout {
    /// GDT used to enter 64-bit mode.
    pub const BOOT_GDT_START: u64 = 0x500;
    /// Empty IDT loaded at entry.
    pub const BOOT_IDT_START: u64 = 0x520;
    /// Initial stack pointer of the boot vCPU.
    pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
    /// The Linux zero page (`struct boot_params`).
    pub const ZERO_PAGE_START: u64 = 0x7000;
    /// PML4 of the identity-mapped boot page tables.
    pub const PML4_START: u64 = 0x9000;
    /// PDPT of the boot page tables.
    pub const PDPTE_START: u64 = 0xa000;
    /// Page directory (2 MiB pages) of the boot page tables.
    pub const PDE_START: u64 = 0xb000;
    /// Kernel command line.
    pub const CMDLINE_START: u64 = 0x20000;
    /// Maximum kernel command line length, including the NUL.
    pub const CMDLINE_MAX_SIZE: usize = 2048;
    /// End of the low (conventional) RAM reported in e820.
    pub const EBDA_START: u64 = 0x9fc00;
    /// ACPI tables (RSDP first, where the kernel's legacy scan finds it).
    pub const ACPI_START: u64 = 0xe0000;
    /// End of the ACPI / BIOS area.
    pub const ACPI_END: u64 = 0x100000;
    /// Where the kernel's protected-mode code is loaded.
    pub const HIMEM_START: u64 = 0x100000;
    /// Start of the 32-bit MMIO hole (PCI memory BARs below 4 GiB, IOAPIC, LAPIC).
    pub const MMIO_HOLE_START: u64 = 0xc000_0000;
    /// End (exclusive) of the 32-bit PCI memory window; the IOAPIC follows.
    pub const PCI_MMIO32_END: u64 = 0xfec0_0000;
    /// In-kernel IOAPIC.
    pub const IOAPIC_START: u64 = 0xfec0_0000;
    /// In-kernel LAPIC.
    pub const LAPIC_START: u64 = 0xfee0_0000;
    /// KVM's TSS (three pages, must sit outside RAM and below 4 GiB).
    pub const KVM_TSS_ADDRESS: u64 = 0xfffb_d000;
    /// Start of RAM above 4 GiB.
    pub const HIGH_RAM_START: u64 = 0x1_0000_0000;
    /// Size of the 64-bit PCI memory window placed after the high RAM.
    pub const PCI_MMIO64_SIZE: u64 = 64 << 30;
}

/// A RAM range of the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRange {
    /// First guest-physical address.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl RamRange {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Errors from building guest memory.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The requested size is unusable.
    #[error("guest memory of {0} MiB is out of range (16 MiB .. 1 TiB)")]
    BadSize(u64),
    /// mmap of the RAM failed.
    #[error("cannot allocate guest RAM")]
    Mmap(#[from] vm_memory::mmap::FromRangesError),
}

/// The RAM ranges for `mib` MiB of guest memory: below the 32-bit hole, then above 4 GiB.
pub fn ram_ranges(mib: u64) -> Result<Vec<RamRange>, MemoryError> {
    if !(16..=(1 << 20)).contains(&mib) {
        return Err(MemoryError::BadSize(mib));
    }
    let bytes = mib << 20;
    let low = bytes.min(layout::MMIO_HOLE_START);
    let mut ranges = vec![RamRange { start: 0, len: low }];
    if bytes > low {
        ranges.push(RamRange {
            start: layout::HIGH_RAM_START,
            len: bytes - low,
        });
    }
    Ok(ranges)
}

/// Start of the 64-bit PCI memory window: the first 1 GiB boundary after RAM, and at least 4 GiB.
pub fn pci_mmio64_start(ranges: &[RamRange]) -> u64 {
    let end = ranges
        .iter()
        .map(RamRange::end)
        .max()
        .unwrap_or(0)
        .max(layout::HIGH_RAM_START);
    end.next_multiple_of(1 << 30)
}

/// Allocates anonymous guest RAM for `ranges`, asking for transparent huge pages (fewer
/// nested-paging faults and TLB misses; the kernel falls back to small pages by itself).
pub fn create_guest_memory(ranges: &[RamRange]) -> Result<GuestMemoryMmap, MemoryError> {
    let regions: Vec<(GuestAddress, usize)> = ranges
        .iter()
        .map(|r| (GuestAddress(r.start), r.len as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&regions)?;
    for region in mem.iter() {
        // SAFETY: the range is exactly one live mapping owned by `mem`; MADV_HUGEPAGE only
        // changes how the kernel backs it and cannot invalidate it.
        let ret = unsafe {
            libc::madvise(
                region.as_ptr().cast(),
                region.len() as usize,
                libc::MADV_HUGEPAGE,
            )
        };
        if ret != 0 {
            tracing::debug!(
                "madvise(MADV_HUGEPAGE) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_guest_has_one_low_range() {
        let r = ram_ranges(256).unwrap();
        assert_eq!(
            r,
            vec![RamRange {
                start: 0,
                len: 256 << 20
            }]
        );
        assert_eq!(pci_mmio64_start(&r), 1 << 32);
    }

    #[test]
    fn big_guest_is_split_around_the_hole() {
        let r = ram_ranges(4096).unwrap();
        assert_eq!(
            r[0],
            RamRange {
                start: 0,
                len: 0xc000_0000
            }
        );
        assert_eq!(
            r[1],
            RamRange {
                start: 1 << 32,
                len: 1 << 30
            }
        );
        assert_eq!(pci_mmio64_start(&r), 5 << 30);
    }

    #[test]
    fn absurd_sizes_are_rejected() {
        assert!(ram_ranges(0).is_err());
        assert!(ram_ranges(u64::MAX >> 20).is_err());
    }
}
