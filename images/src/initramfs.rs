//! Building initramfs images: a staging tree on disk, kernel modules with their dependencies,
//! and packing into a `newc` cpio (optionally gzip-compressed).

use crate::cpio::CpioWriter;
use crate::kernel::Kernel;
use crate::{tools, Error};
use guest_tools::modules::ModuleIndex;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compression of a packed initramfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain cpio: the kernel unpacks it by copying, which is fastest under emulation.
    None,
    /// gzip -9: smallest for the test guest, which is itself carried inside the harness.
    Gzip,
}

/// Directories every image has (mount points and scratch space).
pub const BASE_DIRS: &[&str] = &["bin", "dev", "etc", "proc", "sys", "tmp", "run"];

/// Starts a fresh staging tree at `root` with [`BASE_DIRS`].
pub fn new_staging(root: &Path) -> Result<(), Error> {
    tools::remove_all(root)?;
    for d in BASE_DIRS {
        tools::mkdir(&root.join(d))?;
    }
    Ok(())
}

/// Copies busybox into `root/bin` with a `sh` link (other applets are linked by the image's
/// init at run time with `busybox --install`, or not needed).
pub fn install_busybox(root: &Path) -> Result<(), Error> {
    let busybox = busybox_path()?;
    tools::copy(&busybox, &root.join("bin/busybox"))?;
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).map_err(|e| Error::io(root, e))
}

/// The static busybox of the build machine (Debian's busybox-static).
pub fn busybox_path() -> Result<PathBuf, Error> {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        let p = Path::new(p);
        if p.exists() {
            return Ok(p.to_path_buf());
        }
    }
    Err(Error::Tool(
        "busybox not found: install busybox-static (bash .ci/setup)".into(),
    ))
}

/// Copies `names` and every module they depend on from `kernel` into `root/lib/modules/<release>`,
/// then runs `depmod -b root` so the image has its own `modules.dep`. Returns the module files
/// copied, relative to the modules directory.
pub fn install_modules(kernel: &Kernel, names: &[&str], root: &Path) -> Result<Vec<String>, Error> {
    let index = ModuleIndex::open(&kernel.modules).map_err(|e| Error::Kernel {
        path: kernel.modules.clone(),
        reason: e.to_string(),
    })?;
    let dest = root.join("lib/modules").join(&kernel.release);
    let mut copied = Vec::new();
    for name in names {
        let order = index.load_order(name).map_err(|e| Error::Kernel {
            path: kernel.modules.clone(),
            reason: e.to_string(),
        })?;
        for module in order {
            let file = index
                .file(&module)
                .expect("load_order only names indexed modules");
            let rel = file
                .strip_prefix(&kernel.modules)
                .expect("indexed files live under the modules directory")
                .to_string_lossy()
                .into_owned();
            if !copied.contains(&rel) {
                tools::copy(file, &dest.join(&rel))?;
                copied.push(rel);
            }
        }
    }
    for meta in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        let src = kernel.modules.join(meta);
        if src.exists() {
            tools::copy(&src, &dest.join(meta))?;
        }
    }
    tools::run(
        Command::new("depmod")
            .arg("-b")
            .arg(root)
            .arg(&kernel.release),
    )?;
    if !dest.join("modules.dep").exists() {
        return Err(Error::Tool(format!(
            "depmod wrote no modules.dep in {}",
            dest.display()
        )));
    }
    Ok(copied)
}

/// Packs the staging tree `root` plus a `/dev/console` node into `out`.
pub fn pack(root: &Path, out: &Path, compression: Compression) -> Result<(), Error> {
    let tmp = out.with_extension("partial");
    let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    match compression {
        Compression::None => {
            let mut w = CpioWriter::new(std::io::BufWriter::new(file));
            write_tree(&mut w, root)?;
            w.finish().map_err(|e| Error::io(&tmp, e))?;
        }
        Compression::Gzip => {
            // Level 9 and no name or mtime in the header, as `gzip -9 -n`: reproducible bytes.
            let gz = flate2::GzBuilder::new()
                .write(std::io::BufWriter::new(file), flate2::Compression::best());
            let mut w = CpioWriter::new(gz);
            write_tree(&mut w, root)?;
            let gz = w.finish().map_err(|e| Error::io(&tmp, e))?;
            gz.finish()
                .and_then(|mut f| f.flush())
                .map_err(|e| Error::io(&tmp, e))?;
        }
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}

fn write_tree<W: Write>(w: &mut CpioWriter<W>, root: &Path) -> Result<(), Error> {
    w.tree(root).map_err(|e| Error::io(root, e))?;
    w.char_device("dev/console", 0o600, 5, 1)
        .map_err(|e| Error::io(root, e))
}

/// Concatenates initramfs archives (the kernel unpacks them one after the other).
pub fn concat(parts: &[&Path], out: &Path) -> Result<(), Error> {
    let tmp = out.with_extension("partial");
    let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    for part in parts {
        let mut src = std::fs::File::open(part).map_err(|e| Error::io(part, e))?;
        std::io::copy(&mut src, &mut file).map_err(|e| Error::io(part, e))?;
    }
    std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))
}
