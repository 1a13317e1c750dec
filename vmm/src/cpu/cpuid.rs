//! CPUID normalisation: what KVM supports, adjusted to describe this VM's vCPU.
//!
//! Starting from `KVM_GET_SUPPORTED_CPUID`, each vCPU gets its own APIC id and a topology of
//! `vcpu_count` single-thread cores in one package; the hypervisor bit is set; features a guest
//! must not use here (nested virtualisation, MONITOR/MWAIT, debug store, PMU) are cleared; and
//! the XSAVE leaf is cut down to x87/SSE/AVX/PKRU with sizes recomputed, and the CPUID feature
//! bits of every dropped state component are cleared with it.
//!
//! Under nested virtualisation on QEMU TCG (the host's own hypervisor leaf says "TCGTCGTCGTCG"),
//! the host KVM never sees the guest's XSETBV: it reports the XSAVE size for XCR0 = x87 (the
//! guest warns "XSAVE consistency problem") and reloads XCR0 = x87 on every VM entry, so XRSTOR
//! of SSE state faults and signal return kills processes. There XSAVE is hidden altogether
//! ([`CpuidConfig::hide_xsave`]) and the guest uses FXSAVE.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX bits.
mod leaf1_ecx {
    pub const DTES64: u32 = 1 << 2;
    pub const MONITOR: u32 = 1 << 3;
    pub const DS_CPL: u32 = 1 << 4;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const EST: u32 = 1 << 7;
    pub const TM2: u32 = 1 << 8;
    pub const CX16: u32 = 1 << 13;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const PDCM: u32 = 1 << 15;
    pub const HYPERVISOR: u32 = 1 << 31;
}
/// Leaf 1 EDX: hyper-threading (the logical-processor count in EBX is valid).
const LEAF1_EDX_HTT: u32 = 1 << 28;
/// Leaf 6 EAX: always-running APIC timer, the only thermal/power bit kept.
const LEAF6_EAX_ARAT: u32 = 1 << 2;
/// Leaf 0x8000_0001 ECX: SVM.
const EXT_LEAF1_ECX_SVM: u32 = 1 << 2;
/// XCR0 features kept: x87, SSE, AVX, PKRU.
const XCR0_KEPT: u32 = 0b10_0000_0111;
const XCR0_YMM: u32 = 1 << 2;
const XCR0_PKRU: u32 = 1 << 9;
/// Leaf 1 ECX features that need YMM state: FMA, AVX, F16C.
const LEAF1_ECX_AVX_FAMILY: u32 = (1 << 12) | (1 << 28) | (1 << 29);
/// Leaf 7.0 EBX: AVX2 and the AVX-512 subsets.
const LEAF7_EBX_AVX2: u32 = 1 << 5;
const LEAF7_EBX_AVX512: u32 =
    (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
/// Leaf 7.0 ECX: AVX-512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ.
const LEAF7_ECX_AVX512: u32 = (1 << 1) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14);
/// Leaf 7.0 ECX: PKU and OSPKE (need PKRU state).
const LEAF7_ECX_PKU: u32 = (1 << 3) | (1 << 4);
/// Leaf 7.0 ECX: VAES and VPCLMULQDQ (VEX.256 forms need YMM state).
const LEAF7_ECX_VEX256: u32 = (1 << 9) | (1 << 10);
/// Leaf 7.0 EDX: AVX-512 4VNNIW, 4FMAPS, VP2INTERSECT, FP16, and AMX (BF16, TILE, INT8).
const LEAF7_EDX_WIDE: u32 =
    (1 << 2) | (1 << 3) | (1 << 8) | (1 << 22) | (1 << 23) | (1 << 24) | (1 << 25);
/// Leaf 7.1 EAX: AVX-VNNI and AVX512_BF16.
const LEAF7_1_EAX_AVX: u32 = (1 << 4) | (1 << 5);
/// Size of the legacy XSAVE area plus the XSAVE header.
const XSAVE_LEGACY_AND_HEADER: u32 = 512 + 64;
/// Leaf 0xD subleaf 1 EAX: XSAVEOPT, the only XSAVE extension kept (no compacted format).
const XSAVE_EXT_KEPT: u32 = 1;

