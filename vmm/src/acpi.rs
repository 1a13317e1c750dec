//! ACPI tables: RSDP, XSDT, a hardware-reduced FADT, the DSDT and the MADT.
//!
//! Debian's cloud kernel finds secondary CPUs only through the MADT (it has no MP-table
//! parser), powers off through the FADT's sleep control register with the `_S5_` sleep type,
//! and binds its PCI root bridge driver to the DSDT's `PCI0` (PNP0A03), whose `_CRS` lists the
//! bus number, I/O and memory windows that BARs may use and whose `_PRT` routes each slot's INTx
//! pins to IOAPIC inputs ([`pci_intx_gsi`]).

use std::ops::Range;

use acpi_tables::aml;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::devices::serial::{COM1_IRQ, COM1_PORT, COM1_PORTS_LEN};
use crate::devices::shutdown::{
    PM_PORT, RESET_OFFSET, RESET_VALUE, SLEEP_CONTROL_OFFSET, SLEEP_STATUS_OFFSET, SLP_TYP_S5,
};
use crate::memory::layout;

const OEM_ID: [u8; 6] = *b"VGPUVM";
const OEM_TABLE_ID: [u8; 8] = *b"VGPUVMM ";
const OEM_REVISION: u32 = 1;

/// Errors from placing the tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables do not fit below 1 MiB.
    #[error("ACPI tables need {0} bytes, more than the BIOS area holds")]
    TooBig(u64),
    /// Writing to guest memory failed.
    #[error("cannot write ACPI tables")]
    GuestMemory(#[from] vm_memory::GuestMemoryError),
}

/// What the tables describe.
#[derive(Clone, Debug)]
pub struct AcpiConfig {
    /// Number of vCPUs (one LAPIC each, APIC id = index).
    pub vcpus: u8,
    /// 32-bit PCI memory window.
    pub pci_mmio32: Range<u64>,
    /// 64-bit PCI memory window.
    pub pci_mmio64: Range<u64>,
}

/// The serialized tables and where each goes.
#[derive(Clone, Debug)]
pub struct AcpiTables {
    /// `(guest address, bytes)` per table; the RSDP is first.
    pub tables: Vec<(u64, Vec<u8>)>,
}

impl AcpiTables {
    /// Address of the RSDP.
    pub fn rsdp_addr(&self) -> u64 {
        self.tables[0].0
    }

    /// Writes every table into guest memory.
    pub fn write(&self, mem: &GuestMemoryMmap) -> Result<(), AcpiError> {
        for (addr, bytes) in &self.tables {
            mem.write_slice(bytes, GuestAddress(*addr))?;
        }
        Ok(())
    }
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// First IOAPIC input used for PCI INTx (inputs 16..24 of the in-kernel IOAPIC, which no ISA
/// device uses).
pub const PCI_INTX_GSI_BASE: u32 = 16;
/// IOAPIC inputs PCI INTx is spread over.
pub const PCI_INTX_GSI_COUNT: u32 = 8;

/// The GSI that INTx pin `pin` (0 = INTA .. 3 = INTD) of bus-0 slot `slot` is wired to, as the
/// DSDT's `_PRT` tells the guest: level-triggered, active low (the guest programs the IOAPIC so;
/// KVM's IOAPIC takes the line's logical level, so the VMM asserts with level 1).
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u32 {
    PCI_INTX_GSI_BASE + (u32::from(slot) + u32::from(pin)) % PCI_INTX_GSI_COUNT
}

/// `_PRT`: every slot 1..32 and pin A..D, each to its GSI (Source 0: a global interrupt).
fn pci_routing_table() -> aml::PackageBuilder {
    let mut prt = aml::PackageBuilder::new();
    for slot in 1u8..32 {
        for pin in 0u8..4 {
            let address = u32::from(slot) << 16 | 0xffff;
            let gsi = pci_intx_gsi(slot, pin);
            prt.add_element(&aml::Package::new(vec![&address, &pin, &aml::ZERO, &gsi]));
        }
    }
    prt
}

/// The DSDT: `_S5_` and the PCI root bridge.
pub fn dsdt(cfg: &AcpiConfig) -> Vec<u8> {
    let mut dsdt = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let s5_type = u32::from(SLP_TYP_S5);
    aml::Name::new("_S5_".into(), &aml::Package::new(vec![&s5_type])).to_aml_bytes(&mut dsdt);

    let bus = aml::AddressSpace::new_bus_number(0u16, 0u16);
    let conf1 = aml::IO::new(0xcf8, 0xcf8, 1, 8);
    let io_low = aml::AddressSpace::new_io(0u16, 0xcf7u16, None);
    let io_high = aml::AddressSpace::new_io(0xd00u16, 0xffffu16, None);
    let mem32 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        cfg.pci_mmio32.start as u32,
        (cfg.pci_mmio32.end - 1) as u32,
        None,
    );
    let mem64 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::PreFetchable,
        true,
        cfg.pci_mmio64.start,
        cfg.pci_mmio64.end - 1,
        None,
    );
    let crs = aml::ResourceTemplate::new(vec![&bus, &conf1, &io_low, &io_high, &mem32, &mem64]);
    let hid = aml::EISAName::new("PNP0A03");
    let zero = 0u8;
    let prt = pci_routing_table();
    aml::Device::new(
        "_SB_.PCI0".into(),
        vec![
            &aml::Name::new("_HID".into(), &hid),
            &aml::Name::new("_ADR".into(), &zero),
            &aml::Name::new("_SEG".into(), &zero),
            &aml::Name::new("_UID".into(), &zero),
            &aml::Name::new("_BBN".into(), &zero),
            &aml::Name::new("_CRS".into(), &crs),
            &aml::Name::new("_PRT".into(), &prt),
        ],
    )
    .to_aml_bytes(&mut dsdt);

    // COM1. In hardware-reduced mode Linux has no legacy PIC and allocates no ISA IRQ
    // descriptors, so the 8250 driver can only use IRQ 4 once ACPI declares it here.
    let com1_io = aml::IO::new(COM1_PORT, COM1_PORT, 1, COM1_PORTS_LEN as u8);
    let com1_irq = aml::Interrupt::new(true, true, false, false, COM1_IRQ);
    let com1_crs = aml::ResourceTemplate::new(vec![&com1_io, &com1_irq]);
    let com1_hid = aml::EISAName::new("PNP0501");
    aml::Device::new(
        "_SB_.COM1".into(),
        vec![
            &aml::Name::new("_HID".into(), &com1_hid),
            &aml::Name::new("_UID".into(), &zero),
            &aml::Name::new("_CRS".into(), &com1_crs),
        ],
    )
    .to_aml_bytes(&mut dsdt);
    dsdt.as_slice().to_vec()
}

