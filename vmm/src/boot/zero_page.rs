//! The Linux zero page (`struct boot_params`) for the 64-bit boot protocol.

use linux_loader::bootparam::{boot_e820_entry, boot_params};

use super::e820::E820Entry;
use super::{BootError, InitrdPlacement, LoadedKernel};

/// "HdrS": marks a valid setup header.
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
/// The 0xAA55 boot flag.
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// Loader type "undefined" (0xff): we are not a registered boot loader.
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// Alignment the kernel is built for (Debian: 16 MiB); only used for ELF boot.
const KERNEL_MIN_ALIGNMENT_BYTES: u32 = 0x100_0000;

/// Everything that goes into the zero page.
#[derive(Clone, Debug)]
pub struct ZeroPageConfig<'a> {
    /// The loaded kernel (for its setup header).
    pub kernel: &'a LoadedKernel,
    /// Guest address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Length of the command line, without the NUL.
    pub cmdline_len: u32,
    /// The initrd, if any.
    pub initrd: Option<InitrdPlacement>,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// Where the ACPI RSDP is (0 for none).
    pub rsdp_addr: u64,
}

/// Builds `boot_params`: the bzImage's own setup header (or a minimal one for ELF), the loader
/// fields, command line, initrd and e820 map.
pub fn build_zero_page(cfg: &ZeroPageConfig<'_>) -> Result<boot_params, BootError> {
    let mut params = boot_params::default();
    if let Some(hdr) = cfg.kernel.setup_header {
        params.hdr = hdr;
    } else {
        params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
        params.hdr.header = KERNEL_HDR_MAGIC;
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT_BYTES;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.cmd_line_ptr = u32::try_from(cfg.cmdline_addr).unwrap_or(0);
    params.hdr.cmdline_size = cfg.cmdline_len;
    if let Some(initrd) = cfg.initrd {
        // Placed below 4 GiB by `place_initrd` (low RAM ends at the 32-bit hole).
        params.hdr.ramdisk_image = initrd.addr as u32;
        params.hdr.ramdisk_size = initrd.size as u32;
        params.ext_ramdisk_image = (initrd.addr >> 32) as u32;
        params.ext_ramdisk_size = (initrd.size >> 32) as u32;
    }
    params.acpi_rsdp_addr = cfg.rsdp_addr;
    if cfg.e820.len() > params.e820_table.len() {
        return Err(BootError::TooManyE820Entries(cfg.e820.len()));
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(cfg.e820) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    params.e820_entries = cfg.e820.len() as u8;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::e820::e820_map;
    use crate::boot::KernelFormat;
    use crate::memory::ram_ranges;
    use std::mem::{offset_of, size_of};

    #[test]
    fn zero_page_layout_matches_the_boot_protocol() {
        assert_eq!(size_of::<boot_params>(), 4096);
        assert_eq!(offset_of!(boot_params, hdr), 0x1f1);
        assert_eq!(offset_of!(boot_params, acpi_rsdp_addr), 0x70);
        assert_eq!(offset_of!(boot_params, e820_entries), 0x1e8);
        assert_eq!(offset_of!(boot_params, e820_table), 0x2d0);
    }

    #[test]
    fn elf_zero_page_has_header_cmdline_initrd_and_e820() {
        let kernel = LoadedKernel {
            format: KernelFormat::Elf,
            entry: 0x100_0000,
            setup_header: None,
        };
        let e820 = e820_map(&ram_ranges(256).unwrap());
        let initrd = InitrdPlacement {
            addr: 0xf000000,
            size: 0x12345,
        };
        let p = build_zero_page(&ZeroPageConfig {
            kernel: &kernel,
            cmdline_addr: 0x20000,
            cmdline_len: 17,
            initrd: Some(initrd),
            e820: &e820,
            rsdp_addr: 0xe0000,
        })
        .unwrap();
        let hdr = p.hdr;
        assert_eq!({ hdr.boot_flag }, 0xaa55);
        assert_eq!({ hdr.header }, KERNEL_HDR_MAGIC);
        assert_eq!({ hdr.type_of_loader }, 0xff);
        assert_eq!({ hdr.cmd_line_ptr }, 0x20000);
        assert_eq!({ hdr.cmdline_size }, 17);
        assert_eq!({ hdr.ramdisk_image }, 0xf000000);
        assert_eq!({ hdr.ramdisk_size }, 0x12345);
        assert_eq!({ p.acpi_rsdp_addr }, 0xe0000);
        assert_eq!(p.e820_entries as usize, e820.len());
        for (slot, entry) in p.e820_table.iter().zip(&e820) {
            assert_eq!(
                ({ slot.addr }, { slot.size }, { slot.r#type }),
                (entry.addr, entry.size, entry.kind)
            );
        }
    }

    #[test]
    fn bzimage_header_is_kept() {
        let hdr = linux_loader::bootparam::setup_header {
            version: 0x20f,
            initrd_addr_max: 0x7fff_ffff,
            header: KERNEL_HDR_MAGIC,
            ..Default::default()
        };
        let kernel = LoadedKernel {
            format: KernelFormat::BzImage,
            entry: 0x100200,
            setup_header: Some(hdr),
        };
        let p = build_zero_page(&ZeroPageConfig {
            kernel: &kernel,
            cmdline_addr: 0x20000,
            cmdline_len: 1,
            initrd: None,
            e820: &[],
            rsdp_addr: 0,
        })
        .unwrap();
        let h = p.hdr;
        assert_eq!({ h.version }, 0x20f);
        assert_eq!({ h.initrd_addr_max }, 0x7fff_ffff);
        assert_eq!({ h.type_of_loader }, 0xff);
        assert_eq!({ h.ramdisk_image }, 0);
    }
}