/// What varies between vCPUs and hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidConfig {
    /// This vCPU's index, used as its APIC id.
    pub vcpu_id: u8,
    /// Number of vCPUs in the VM.
    pub vcpu_count: u8,
    /// Clear CMPXCHG16B: PVM's instruction emulator cannot execute it.
    pub clear_cx16: bool,
    /// Hide XSAVE and every feature that needs it (nested on QEMU TCG, see the module doc).
    pub hide_xsave: bool,
}

/// True when the host itself runs under QEMU TCG (its hypervisor leaf says "TCGTCGTCGTCG").
pub fn host_is_tcg() -> bool {
    let leaf = std::arch::x86_64::__cpuid(0x4000_0000);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf.edx.to_le_bytes());
    &vendor == b"TCGTCGTCGTCG"
}

/// Bits needed to hold `n` distinct ids (`ceil(log2(n))`).
fn id_bits(n: u8) -> u32 {
    u32::from(n.max(1)).next_power_of_two().trailing_zeros()
}

/// Normalises `entries` (as returned by `KVM_GET_SUPPORTED_CPUID`) for one vCPU.
pub fn normalize(entries: &mut [kvm_cpuid_entry2], cfg: CpuidConfig) {
    let apic_id = u32::from(cfg.vcpu_id);
    let count = u32::from(cfg.vcpu_count.max(1));
    let offered = entries
        .iter()
        .find(|e| e.function == 0xd && e.index == 0)
        .map_or(0, |e| e.eax);
    let xcr0 = if cfg.hide_xsave {
        0
    } else {
        offered & XCR0_KEPT
    };
    let xsave_size = xsave_size(entries, xcr0);
    let no_ymm = xcr0 & XCR0_YMM == 0;
    for e in entries.iter_mut() {
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0x0000_ffff) | (apic_id << 24) | (count << 16);
                e.ecx &= !(leaf1_ecx::DTES64
                    | leaf1_ecx::MONITOR
                    | leaf1_ecx::DS_CPL
                    | leaf1_ecx::VMX
                    | leaf1_ecx::SMX
                    | leaf1_ecx::EST
                    | leaf1_ecx::TM2
                    | leaf1_ecx::PDCM);
                if cfg.clear_cx16 {
                    e.ecx &= !leaf1_ecx::CX16;
                }
                if no_ymm {
                    e.ecx &= !LEAF1_ECX_AVX_FAMILY;
                }
                if cfg.hide_xsave {
                    e.ecx &= !(leaf1_ecx::XSAVE | leaf1_ecx::OSXSAVE);
                }
                e.ecx |= leaf1_ecx::HYPERVISOR;
                if count > 1 {
                    e.edx |= LEAF1_EDX_HTT;
                } else {
                    e.edx &= !LEAF1_EDX_HTT;
                }
            }
            0x4 => {
                // Cores per package - 1, in EAX[31:26]; one thread shares each cache level
                // below the package.
                e.eax = (e.eax & 0x03ff_ffff) | ((count - 1).min(63) << 26);
            }
            0x6 => {
                e.eax &= LEAF6_EAX_ARAT;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xa => {
                // No virtual PMU.
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xb | 0x1f => {
                // Level 0: SMT (1 thread per core); level 1: core (count cores per package).
                let (shift, logical, kind) = match e.index {
                    0 => (0, 1, 1),
                    1 => (id_bits(cfg.vcpu_count), count, 2),
                    _ => (0, 0, 0),
                };
                e.eax = shift;
                e.ebx = logical;
                e.ecx = (kind << 8) | (e.index & 0xff);
                e.edx = apic_id;
            }
            0x7 if e.index == 0 => {
                e.ebx &= !LEAF7_EBX_AVX512;
                e.ecx &= !LEAF7_ECX_AVX512;
                e.edx &= !LEAF7_EDX_WIDE;
                if no_ymm {
                    e.ebx &= !LEAF7_EBX_AVX2;
                    e.ecx &= !LEAF7_ECX_VEX256;
                }
                if xcr0 & XCR0_PKRU == 0 {
                    e.ecx &= !LEAF7_ECX_PKU;
                }
            }
            0x7 if e.index == 1 => e.eax &= !LEAF7_1_EAX_AVX,
            0xd if cfg.hide_xsave => {
                e.eax = 0;
                e.ebx = 0;
                e.ecx = 0;
                e.edx = 0;
            }
            0xd => normalize_xsave(e, xcr0, xsave_size),
            0x8000_0001 => e.ecx &= !EXT_LEAF1_ECX_SVM,
            0x8000_0008 => {
                // AMD: number of cores - 1 and the APIC-id bits they use.
                e.ecx = (e.ecx & !0xf0ff) | (id_bits(cfg.vcpu_count) << 12) | (count - 1);
            }
            0x8000_001e => {
                e.eax = apic_id;
                e.ebx = apic_id & 0xff;
                e.ecx = 0;
            }
            _ => {}
        }
    }
}

