//! Kernel module loading from `/lib/modules/<release>`, dependencies first (a small `modprobe`).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Error finding or loading a module.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// `modules.dep` could not be read.
    #[error("reading {path}: {error}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
    /// The module is not in `modules.dep`.
    #[error("module {0} not found in modules.dep")]
    NotFound(String),
    /// The dependency graph has a cycle.
    #[error("dependency cycle through module {0}")]
    Cycle(String),
    /// The `.ko` file could not be opened.
    #[error("opening {path}: {error}")]
    Open {
        /// The module file.
        path: PathBuf,
        /// Underlying error.
        error: std::io::Error,
    },
    /// The kernel refused the module.
    #[error("finit_module {name}: {error}")]
    Load {
        /// Module name.
        name: String,
        /// Error the kernel returned.
        error: std::io::Error,
    },
}

/// A module's file and direct dependencies, from one `modules.dep` line.
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    deps: Vec<String>,
}

/// The parsed `modules.dep` of one kernel release.
#[derive(Debug, Clone)]
pub struct ModuleIndex {
    entries: HashMap<String, Entry>,
}

/// Module name of a `.ko` path, as the kernel names it (`virtio-pci.ko` -> `virtio_pci`).
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleIndex {
    /// Reads `<base>/modules.dep`, where `base` is `/lib/modules/<release>`.
    pub fn open(base: &Path) -> Result<Self, ModuleError> {
        let path = base.join("modules.dep");
        let text = std::fs::read_to_string(&path).map_err(|error| ModuleError::Index {
            path: path.clone(),
            error,
        })?;
        Ok(Self::parse(base, &text))
    }

    /// Opens the index of the running kernel.
    pub fn running() -> Result<Self, ModuleError> {
        Self::open(&Path::new("/lib/modules").join(kernel_release()))
    }

    /// Parses `modules.dep` text; paths in it are relative to `base`.
    pub fn parse(base: &Path, text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let (module, deps) = line.split_once(':')?;
                let entry = Entry {
                    path: base.join(module.trim()),
                    deps: deps.split_whitespace().map(module_name).collect(),
                };
                Some((module_name(module.trim()), entry))
            })
            .collect();
        Self { entries }
    }

    /// The `.ko` file of a module, if the index lists it.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.entries
            .get(&name.replace('-', "_"))
            .map(|e| e.path.as_path())
    }

    /// Names of `name` and everything it needs, dependencies before dependents.
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, ModuleError> {
        let mut order = Vec::new();
        let mut visiting = Vec::new();
        self.visit(&name.replace('-', "_"), &mut visiting, &mut order)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        visiting: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModuleError> {
        if order.iter().any(|n| n == name) {
            return Ok(());
        }
        if visiting.iter().any(|n| n == name) {
            return Err(ModuleError::Cycle(name.to_string()));
        }
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModuleError::NotFound(name.to_string()))?;
        visiting.push(name.to_string());
        for dep in &entry.deps {
            self.visit(dep, visiting, order)?;
        }
        visiting.pop();
        order.push(name.to_string());
        Ok(())
    }

    /// Loads `name` and its dependencies; modules already loaded count as success.
    /// Returns the names in load order.
    pub fn load(&self, name: &str) -> Result<Vec<String>, ModuleError> {
        let order = self.load_order(name)?;
        for module in &order {
            let path = &self.entries[module].path;
            load_file(module, path)?;
        }
        Ok(order)
    }
}

/// Loads one `.ko` file with `finit_module`; `EEXIST` (already loaded) is success.
fn load_file(name: &str, path: &Path) -> Result<(), ModuleError> {
    let file = std::fs::File::open(path).map_err(|error| ModuleError::Open {
        path: path.to_path_buf(),
        error,
    })?;
    let params = CString::default();
    // SAFETY: finit_module reads the open fd and a NUL-terminated parameter string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(ModuleError::Load {
        name: name.to_string(),
        error: err,
    })
}

/// The running kernel's release string (`uname -r`).
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_ring.ko: kernel/drivers/virtio/virtio.ko
kernel/drivers/virtio/virtio.ko:
kernel/drivers/uio/uio_pci_generic.ko: kernel/drivers/uio/uio.ko
kernel/drivers/uio/uio.ko:
kernel/a-b.ko: kernel/c.ko
kernel/c.ko: kernel/a-b.ko
";

    #[test]
    fn dependencies_come_first() {
        let idx = ModuleIndex::parse(Path::new("/lib/modules/x"), DEP);
        let order = idx.load_order("virtio-pci").unwrap();
        let pos = |n: &str| order.iter().position(|m| m == n).unwrap();
        assert_eq!(order.len(), 5);
        assert!(pos("virtio") < pos("virtio_ring"));
        assert!(pos("virtio_ring") < pos("virtio_pci"));
        assert_eq!(order.last().unwrap(), "virtio_pci");
        assert_eq!(
            idx.load_order("uio_pci_generic").unwrap(),
            ["uio", "uio_pci_generic"]
        );
    }

    #[test]
    fn missing_and_cyclic_modules_are_errors() {
        let idx = ModuleIndex::parse(Path::new("/m"), DEP);
        assert!(matches!(
            idx.load_order("nope"),
            Err(ModuleError::NotFound(_))
        ));
        assert!(matches!(idx.load_order("a_b"), Err(ModuleError::Cycle(_))));
    }

    #[test]
    fn names_follow_kernel_rules() {
        assert_eq!(module_name("kernel/arch/x86/kvm/kvm-amd.ko"), "kvm_amd");
        assert_eq!(module_name("kernel/x/zstd.ko.xz"), "zstd");
    }
}
