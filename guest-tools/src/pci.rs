//! PCI functions as the guest kernel enumerated them, read from sysfs.

use crate::report::{Bar, BarKind, PciFunction};
use std::path::{Path, PathBuf};

/// Where the kernel lists PCI functions.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// `IORESOURCE_IO` in the `resource` file's flags column.
const IORESOURCE_IO: u64 = 0x100;
/// `IORESOURCE_MEM`.
const IORESOURCE_MEM: u64 = 0x200;
/// `IORESOURCE_PREFETCH`.
const IORESOURCE_PREFETCH: u64 = 0x2000;
/// `IORESOURCE_MEM_64`.
const IORESOURCE_MEM_64: u64 = 0x0010_0000;
/// Number of standard BARs of a type-0 function (the `resource` file lists more lines after them).
const BAR_COUNT: usize = 6;

/// Error reading a PCI function from sysfs.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// A sysfs file could not be read.
    #[error("reading {path}: {error}")]
    Read {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
    /// A sysfs file held something other than what the kernel writes there.
    #[error("unexpected contents in {path}: {text:?}")]
    Format {
        /// File with the bad contents.
        path: PathBuf,
        /// What it held.
        text: String,
    },
}

/// Lists the PCI functions under `root` (normally [`SYSFS_PCI_DEVICES`]), sorted by address.
pub fn enumerate(root: &Path) -> Result<Vec<PciFunction>, PciError> {
    let entries = std::fs::read_dir(root).map_err(|error| PciError::Read {
        path: root.to_path_buf(),
        error,
    })?;
    let mut bdfs: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    bdfs.sort();
    bdfs.iter()
        .map(|bdf| read_function(&root.join(bdf), bdf))
        .collect()
}

/// Reads one function's identity and BARs from its sysfs directory.
pub fn read_function(dir: &Path, bdf: &str) -> Result<PciFunction, PciError> {
    let vendor = read_hex(&dir.join("vendor"))?;
    let device = read_hex(&dir.join("device"))?;
    let class = read_hex(&dir.join("class"))?;
    let resource_path = dir.join("resource");
    let resource = read(&resource_path)?;
    let bars = parse_resource(&resource).ok_or_else(|| PciError::Format {
        path: resource_path,
        text: resource.clone(),
    })?;
    let narrow = |v: u64, path: &str| {
        u16::try_from(v).map_err(|_| PciError::Format {
            path: dir.join(path),
            text: format!("{v:#x}"),
        })
    };
    Ok(PciFunction {
        bdf: bdf.to_string(),
        vendor: narrow(vendor, "vendor")?,
        device: narrow(device, "device")?,
        class: u32::try_from(class).map_err(|_| PciError::Format {
            path: dir.join("class"),
            text: format!("{class:#x}"),
        })?,
        bars,
    })
}

/// Parses a sysfs `resource` file (`start end flags` per line, in hex) into the assigned BARs.
/// Returns `None` when a line is malformed.
pub fn parse_resource(text: &str) -> Option<Vec<Bar>> {
    let mut bars = Vec::new();
    for (index, line) in text.lines().take(BAR_COUNT).enumerate() {
        let mut cols = line.split_whitespace().map(parse_hex_str);
        let (start, end, flags) = (cols.next()??, cols.next()??, cols.next()??);
        if start == 0 && end == 0 {
            continue;
        }
        let kind = if flags & IORESOURCE_IO != 0 {
            BarKind::Io
        } else if flags & IORESOURCE_MEM != 0 {
            if flags & IORESOURCE_MEM_64 != 0 {
                BarKind::Mem64
            } else {
                BarKind::Mem32
            }
        } else {
            continue;
        };
        bars.push(Bar {
            index: index as u8,
            start,
            size: end.checked_sub(start)?.checked_add(1)?,
            kind,
            prefetchable: flags & IORESOURCE_PREFETCH != 0,
        });
    }
    Some(bars)
}

fn read(path: &Path) -> Result<String, PciError> {
    std::fs::read_to_string(path).map_err(|error| PciError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn read_hex(path: &Path) -> Result<u64, PciError> {
    let text = read(path)?;
    parse_hex_str(text.trim()).ok_or_else(|| PciError::Format {
        path: path.to_path_buf(),
        text,
    })
}

fn parse_hex_str(s: &str) -> Option<u64> {
    u64::from_str_radix(s.strip_prefix("0x")?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESOURCE: &str = "\
0x00000000febf0000 0x00000000febf0fff 0x0000000000040200
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x000000000000c000 0x000000000000c03f 0x0000000000040101
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x0000008000000000 0x0000008003ffffff 0x000000000014220c
0x0000000000000000 0x0000000000000000 0x0000000000000000
0x00000000feb80000 0x00000000febbffff 0x0000000000046200
";

    #[test]
    fn resource_file_gives_assigned_bars_only() {
        let bars = parse_resource(RESOURCE).unwrap();
        assert_eq!(bars.len(), 3, "the ROM line (index 6) is not a BAR");
        assert_eq!(
            (bars[0].index, bars[0].size, bars[0].kind),
            (0, 0x1000, BarKind::Mem32)
        );
        assert_eq!(
            (bars[1].index, bars[1].start, bars[1].kind),
            (2, 0xc000, BarKind::Io)
        );
        assert_eq!(
            (bars[2].index, bars[2].size, bars[2].kind),
            (4, 64 << 20, BarKind::Mem64)
        );
        assert!(bars[2].prefetchable && !bars[0].prefetchable);
    }

    #[test]
    fn malformed_resource_is_rejected() {
        assert!(parse_resource("0x1 nonsense 0x200\n").is_none());
        assert!(
            parse_resource("0x10 0x1 0x200\n").is_none(),
            "end before start"
        );
    }

    #[test]
    fn enumerates_a_sysfs_tree() {
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("0000:00:00.0");
        std::fs::create_dir(&dev).unwrap();
        std::fs::write(dev.join("vendor"), "0x8086\n").unwrap();
        std::fs::write(dev.join("device"), "0x0d57\n").unwrap();
        std::fs::write(dev.join("class"), "0x060000\n").unwrap();
        std::fs::write(dev.join("resource"), RESOURCE).unwrap();
        let fns = enumerate(root.path()).unwrap();
        assert_eq!(fns.len(), 1);
        assert_eq!(
            (fns[0].vendor, fns[0].device, fns[0].class),
            (0x8086, 0x0d57, 0x060000)
        );
        assert_eq!(fns[0].bdf, "0000:00:00.0");

        std::fs::write(dev.join("vendor"), "0x123456\n").unwrap();
        assert!(matches!(
            enumerate(root.path()),
            Err(PciError::Format { .. })
        ));
    }
}
