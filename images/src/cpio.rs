//! Writer for `newc` cpio archives, the format the kernel unpacks as initramfs, on the `cpio`
//! crate's header encoder.
//!
//! Archives are written here rather than with the `cpio` tool so images need no root for device
//! nodes (`/dev/console`), own every file by root and carry fixed timestamps (reproducible bytes).

use std::io::{self, Write};
use std::path::Path;

use cpio::newc::{Builder, ModeFileType};

/// Streams entries into a `newc` archive.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> std::fmt::Debug for CpioWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpioWriter").finish_non_exhaustive()
    }
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1 }
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, perm: u32) -> io::Result<()> {
        let entry = self.entry(path, ModeFileType::Directory, perm).nlink(2);
        self.write(entry, &[])
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let entry = self.entry(path, ModeFileType::Regular, perm);
        self.write(entry, data)
    }

    /// Adds a symbolic link.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let entry = self.entry(path, ModeFileType::Symlink, 0o777);
        self.write(entry, target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let entry = self
            .entry(path, ModeFileType::Char, perm)
            .rdev_major(major)
            .rdev_minor(minor);
        self.write(entry, &[])
    }

    /// Adds everything under `root` (sorted by name, so the archive is reproducible), with paths
    /// relative to `root`. Directories, regular files and symlinks are supported.
    pub fn tree(&mut self, root: &Path) -> io::Result<()> {
        self.tree_at(root, "")
    }

    fn tree_at(&mut self, dir: &Path, prefix: &str) -> io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = format!("{prefix}{}", name.to_string_lossy());
            let meta = std::fs::symlink_metadata(&path)?;
            let perm = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                self.symlink(&rel, &target.to_string_lossy())?;
            } else if meta.is_dir() {
                self.dir(&rel, perm)?;
                self.tree_at(&path, &format!("{rel}/"))?;
            } else if meta.is_file() {
                self.file(&rel, perm, &std::fs::read(&path)?)?;
            } else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: unsupported file type", path.display()),
                ));
            }
        }
        Ok(())
    }

    /// Writes the trailer and returns the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = cpio::newc::trailer(self.out)?;
        out.flush()?;
        Ok(out)
    }

    /// An entry owned by root with mtime 0 and the next inode number.
    fn entry(&mut self, path: &str, kind: ModeFileType, perm: u32) -> Builder {
        let ino = self.next_ino;
        self.next_ino += 1;
        Builder::new(path.trim_start_matches('/'))
            .ino(ino)
            .mode(perm & 0o7777)
            .set_mode_file_type(kind)
    }

    fn write(&mut self, entry: Builder, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let mut w = entry.write(&mut self.out, size);
        w.write_all(data)?;
        w.finish().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // From the newc format description (the kernel's `Documentation/driver-api/early-userspace`).
    const MAGIC: &str = "070701";
    const TRAILER: &str = "TRAILER!!!";
    const S_IFDIR: u32 = 0o040000;
    const S_IFREG: u32 = 0o100000;
    const S_IFLNK: u32 = 0o120000;

    #[test]
    fn entries_are_aligned_and_terminated() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("/dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"abcde").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(text.matches(MAGIC).count(), 4);
        assert!(text.contains("dev/console\0"));
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"), "trailer padded to 4");
        // The file header: mode 0100755, size 5, name "init".
        let at = text.find("init\0").unwrap();
        let header = &text[at - 110..at];
        assert_eq!(&header[14..22], "000081ed");
        assert_eq!(&header[54..62], "00000005");
        assert_eq!(&header[94..102], "00000005", "name size counts the NUL");
        assert_eq!(&text[at + 6..at + 11], "abcde", "data starts 4-aligned");
        // The console node: rdev major 5, minor 1.
        let at = text.find("dev/console\0").unwrap();
        let header = &text[at - 110..at];
        assert_eq!((&header[78..86], &header[86..94]), ("00000005", "00000001"));
    }

    #[test]
    fn device_minors_above_255_keep_their_own_field() {
        let mut w = CpioWriter::new(Vec::new());
        w.char_device("dev/ttyS300", 0o600, 4, 300).unwrap();
        let bytes = w.finish().unwrap();
        let r = cpio::newc::Reader::new(bytes.as_slice()).unwrap();
        let e = r.entry();
        assert_eq!((e.rdev_major(), e.rdev_minor()), (4, 300));
        assert_eq!(e.mode() & 0o170000, 0o020000);
        assert_eq!((e.uid(), e.gid(), e.mtime()), (0, 0, 0));
    }

    /// Reads back (name, mode, data) of every entry, checking alignment on the way.
    fn entries(bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let field = |at: usize, i: usize| {
            let hex = std::str::from_utf8(&bytes[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
            u32::from_str_radix(hex, 16).unwrap() as usize
        };
        let align = |n: usize| n.div_ceil(4) * 4;
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], MAGIC.as_bytes());
            let (mode, size, namesize) = (field(at, 1), field(at, 6), field(at, 11));
            let name =
                String::from_utf8(bytes[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
            let data_at = align(at + 110 + namesize);
            if name == TRAILER {
                return out;
            }
            out.push((name, mode as u32, bytes[data_at..data_at + size].to_vec()));
            at = align(data_at + size);
        }
    }

    #[test]
    fn tree_is_archived_sorted_with_symlinks() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("b")).unwrap();
        std::fs::write(root.path().join("b/f"), b"x").unwrap();
        std::os::unix::fs::symlink("b/f", root.path().join("a")).unwrap();
        let mut w = CpioWriter::new(Vec::new());
        w.tree(root.path()).unwrap();
        let got = entries(&w.finish().unwrap());
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["a", "b", "b/f"]);
        assert_eq!(
            (got[0].1 & 0o170000, got[0].2.as_slice()),
            (S_IFLNK, &b"b/f"[..])
        );
        assert_eq!(got[1].1 & 0o170000, S_IFDIR);
        assert_eq!(
            (got[2].1 & 0o170000, got[2].2.as_slice()),
            (S_IFREG, &b"x"[..])
        );
    }
}
