//! The static `vgpu-vmm`, `vgpud`, `vgpuctl` and `vgpu-guest` binaries the images carry, built with cargo into a
//! target directory inside the cache (so the build never waits on the outer cargo's lock).

use crate::{cache, Cache, Error};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Target triple of the static build (the only one installed; no musl).
const TARGET: &str = "x86_64-unknown-linux-gnu";
/// ELF program header type of the dynamic loader request.
const PT_INTERP: u32 = 3;

/// Paths and fingerprints of the static binaries.
#[derive(Debug, Clone)]
pub struct StaticBins {
    /// The VMM.
    pub vmm: PathBuf,
    /// The host daemon that serves vGPU instances.
    pub vgpud: PathBuf,
    /// The daemon's control CLI.
    pub vgpuctl: PathBuf,
    /// The guest agent and harness helper.
    pub guest: PathBuf,
    /// Fingerprint of all of them, for the stamps of images that embed them.
    pub key: String,
}

impl StaticBins {
    /// Builds (incrementally) the binaries with the workspace's `static` profile.
    pub fn build(cache: &Cache) -> Result<StaticBins, Error> {
        let target_dir = cache.path("target");
        crate::progress("cargo build --profile static -p vmm -p mdev -p guest-tools (static, first build takes minutes)");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--profile",
                "static",
                "-p",
                "vmm",
                "-p",
                "mdev",
                "-p",
                "guest-tools",
            ])
            .args(["--target", TARGET])
            .current_dir(crate::workspace_root())
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .env_remove("CARGO_PRIMARY_PACKAGE")
            .status()
            .map_err(|e| Error::Tool(format!("running cargo: {e}")))?;
        if !status.success() {
            return Err(Error::Tool(format!("static cargo build failed ({status})")));
        }
        let out = target_dir.join(TARGET).join("static");
        let vmm = out.join("vgpu-vmm");
        let vgpud = out.join("vgpud");
        let vgpuctl = out.join("vgpuctl");
        let guest = out.join("vgpu-guest");
        for bin in [&vmm, &vgpud, &vgpuctl, &guest] {
            if is_dynamic(bin)? {
                return Err(Error::Tool(format!(
                    "{} is dynamically linked; RUSTFLAGS +crt-static was not applied",
                    bin.display()
                )));
            }
        }
        let key = format!(
            "vmm {} vgpud {} vgpuctl {} guest {}",
            cache::fingerprint(&vmm)?,
            cache::fingerprint(&vgpud)?,
            cache::fingerprint(&vgpuctl)?,
            cache::fingerprint(&guest)?
        );
        Ok(StaticBins {
            vmm,
            vgpud,
            vgpuctl,
            guest,
            key,
        })
    }
}

/// Whether an ELF executable asks for a dynamic loader (has a PT_INTERP program header).
pub fn is_dynamic(path: &Path) -> Result<bool, Error> {
    let elf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = || {
        Error::Tool(format!(
            "{}: not a 64-bit little-endian ELF",
            path.display()
        ))
    };
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err(bad());
    }
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = elf.get(at..at + 4).ok_or_else(bad)?;
        if u32::from_le_bytes(p_type.try_into().expect("4 bytes")) == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_executables_are_recognised() {
        // The test binary itself is dynamically linked; busybox-static is not.
        let me = std::env::current_exe().unwrap();
        assert!(is_dynamic(&me).unwrap());
        if let Ok(bb) = crate::initramfs::busybox_path() {
            assert!(!is_dynamic(&bb).unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"#!/bin/sh\n").unwrap();
        assert!(is_dynamic(&junk).is_err());
    }
}
