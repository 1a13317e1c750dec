//! Running the external tools the build uses (apt, dpkg-deb, depmod, gzip, decompressors).

use crate::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `cmd` to completion and returns its output; a non-zero exit is an error that names the
/// command and quotes the end of its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, Error> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Tool(format!("running {}: {e}", describe(cmd))))?;
    if !out.status.success() {
        return Err(Error::Tool(format!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            tail(&String::from_utf8_lossy(&out.stderr), 800)
        )));
    }
    Ok(out)
}

/// `program arg arg...` for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `max` bytes of `s` (on a char boundary), trimmed.
pub fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim()
}

/// Removes `path` (file or directory tree) if it exists.
pub fn remove_all(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(|e| Error::io(path, e)),
        Ok(_) => std::fs::remove_file(path).map_err(|e| Error::io(path, e)),
        Err(_) => Ok(()),
    }
}

/// Creates `path` and its parents.
pub fn mkdir(path: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

/// Copies `from` to `to`, creating parent directories, keeping permissions.
pub fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        mkdir(parent)?;
    }
    std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    Ok(())
}

/// Writes `data` to `path` atomically (temporary file, then rename).
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Library paths in `ldd` output (`name => /path (addr)` and `/path (addr)` lines).
pub fn ldd_paths(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => l,
            };
            let path = path.split(" (").next()?.trim();
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_library_paths() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f00)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f01)\n\
                    \tlibmissing.so => not found\n";
        assert_eq!(
            ldd_paths(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libz.so.1"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
    }
}
