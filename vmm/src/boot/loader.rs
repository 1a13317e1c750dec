//! Kernel and initrd loading: ELF vmlinux or bzImage, detected from the file's magic.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use linux_loader::bootparam::setup_header;
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::Elf;
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::BootError;
use crate::memory::layout;

/// Offset of the 64-bit entry point from the start of a bzImage's protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Offset of the "HdrS" magic in a bzImage.
const BZIMAGE_HDRS_OFFSET: u64 = 0x202;

/// The kind of kernel image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelFormat {
    /// An uncompressed ELF `vmlinux`.
    Elf,
    /// A bzImage (`vmlinuz`).
    BzImage,
}

/// Where a kernel was loaded and how to enter it.
#[derive(Clone, Copy, Debug)]
pub struct LoadedKernel {
    /// The detected format.
    pub format: KernelFormat,
    /// 64-bit entry point (guest-physical).
    pub entry: u64,
    /// The bzImage's setup header, to be copied into the zero page.
    pub setup_header: Option<setup_header>,
}

/// Where an initrd was placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InitrdPlacement {
    /// Guest-physical address.
    pub addr: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Reads the magic of `file` to tell ELF from bzImage.
pub fn detect_format<F: Read + Seek>(file: &mut F) -> std::io::Result<Option<KernelFormat>> {
    let mut elf = [0u8; 4];
    file.seek(SeekFrom::Start(0))?;
    if file.read_exact(&mut elf).is_ok() && elf == *b"\x7fELF" {
        return Ok(Some(KernelFormat::Elf));
    }
    let mut hdrs = [0u8; 4];
    file.seek(SeekFrom::Start(BZIMAGE_HDRS_OFFSET))?;
    if file.read_exact(&mut hdrs).is_ok() && hdrs == *b"HdrS" {
        return Ok(Some(KernelFormat::BzImage));
    }
    Ok(None)
}

/// Loads the kernel at `path` into guest memory.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let io_err = |source| BootError::KernelFile {
        path: path.display().to_string(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let format = detect_format(&mut file)
        .map_err(io_err)?
        .ok_or_else(|| BootError::UnknownKernelFormat(path.display().to_string()))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let himem = Some(GuestAddress(layout::HIMEM_START));
    match format {
        KernelFormat::Elf => {
            let result = Elf::load(mem, None, &mut file, himem)?;
            Ok(LoadedKernel {
                format,
                entry: result.kernel_load.0,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let result = BzImage::load(mem, None, &mut file, himem)?;
            Ok(LoadedKernel {
                format,
                entry: result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
                setup_header: result.setup_header,
            })
        }
    }
}

/// Chooses the initrd address: page-aligned, as high as possible in low RAM below `limit`
/// (inclusive, the kernel's `initrd_addr_max`), and above `kernel_end`.
pub fn place_initrd(
    size: u64,
    low_ram_end: u64,
    limit: u64,
    kernel_end: u64,
) -> Result<InitrdPlacement, BootError> {
    let top = low_ram_end.min(limit.saturating_add(1));
    let too_big = BootError::InitrdTooBig { size, limit: top };
    let addr = top.checked_sub(size).ok_or(too_big)? & !0xfff;
    if addr < kernel_end {
        return Err(BootError::InitrdTooBig { size, limit: top });
    }
    Ok(InitrdPlacement { addr, size })
}

/// Reads the initrd at `path` and writes it at the place [`place_initrd`] picks.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    low_ram_end: u64,
    limit: u64,
) -> Result<InitrdPlacement, BootError> {
    let data = std::fs::read(path).map_err(|source| BootError::InitrdFile {
        path: path.display().to_string(),
        source,
    })?;
    // The kernel image itself sits from 1 MiB; keep the initrd clear of the first 64 MiB,
    // which covers the decompressed Debian kernels' init_size.
    let placement = place_initrd(data.len() as u64, low_ram_end, limit, 64 << 20)?;
    mem.write_slice(&data, GuestAddress(placement.addr))?;
    Ok(placement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn detects_elf_and_bzimage() {
        let mut elf = vec![0u8; 0x300];
        elf[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(
            detect_format(&mut Cursor::new(elf)).unwrap(),
            Some(KernelFormat::Elf)
        );
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(
            detect_format(&mut Cursor::new(bz)).unwrap(),
            Some(KernelFormat::BzImage)
        );
        assert_eq!(
            detect_format(&mut Cursor::new(vec![0u8; 16])).unwrap(),
            None
        );
    }

    #[test]
    fn initrd_goes_high_and_page_aligned() {
        let p = place_initrd(0x1234, 256 << 20, u64::MAX, 64 << 20).unwrap();
        assert_eq!(p.addr % 4096, 0);
        assert!(p.addr + p.size <= 256 << 20);
        assert!(p.addr + 4096 > (256 << 20) - 0x1234);
    }

    #[test]
    fn initrd_respects_limit_and_kernel() {
        let p = place_initrd(4096, 1 << 30, 0x37ff_ffff, 64 << 20).unwrap();
        assert_eq!(p.addr, 0x3800_0000 - 4096);
        assert!(place_initrd(200 << 20, 256 << 20, u64::MAX, 64 << 20).is_err());
        assert!(place_initrd(u64::MAX, 256 << 20, u64::MAX, 0).is_err());
    }
}
