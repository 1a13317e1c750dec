//! Debian kernel packages: download, unpack, `depmod`, and the ELF vmlinux inside the bzImage.

use crate::apt::{self, Package};
use crate::{tools, Cache, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bumped when the unpack layout changes, so old cache entries are rebuilt.
const LAYOUT: u32 = 1;

/// Which Debian kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `linux-image-cloud-amd64`: small, virtio drivers as modules; the test guest's kernel.
    Cloud,
    /// `linux-image-amd64`: has `kvm-amd`; the harness kernel.
    Generic,
}

impl Flavour {
    /// The metapackage that names the current ABI package.
    pub fn metapackage(self) -> &'static str {
        match self {
            Flavour::Cloud => "linux-image-cloud-amd64",
            Flavour::Generic => "linux-image-amd64",
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Flavour::Cloud => "cloud",
            Flavour::Generic => "generic",
        }
    }

    /// The kernel package the images use. Pinned to 6.1.192-2 (ABI 56): under nested TCG its
    /// successor 6.1.192-3 (ABI 57, bookworm-security, December 2026) died in its entry code
    /// (double faults on the entry stack, triple faults) in early boot in about one boot of four,
    /// in the harness and in the test guest alike; the pinned release ran every boot of the
    /// sessions before it.
    pub fn pinned(self) -> &'static str {
        match self {
            Flavour::Cloud => "linux-image-6.1.0-56-cloud-amd64",
            Flavour::Generic => "linux-image-6.1.0-56-amd64",
        }
    }
}

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The package it came from.
    pub package: Package,
    /// Kernel release (`uname -r`), e.g. `6.1.0-56-cloud-amd64`.
    pub release: String,
    /// The compressed bzImage.
    pub vmlinuz: PathBuf,
    /// The uncompressed ELF kernel extracted from it.
    pub vmlinux: PathBuf,
    /// `lib/modules/<release>` with `modules.dep`.
    pub modules: PathBuf,
    /// Cache key of this kernel (for the stamps of images built from it).
    pub key: String,
}

impl Kernel {
    /// Resolves, downloads and unpacks the kernel of `flavour` (skipping finished steps): the
    /// pinned release ([`Flavour::pinned`]) while the archive has it, else the current one.
    pub fn ensure(cache: &Cache, flavour: Flavour) -> Result<Kernel, Error> {
        let package = match apt::resolve_package(flavour.pinned()) {
            Ok(p) => p,
            Err(e) => {
                crate::progress(&format!(
                    "{} not in the archive ({e}); using the current {}",
                    flavour.pinned(),
                    flavour.metapackage()
                ));
                apt::resolve_kernel(flavour.metapackage())?
            }
        };
        let release = package
            .name
            .strip_prefix("linux-image-")
            .ok_or_else(|| Error::Apt(format!("unexpected kernel package {}", package.name)))?
            .to_string();
        let dir = cache.path(&format!("kernels/{}", flavour.dir_name()));
        let root = dir.join("root");
        let kernel = Kernel {
            vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
            vmlinux: dir.join("vmlinux"),
            modules: root.join(format!("lib/modules/{release}")),
            key: format!("{} {} layout {LAYOUT}", package.name, package.version),
            release,
            package,
        };
        let modules_dep = kernel.modules.join("modules.dep");
        cache.step(
            &format!("kernel-{}", flavour.dir_name()),
            &kernel.key,
            &[&kernel.vmlinux, &modules_dep],
            || kernel.unpack(cache, &dir, &root),
        )?;
        Ok(kernel)
    }

    fn unpack(&self, cache: &Cache, dir: &Path, root: &Path) -> Result<(), Error> {
        let deb = apt::download(&self.package, &cache.path("downloads"))?;
        tools::remove_all(dir)?;
        tools::mkdir(root)?;
        crate::progress(&format!("unpacking {}", deb.display()));
        tools::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(root))?;
        for p in [&self.vmlinuz, &self.modules] {
            if !p.exists() {
                return Err(Error::Kernel {
                    path: p.clone(),
                    reason: "missing from the package".into(),
                });
            }
        }
        crate::progress(&format!("depmod {}", self.release));
        tools::run(
            Command::new("depmod")
                .arg("-b")
                .arg(root)
                .arg(&self.release),
        )?;
        crate::progress(&format!(
            "extracting vmlinux from {}",
            self.vmlinuz.display()
        ));
        extract_vmlinux(&self.vmlinuz, &self.vmlinux, &dir.join("payload"))
    }
}

