//! Registers, GDT and identity-mapped page tables for the Linux 64-bit entry point, plus FPU
//! and LAPIC (LINT0 = ExtINT, LINT1 = NMI) setup.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_regs, kvm_segment, kvm_sregs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::{kvm_err, CpuError};
use crate::memory::layout;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_MP: u64 = 1 << 1;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// GDT: null, 64-bit code, data, TSS.
const GDT: [u64; 4] = [
    gdt_entry(0, 0, 0),
    gdt_entry(0xa09b, 0, 0xfffff),
    gdt_entry(0xc093, 0, 0xfffff),
    gdt_entry(0x808b, 0, 0xfffff),
];
const CODE_SEL: usize = 1;
const DATA_SEL: usize = 2;
const TSS_SEL: usize = 3;

/// Encodes a GDT descriptor from access/flags (`0xF0FF` layout), base and limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// Decodes GDT entry `index` into the segment KVM wants.
pub fn segment_from_gdt(entry: u64, index: usize) -> kvm_segment {
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        // With 4 KiB granularity the limit counts pages.
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: (index * 8) as u16,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: u8::from((entry >> 47) & 1 == 0),
        padding: 0,
    }
}

/// Writes the GDT, an empty IDT and page tables identity-mapping the first 4 GiB with 2 MiB
/// pages, and returns the special registers for 64-bit mode using them.
pub fn boot_sregs(mem: &GuestMemoryMmap, mut sregs: kvm_sregs) -> Result<kvm_sregs, CpuError> {
    for (i, entry) in GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(layout::BOOT_GDT_START + 8 * i as u64))?;
    }
    mem.write_obj(0u64, GuestAddress(layout::BOOT_IDT_START))?;

    // PML4[0] -> PDPT; PDPT[0..4] -> four page directories of 512 2 MiB pages each.
    mem.write_obj(layout::PDPTE_START | 0x3, GuestAddress(layout::PML4_START))?;
    for dir in 0..4u64 {
        let pd = layout::PDE_START + dir * 0x1000;
        mem.write_obj(pd | 0x3, GuestAddress(layout::PDPTE_START + dir * 8))?;
        for i in 0..512u64 {
            let addr = ((dir << 9) | i) << 21;
            mem.write_obj(addr | 0x83, GuestAddress(pd + i * 8))?;
        }
    }

    let code = segment_from_gdt(GDT[CODE_SEL], CODE_SEL);
    let data = segment_from_gdt(GDT[DATA_SEL], DATA_SEL);
    let tss = segment_from_gdt(GDT[TSS_SEL], TSS_SEL);
    sregs.gdt.base = layout::BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&GDT) - 1) as u16;
    sregs.idt.base = layout::BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr3 = layout::PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.cr0 |= X86_CR0_PE | X86_CR0_MP | X86_CR0_ET | X86_CR0_PG;
    sregs.efer |= EFER_LME | EFER_LMA;
    Ok(sregs)
}

/// General registers for the 64-bit Linux entry: RIP at the entry point, RSI at the zero page.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: layout::BOOT_STACK_POINTER,
        rbp: layout::BOOT_STACK_POINTER,
        rsi: layout::ZERO_PAGE_START,
        ..Default::default()
    }
}

/// Puts the BSP into 64-bit mode at `entry`.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, mem: &GuestMemoryMmap, entry: u64) -> Result<(), CpuError> {
    let sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    vcpu.set_sregs(&boot_sregs(mem, sregs)?)
        .map_err(kvm_err("KVM_SET_SREGS"))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(kvm_err("KVM_SET_REGS"))
}

/// Initial x87/SSE control words.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))
}

const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_NMI: u32 = 0x4;
const APIC_MODE_EXTINT: u32 = 0x7;

fn lapic_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| state.regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

fn set_lapic_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, b) in value.to_le_bytes().into_iter().enumerate() {
        state.regs[offset + i] = b as _;
    }
}

/// Sets LINT0 to ExtINT (the PIC's output) and LINT1 to NMI, as a PC BIOS does.
pub fn setup_lint(vcpu: &VcpuFd) -> Result<(), CpuError> {
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    let lvt0 = lapic_reg(&lapic, APIC_LVT0);
    set_lapic_reg(
        &mut lapic,
        APIC_LVT0,
        (lvt0 & !0x700) | (APIC_MODE_EXTINT << 8),
    );
    let lvt1 = lapic_reg(&lapic, APIC_LVT1);
    set_lapic_reg(
        &mut lapic,
        APIC_LVT1,
        (lvt1 & !0x700) | (APIC_MODE_NMI << 8),
    );
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn gdt_entries_decode_to_long_mode_segments() {
        let cs = segment_from_gdt(GDT[CODE_SEL], CODE_SEL);
        assert_eq!(
            (cs.l, cs.db, cs.present, cs.s, cs.type_, cs.g),
            (1, 0, 1, 1, 0xb, 1)
        );
        assert_eq!(cs.limit, 0xffff_ffff);
        assert_eq!(cs.selector, 8);
        let ds = segment_from_gdt(GDT[DATA_SEL], DATA_SEL);
        assert_eq!((ds.l, ds.db, ds.type_), (0, 1, 3));
        let null = segment_from_gdt(GDT[0], 0);
        assert_eq!(null.unusable, 1);
    }

    #[test]
    fn page_tables_identity_map_4gib() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let sregs = boot_sregs(&mem, kvm_sregs::default()).unwrap();
        assert_eq!(sregs.cr3, layout::PML4_START);
        assert_ne!(sregs.efer & EFER_LMA, 0);
        let pml4: u64 = mem.read_obj(GuestAddress(layout::PML4_START)).unwrap();
        assert_eq!(pml4 & !0xfff, layout::PDPTE_START);
        // Walk 0xdead_beef: PDPT index 3, PD index 0x1f5.
        let va: u64 = 0xdead_beef;
        let pdpte: u64 = mem
            .read_obj(GuestAddress(layout::PDPTE_START + ((va >> 30) & 0x1ff) * 8))
            .unwrap();
        let pde: u64 = mem
            .read_obj(GuestAddress((pdpte & !0xfff) + ((va >> 21) & 0x1ff) * 8))
            .unwrap();
        assert_eq!(pde & 0x83, 0x83);
        assert_eq!((pde & !0x1f_ffff) | (va & 0x1f_ffff), va);
        assert!(mem.last_addr().0 >= layout::PDE_START + 4 * 0x1000);
    }

    #[test]
    fn boot_regs_point_at_entry_and_zero_page() {
        let r = boot_regs(0x100_0000);
        assert_eq!(
            (r.rip, r.rsi, r.rflags),
            (0x100_0000, layout::ZERO_PAGE_START, 2)
        );
    }
}