/// The XSAVE area size for the `xcr0` features, from the subleaves' size/offset pairs.
fn xsave_size(entries: &[kvm_cpuid_entry2], xcr0: u32) -> u32 {
    entries
        .iter()
        .filter(|e| e.function == 0xd && (2..32).contains(&e.index))
        .filter(|e| xcr0 & (1 << e.index) != 0 && e.eax != 0)
        .map(|e| e.ebx + e.eax)
        .fold(XSAVE_LEGACY_AND_HEADER, u32::max)
}

fn normalize_xsave(e: &mut kvm_cpuid_entry2, xcr0: u32, size: u32) {
    match e.index {
        0 => {
            e.eax = xcr0;
            e.edx = 0;
            e.ebx = size;
            e.ecx = size;
        }
        1 => {
            e.eax &= XSAVE_EXT_KEPT;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
        i if i < 32 && xcr0 & (1 << i) != 0 => {}
        _ => {
            e.eax = 0;
            e.ebx = 0;
            e.ecx = 0;
            e.edx = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax: regs[0],
            ebx: regs[1],
            ecx: regs[2],
            edx: regs[3],
            ..Default::default()
        }
    }

    fn find(entries: &[kvm_cpuid_entry2], function: u32, index: u32) -> kvm_cpuid_entry2 {
        *entries
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    fn sample() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(
                0x1,
                0,
                [0x806f8, 0x0000_0800, 0xfffa_3223 & !(1 << 31), 0x178b_fbff],
            ),
            entry(0x6, 0, [0x7, 0x1, 0x1, 0]),
            entry(0xa, 0, [0x0704_1302, 0, 0, 0x603]),
            entry(0xb, 0, [1, 2, 0x100, 7]),
            entry(0xb, 1, [4, 16, 0x201, 7]),
            entry(0x7, 0, [0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]),
            entry(0x7, 1, [0x30, 0, 0, 0]),
            // x87|SSE|AVX|AVX512 (bits 5-7) + PKRU, sizes as on a real host.
            entry(0xd, 0, [0x2e7, 0xa88, 0xa88, 0]),
            entry(0xd, 1, [0xf, 0x988, 0, 0]),
            entry(0xd, 2, [256, 576, 0, 0]),
            entry(0xd, 5, [64, 832, 0, 0]),
            entry(0xd, 9, [8, 2688, 0, 0]),
            entry(0x8000_0001, 0, [0, 0, 0x75c2_37ff, 0x2fd3_fbff]),
            entry(0x8000_001e, 0, [9, 0x100, 0x3, 0]),
        ]
    }

    #[test]
    fn apic_id_topology_and_hypervisor_bit() {
        let mut e = sample();
        normalize(
            &mut e,
            CpuidConfig {
                vcpu_id: 3,
                vcpu_count: 4,
                clear_cx16: false,
                hide_xsave: false,
            },
        );
        let l1 = find(&e, 1, 0);
        assert_eq!(l1.ebx >> 24, 3);
        assert_eq!((l1.ebx >> 16) & 0xff, 4);
        assert_ne!(l1.ecx & leaf1_ecx::HYPERVISOR, 0);
        assert_eq!(
            l1.ecx & (leaf1_ecx::VMX | leaf1_ecx::MONITOR | leaf1_ecx::PDCM),
            0
        );
        assert_ne!(l1.ecx & leaf1_ecx::CX16, 0);
        assert_ne!(l1.edx & LEAF1_EDX_HTT, 0);
        let smt = find(&e, 0xb, 0);
        let core = find(&e, 0xb, 1);
        assert_eq!((smt.eax, smt.ebx, smt.ecx, smt.edx), (0, 1, 0x100, 3));
        assert_eq!((core.eax, core.ebx, core.ecx, core.edx), (2, 4, 0x201, 3));
        assert_eq!(find(&e, 0x8000_001e, 0).eax, 3);
        assert_eq!(find(&e, 0x8000_0001, 0).ecx & EXT_LEAF1_ECX_SVM, 0);
        assert_eq!(find(&e, 0xa, 0).eax, 0);
        assert_eq!(find(&e, 0x6, 0).eax, LEAF6_EAX_ARAT);
    }

    #[test]
    fn single_vcpu_has_no_htt_and_cx16_can_be_cleared() {
        let mut e = sample();
        normalize(
            &mut e,
            CpuidConfig {
                vcpu_id: 0,
                vcpu_count: 1,
                clear_cx16: true,
                hide_xsave: false,
            },
        );
        let l1 = find(&e, 1, 0);
        assert_eq!(l1.ebx >> 16, 1);
        assert_eq!(l1.edx & LEAF1_EDX_HTT, 0);
        assert_eq!(l1.ecx & leaf1_ecx::CX16, 0);
        assert_eq!(find(&e, 0xb, 1).eax, 0);
    }

    fn config(legacy: bool) -> CpuidConfig {
        CpuidConfig {
            vcpu_id: 0,
            vcpu_count: 1,
            clear_cx16: false,
            hide_xsave: legacy,
        }
    }

    #[test]
    fn xsave_is_cut_to_avx_and_pkru_with_consistent_sizes() {
        let mut e = sample();
        normalize(&mut e, config(false));
        let s0 = find(&e, 0xd, 0);
        assert_eq!(s0.eax, 0x207);
        assert_eq!((s0.ebx, s0.ecx), (2696, 2696));
        let s1 = find(&e, 0xd, 1);
        assert_eq!((s1.eax, s1.ebx), (1, 0));
        assert_eq!(find(&e, 0xd, 2).eax, 256);
        assert_eq!(find(&e, 0xd, 5).eax, 0);
        assert_eq!(find(&e, 0xd, 9).eax, 8);
        // AVX stays, AVX-512 goes; PKU stays with its state.
        assert_ne!(find(&e, 1, 0).ecx & (1 << 28), 0);
        let l7 = find(&e, 7, 0);
        assert_ne!(l7.ebx & LEAF7_EBX_AVX2, 0);
        assert_eq!(l7.ebx & LEAF7_EBX_AVX512, 0);
        assert_ne!(l7.ecx & LEAF7_ECX_PKU, 0);
        assert_eq!(find(&e, 7, 1).eax, 0);
    }

    #[test]
    fn hidden_xsave_drops_avx_and_pku_features() {
        let mut e = sample();
        normalize(&mut e, config(true));
        let s0 = find(&e, 0xd, 0);
        assert_eq!((s0.eax, s0.ebx, s0.ecx), (0, 0, 0));
        assert_eq!(find(&e, 0xd, 2).eax, 0);
        let l1 = find(&e, 1, 0);
        assert_eq!(l1.ecx & LEAF1_ECX_AVX_FAMILY, 0);
        assert_eq!(l1.ecx & (leaf1_ecx::XSAVE | leaf1_ecx::OSXSAVE), 0);
        let l7 = find(&e, 7, 0);
        assert_eq!(l7.ebx & (LEAF7_EBX_AVX2 | LEAF7_EBX_AVX512), 0);
        assert_eq!(l7.ecx & (LEAF7_ECX_PKU | LEAF7_ECX_VEX256), 0);
    }

    #[test]
    fn xsave_without_avx_is_legacy_size() {
        let mut e = vec![entry(0xd, 0, [0x3, 0x240, 0x240, 0])];
        normalize(
            &mut e,
            CpuidConfig {
                vcpu_id: 0,
                vcpu_count: 1,
                clear_cx16: false,
                hide_xsave: false,
            },
        );
        assert_eq!(find(&e, 0xd, 0).ebx, 576);
    }
}
