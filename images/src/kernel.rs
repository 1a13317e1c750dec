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
        extract_vmlinux(&self.vmlinuz, &self.vmlinux)
    }
}

/// Compression formats of the kernels this tool reads (Debian's cloud kernel is lz4 in the
/// legacy frame, its generic one xz; Ubuntu's is zstd), with their magic.
const FORMATS: &[(Format, &[u8])] = &[
    (Format::Gzip, &[0x1f, 0x8b, 0x08]),
    (Format::Xz, &[0xfd, b'7', b'z', b'X', b'Z', 0x00]),
    (Format::Lz4Legacy, &[0x02, 0x21, 0x4c, 0x18]),
    (Format::Zstd, &[0x28, 0xb5, 0x2f, 0xfd]),
];

/// A kernel payload's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Gzip,
    Xz,
    Lz4Legacy,
    Zstd,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Gzip => "gzip",
            Format::Xz => "xz",
            Format::Lz4Legacy => "lz4",
            Format::Zstd => "zstd",
        }
    }

    /// A decoder of one stream of this format from `input`. The gzip, xz and zstd decoders stop
    /// at the stream's end; the legacy lz4 frame has no end mark, so its decoder fails on the
    /// bytes after the payload (the kernel appends its size) after giving all of it.
    fn decoder<'a>(self, input: &'a [u8]) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
        Ok(match self {
            Format::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
            Format::Xz => Box::new(xz2::read::XzDecoder::new(input)),
            Format::Lz4Legacy => Box::new(lz4_flex::frame::FrameDecoder::new(input)),
            Format::Zstd => Box::new(zstd::stream::read::Decoder::new(input)?.single_frame()),
        })
    }
}

/// The largest vmlinux accepted (Debian's is about 60 MiB): bounds what a false magic in the
/// setup code can make the decoder produce.
const MAX_VMLINUX: u64 = 1 << 30;

/// Extracts the ELF vmlinux from a bzImage: finds each compression magic in the image (the
/// payload follows the setup code and decompressor stub) and decompresses from there until one
/// gives an ELF file. A decoder error after the output (bytes after the payload) is not trusted
/// either way; the output is.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), Error> {
    let image = std::fs::read(bzimage).map_err(|e| Error::io(bzimage, e))?;
    let mut tried = Vec::new();
    for (offset, format) in payload_candidates(&image) {
        tried.push(format!("{}@{offset:#x}", format.name()));
        let mut elf = Vec::new();
        if let Ok(decoder) = format.decoder(&image[offset..]) {
            let _ = std::io::copy(&mut std::io::Read::take(decoder, MAX_VMLINUX), &mut elf);
        }
        if is_elf(&elf) {
            return tools::write_atomic(out, &elf);
        }
    }
    Err(Error::Kernel {
        path: bzimage.to_path_buf(),
        reason: format!(
            "no compressed ELF payload found (tried: {})",
            tried.join(", ")
        ),
    })
}

/// Offsets of compression magics in `image`, in file order, with their format.
fn payload_candidates(image: &[u8]) -> Vec<(usize, Format)> {
    let mut found = Vec::new();
    for (format, magic) in FORMATS {
        let mut from = 0;
        while let Some(pos) = find(&image[from..], magic) {
            found.push((from + pos, *format));
            from += pos + 1;
        }
    }
    found.sort_by_key(|c| c.0);
    found
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `bytes` start with the ELF magic and are bigger than a stub.
fn is_elf(bytes: &[u8]) -> bool {
    bytes.len() > 1 << 20 && bytes.starts_with(b"\x7fELF")
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
            .map(|c| (c.0, c.1.name()))
            .collect();
        assert_eq!(c, vec![(10, "zstd"), (40, "xz")]);
    }

    /// A fake bzImage: a false gzip magic in the "setup code", then `elf` compressed by the
    /// format's own tool (the oracle), then the size trailer the kernel build appends.
    fn fake_bzimage(dir: &Path, elf: &Path, tool: &[&str]) -> std::path::PathBuf {
        let payload = tools::run(Command::new(tool[0]).args(&tool[1..]).arg(elf))
            .unwrap()
            .stdout;
        let mut image = vec![0x1f, 0x8b, 0x08, 0, 0];
        image.extend_from_slice(&payload);
        image.extend_from_slice(&[1, 2, 3, 4]);
        let bz = dir.join(format!("bz-{}", tool[0]));
        std::fs::write(&bz, &image).unwrap();
        bz
    }

    #[test]
    fn extracts_an_elf_from_fake_bzimages() {
        let dir = tempfile::tempdir().unwrap();
        let elf = dir.path().join("elf");
        let mut body = b"\x7fELF".to_vec();
        body.extend((0..(2u32 << 20)).map(|i| (i * 7 / 13) as u8));
        std::fs::write(&elf, &body).unwrap();
        let out = dir.path().join("vmlinux");
        // The kernel build's own invocations: `xz --check=crc32`, `lz4 -l` (legacy frame).
        for tool in [
            &["xz", "-c", "-0", "--check=crc32"][..],
            &["lz4", "-l", "-c", "-9"],
        ] {
            let bz = fake_bzimage(dir.path(), &elf, tool);
            extract_vmlinux(&bz, &out).unwrap();
            assert!(std::fs::read(&out).unwrap() == body, "{}", tool[0]);
        }

        let bz = dir.path().join("bz");
        std::fs::write(&bz, b"not a kernel").unwrap();
        assert!(extract_vmlinux(&bz, &out).is_err());
    }
}