/// Compression formats the kernel build uses, with their magic and decompressor.
const FORMATS: &[(&str, &[u8], &[&str])] = &[
    ("gzip", &[0x1f, 0x8b, 0x08], &["gzip", "-dc"]),
    ("xz", &[0xfd, b'7', b'z', b'X', b'Z', 0x00], &["xz", "-dc"]),
    ("lz4", &[0x02, 0x21, 0x4c, 0x18], &["lz4", "-dc"]),
    ("zstd", &[0x28, 0xb5, 0x2f, 0xfd], &["zstd", "-dc"]),
];

/// Extracts the ELF vmlinux from a bzImage: finds each compression magic in the image (the
/// payload follows the setup code and decompressor stub) and decompresses from there with the
/// matching tool until one gives an ELF file. Decompressors complain about the bytes after the
/// payload (the kernel appends its size), so their exit status is not trusted; the output is.
pub fn extract_vmlinux(bzimage: &Path, out: &Path, scratch: &Path) -> Result<(), Error> {
    let image = std::fs::read(bzimage).map_err(|e| Error::io(bzimage, e))?;
    let mut tried = Vec::new();
    for (offset, name, tool) in payload_candidates(&image) {
        tools::write_atomic(scratch, &image[offset..])?;
        let _ = tools::run_piped(Command::new(tool[0]).args(&tool[1..]), scratch, out)?;
        let ok = is_elf(out)?;
        tried.push(format!("{name}@{offset:#x}"));
        if ok {
            let _ = std::fs::remove_file(scratch);
            return Ok(());
        }
    }
    let _ = std::fs::remove_file(scratch);
    let _ = std::fs::remove_file(out);
    Err(Error::Kernel {
        path: bzimage.to_path_buf(),
        reason: format!(
            "no compressed ELF payload found (tried: {})",
            tried.join(", ")
        ),
    })
}

/// Offsets of compression magics in `image`, in file order, with format name and decompressor.
fn payload_candidates(image: &[u8]) -> Vec<(usize, &'static str, &'static [&'static str])> {
    let mut found = Vec::new();
    for (name, magic, tool) in FORMATS {
        let mut from = 0;
        while let Some(pos) = find(&image[from..], magic) {
            found.push((from + pos, *name, *tool));
            from += pos + 1;
        }
    }
    found.sort_by_key(|c| c.0);
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `path` starts with the ELF magic and is bigger than a stub.
fn is_elf(path: &Path) -> Result<bool, Error> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut magic = [0u8; 4];
    Ok(len > 1 << 20 && f.read_exact(&mut magic).is_ok() && &magic == b"\x7fELF")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_magics_in_file_order() {
        let mut img = vec![0u8; 64];
        img[10..14].copy_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
        img[40..46].copy_from_slice(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]);
        let c: Vec<_> = payload_candidates(&img)
            .into_iter()
            .map(|c| (c.0, c.1))
            .collect();
        assert_eq!(c, vec![(10, "zstd"), (40, "xz")]);
    }

    #[test]
    fn extracts_an_elf_from_a_fake_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("elf");
        let mut body = b"\x7fELF".to_vec();
        body.resize(2 << 20, 7);
        std::fs::write(&elf, &body).unwrap();
        let xz = tools::run(Command::new("xz").args(["-c", "-0"]).arg(&elf))
            .unwrap()
            .stdout;
        let mut image = vec![0x1f, 0x8b, 0x08, 0, 0]; // a false gzip magic in the setup code
        image.extend_from_slice(&xz);
        image.extend_from_slice(&[1, 2, 3, 4]); // the size trailer
        let bz = dir.path().join("bz");
        std::fs::write(&bz, &image).unwrap();
        let out = dir.path().join("vmlinux");
        extract_vmlinux(&bz, &out, &dir.path().join("scratch")).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), body);

        std::fs::write(&bz, b"not a kernel").unwrap();
        assert!(extract_vmlinux(&bz, &out, &dir.path().join("scratch")).is_err());
    }
}
