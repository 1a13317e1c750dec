//! The image cache: a directory of build outputs, each guarded by a stamp file that records the
//! inputs it was built from, so finished steps are not repeated.

use crate::Error;
use sha2::{Digest, Sha256};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Environment variable that overrides the cache directory.
pub const CACHE_ENV: &str = "VGPU_IMAGE_CACHE";

/// Files bigger than this are fingerprinted by size and mtime instead of content.
const HASH_LIMIT: u64 = 16 << 20;

/// The cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// Opens `$VGPU_IMAGE_CACHE`, or `<workspace>/.cache/images`.
    pub fn from_env() -> Result<Self, Error> {
        let root = match std::env::var_os(CACHE_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => crate::workspace_root().join(".cache/images"),
        };
        Self::at(root)
    }

    /// Opens (creating it) the cache at `root`.
    pub fn at(root: PathBuf) -> Result<Self, Error> {
        std::fs::create_dir_all(root.join("stamps")).map_err(|e| Error::io(&root, e))?;
        Ok(Self { root })
    }

    /// Takes the cache's exclusive lock (blocking), so concurrent builders (a test and a demo,
    /// or parallel tests) do not write the same files. Released when the guard drops.
    pub fn lock(&self) -> Result<CacheLock, Error> {
        let path = self.root.join("lock");
        let file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: flock on a file descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            crate::progress("waiting for another build to release the image cache");
            // SAFETY: as above.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(Error::io(&path, std::io::Error::last_os_error()));
            }
        }
        Ok(CacheLock { _file: file })
    }

    /// A path inside the cache.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Runs `build` unless the step's stamp holds `key` and all `outputs` exist. The stamp is
    /// removed before building and written after success, so an interrupted build is redone.
    pub fn step(
        &self,
        name: &str,
        key: &str,
        outputs: &[&Path],
        build: impl FnOnce() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let stamp = self.root.join("stamps").join(format!("{name}.stamp"));
        let current = std::fs::read_to_string(&stamp).ok();
        if current.as_deref() == Some(key) && outputs.iter().all(|p| p.exists()) {
            crate::progress(&format!("{name}: up to date"));
            return Ok(());
        }
        let _ = std::fs::remove_file(&stamp);
        crate::progress(&format!("{name}: building"));
        let started = std::time::Instant::now();
        build()?;
        std::fs::write(&stamp, key).map_err(|e| Error::io(&stamp, e))?;
        crate::progress(&format!(
            "{name}: done in {:.1} s",
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

/// Holds the cache lock (see [`Cache::lock`]); the kernel drops the lock when the file closes.
#[derive(Debug)]
pub struct CacheLock {
    _file: std::fs::File,
}

/// A short fingerprint of a file: SHA-256 of its content, or of size and mtime for big files.
pub fn fingerprint(path: &Path) -> Result<String, Error> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    if meta.len() <= HASH_LIMIT {
        h.update(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    } else {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .unwrap_or_default();
        h.update(format!("{}:{}", meta.len(), mtime.as_nanos()));
    }
    Ok(short_hex(&h.finalize()))
}

/// A short fingerprint of a string (used for keys built from many parts).
pub fn fingerprint_str(s: &str) -> String {
    short_hex(&Sha256::digest(s.as_bytes()))
}

fn short_hex(bytes: &[u8]) -> String {
    bytes[..12].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn steps_rerun_only_when_the_key_or_an_output_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().to_path_buf()).unwrap();
        let out = cache.path("out");
        let runs = Cell::new(0);
        let build = || {
            runs.set(runs.get() + 1);
            std::fs::write(&out, b"x").map_err(|e| Error::io(&out, e))
        };
        cache.step("s", "k1", &[&out], build).unwrap();
        cache.step("s", "k1", &[&out], build).unwrap();
        assert_eq!(runs.get(), 1);
        cache.step("s", "k2", &[&out], build).unwrap();
        assert_eq!(runs.get(), 2);
        std::fs::remove_file(&out).unwrap();
        cache.step("s", "k2", &[&out], build).unwrap();
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn failed_steps_are_redone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().to_path_buf()).unwrap();
        let out = cache.path("out");
        std::fs::write(&out, b"x").unwrap();
        let fail = || Err(Error::Tool("boom".into()));
        assert!(cache.step("s", "k", &[&out], fail).is_err());
        let runs = Cell::new(0);
        cache
            .step("s", "k", &[&out], || {
                runs.set(1);
                Ok(())
            })
            .unwrap();
        assert_eq!(runs.get(), 1);
    }

    #[test]
    fn fingerprints_follow_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"a").unwrap();
        let a = fingerprint(&f).unwrap();
        std::fs::write(&f, b"b").unwrap();
        assert_ne!(a, fingerprint(&f).unwrap());
        assert_eq!(a.len(), 24);
    }
}