fn io_register(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT: hardware-reduced, with sleep control/status and reset registers.
pub fn fadt(dsdt_addr: u64) -> Vec<u8> {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .dsdt_64(dsdt_addr);
    fadt.sleep_control_reg = io_register(PM_PORT + SLEEP_CONTROL_OFFSET);
    fadt.sleep_status_reg = io_register(PM_PORT + SLEEP_STATUS_OFFSET);
    fadt.reset_reg = io_register(PM_PORT + RESET_OFFSET);
    fadt.reset_value = RESET_VALUE;
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"VGPUVMM ").into();
    to_bytes(&fadt.finalize())
}

/// The MADT: one enabled LAPIC per vCPU and the IOAPIC (GSI base 0).
pub fn madt(vcpus: u8) -> Vec<u8> {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(layout::LAPIC_START as u32),
    );
    for id in 0..vcpus {
        madt.add_structure(ProcessorLocalApic::new(id, id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, layout::IOAPIC_START as u32, 0));
    to_bytes(&madt)
}

/// Builds all tables, laid out from [`layout::ACPI_START`].
pub fn build(cfg: &AcpiConfig) -> Result<AcpiTables, AcpiError> {
    let rsdp_addr = layout::ACPI_START;
    let mut next = rsdp_addr + 64;
    let mut place = |len: usize| {
        let addr = next;
        next = (next + len as u64).next_multiple_of(16);
        addr
    };
    let dsdt = dsdt(cfg);
    let dsdt_addr = place(dsdt.len());
    let fadt = fadt(dsdt_addr);
    let fadt_addr = place(fadt.len());
    let madt = madt(cfg.vcpus);
    let madt_addr = place(madt.len());
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt_addr);
    xsdt.add_entry(madt_addr);
    let xsdt = to_bytes(&xsdt);
    let xsdt_addr = place(xsdt.len());
    if next > layout::ACPI_END {
        return Err(AcpiError::TooBig(next - layout::ACPI_START));
    }
    let rsdp = to_bytes(&Rsdp::new(OEM_ID, xsdt_addr));
    Ok(AcpiTables {
        tables: vec![
            (rsdp_addr, rsdp),
            (dsdt_addr, dsdt),
            (fadt_addr, fadt),
            (madt_addr, madt),
            (xsdt_addr, xsdt),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vcpus: u8) -> AcpiConfig {
        AcpiConfig {
            vcpus,
            pci_mmio32: 0xc000_0000..0xfec0_0000,
            pci_mmio64: 0x1_0000_0000..0x11_0000_0000,
        }
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b))
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
    }

    #[test]
    fn every_table_checksums_and_has_its_length() {
        let t = build(&cfg(4)).unwrap();
        let (_, rsdp) = &t.tables[0];
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(rsdp), 0);
        for (_, table) in &t.tables[1..] {
            assert_eq!(u32_at(table, 4) as usize, table.len());
            assert_eq!(sum(table), 0, "{:?}", std::str::from_utf8(&table[..4]));
        }
    }

    #[test]
    fn tables_link_up_and_do_not_overlap() {
        let t = build(&cfg(2)).unwrap();
        let find = |sig: &[u8]| {
            t.tables
                .iter()
                .find(|(_, b)| &b[..4] == sig)
                .unwrap()
                .clone()
        };
        let (xsdt_addr, xsdt) = find(b"XSDT");
        assert_eq!(u64_at(&t.tables[0].1, 24), xsdt_addr);
        let (fadt_addr, fadt) = find(b"FACP");
        let (madt_addr, _) = find(b"APIC");
        let (dsdt_addr, _) = find(b"DSDT");
        assert_eq!(u64_at(&xsdt, 36), fadt_addr);
        assert_eq!(u64_at(&xsdt, 44), madt_addr);
        // FADT: X_DSDT at 140, flags at 112 (HW_REDUCED | RESET_REG_SUP).
        assert_eq!(u64_at(&fadt, 140), dsdt_addr);
        assert_eq!(u32_at(&fadt, 112) & (1 << 20 | 1 << 10), 1 << 20 | 1 << 10);
        // Reset register (GAS at 116): I/O space, port 0x602, value at 128.
        assert_eq!(fadt[116], 1);
        assert_eq!(u64_at(&fadt, 120), 0x602);
        assert_eq!(fadt[128], RESET_VALUE);
        // Sleep control register GAS at 244.
        assert_eq!(u64_at(&fadt, 248), 0x600);
        let mut spans: Vec<_> = t
            .tables
            .iter()
            .map(|(a, b)| (*a, *a + b.len() as u64))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].1 <= w[1].0);
        }
        assert!(spans.last().unwrap().1 <= layout::ACPI_END);
    }

    #[test]
    fn madt_has_one_lapic_per_vcpu_and_an_ioapic() {
        let m = madt(3);
        assert_eq!(u32_at(&m, 36), layout::LAPIC_START as u32);
        let mut off = 44;
        let mut lapic_ids = vec![];
        let mut ioapics = 0;
        while off < m.len() {
            let (kind, len) = (m[off], m[off + 1] as usize);
            match kind {
                0 => {
                    assert_eq!(u32_at(&m, off + 4) & 1, 1);
                    lapic_ids.push(m[off + 3]);
                }
                1 => {
                    ioapics += 1;
                    assert_eq!(u32_at(&m, off + 4), layout::IOAPIC_START as u32);
                }
                _ => panic!("unexpected MADT entry {kind}"),
            }
            off += len;
        }
        assert_eq!(lapic_ids, vec![0, 1, 2]);
        assert_eq!(ioapics, 1);
    }

    #[test]
    fn dsdt_declares_s5_and_pci0() {
        let d = dsdt(&cfg(1));
        let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_S5_"));
        assert!(has(b"PCI0"));
        assert!(has(b"COM1"));
        // EISA id of PNP0501, and the extended IRQ descriptor for IRQ 4.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x05, 0x01]));
        assert!(has(&[0x89, 6, 0, 0x3, 1, 4, 0, 0, 0]));
        assert!(has(b"_CRS"));
        // EISA id of PNP0A03, as AML DWord.
        assert!(has(&[0x0c, 0x41, 0xd0, 0x0a, 0x03]));
    }

    #[test]
    fn prt_routes_every_slot_and_pin_to_a_pci_gsi() {
        let d = dsdt(&cfg(1));
        let has = |needle: &[u8]| d.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"_PRT"));
        // Slot 1 INTA: Package(4) { 0x0001FFFF, Zero, Zero, 17 }.
        let slot1_inta = [
            0x12, 0x0b, 0x04, 0x0c, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x0a, 17,
        ];
        assert!(has(&slot1_inta));
        assert_eq!(pci_intx_gsi(1, 0), 17);
        assert_eq!(pci_intx_gsi(7, 1), 16);
        for slot in 1..32 {
            for pin in 0..4 {
                let g = pci_intx_gsi(slot, pin);
                assert!((16..24).contains(&g));
            }
        }
        assert_ne!(COM1_IRQ, pci_intx_gsi(1, 0));
    }
}
