//! The BIOS e820 memory map the guest kernel reads from the zero page.

use crate::memory::{layout, RamRange};

/// e820 type: usable RAM.
pub const E820_RAM: u32 = 1;
/// e820 type: reserved.
pub const E820_RESERVED: u32 = 2;

/// One e820 entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// The e820 map for the given RAM: conventional memory below the EBDA, the ACPI/BIOS area
/// reserved, RAM from 1 MiB, the high RAM, and the 32-bit hole from the IOAPIC up marked
/// reserved so that the kernel never places anything there.
pub fn e820_map(ram: &[RamRange]) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            size: layout::EBDA_START,
            kind: E820_RAM,
        },
        E820Entry {
            addr: layout::ACPI_START,
            size: layout::ACPI_END - layout::ACPI_START,
            kind: E820_RESERVED,
        },
    ];
    for r in ram {
        let start = r.start.max(layout::HIMEM_START);
        if r.end() > start {
            map.push(E820Entry {
                addr: start,
                size: r.end() - start,
                kind: E820_RAM,
            });
        }
    }
    map.push(E820Entry {
        addr: layout::IOAPIC_START,
        size: layout::HIGH_RAM_START - layout::IOAPIC_START,
        kind: E820_RESERVED,
    });
    map.sort_by_key(|e| e.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ram_ranges;

    fn assert_sorted_and_disjoint(map: &[E820Entry]) {
        for pair in map.windows(2) {
            assert!(pair[0].addr + pair[0].size <= pair[1].addr, "{pair:?}");
        }
    }

    #[test]
    fn small_guest() {
        let map = e820_map(&ram_ranges(256).unwrap());
        assert_sorted_and_disjoint(&map);
        assert_eq!(
            map[0],
            E820Entry {
                addr: 0,
                size: 0x9fc00,
                kind: E820_RAM
            }
        );
        assert_eq!(map[1].kind, E820_RESERVED);
        assert_eq!(
            map[2],
            E820Entry {
                addr: 0x100000,
                size: (256 << 20) - 0x100000,
                kind: E820_RAM
            }
        );
        let ram: u64 = map
            .iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum();
        assert_eq!(ram, (256 << 20) - 0x100000 + 0x9fc00);
    }

    #[test]
    fn large_guest_has_high_ram_and_no_ram_in_the_hole() {
        let map = e820_map(&ram_ranges(4096).unwrap());
        assert_sorted_and_disjoint(&map);
        for e in map.iter().filter(|e| e.kind == E820_RAM) {
            let end = e.addr + e.size;
            assert!(end <= layout::MMIO_HOLE_START || e.addr >= layout::HIGH_RAM_START);
        }
        assert_eq!(
            *map.last().unwrap(),
            E820Entry {
                addr: 1 << 32,
                size: 1 << 30,
                kind: E820_RAM
            }
        );
    }
}
