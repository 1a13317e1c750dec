//! Resolving and fetching Debian packages with the ordinary apt clients.

use crate::tools;
use crate::Error;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A concrete Debian package version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Package name, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub name: String,
    /// Candidate version, e.g. `6.1.192-2`.
    pub version: String,
}

/// Resolves a kernel metapackage (`linux-image-cloud-amd64`) to the ABI package it depends on
/// today, with its candidate version.
pub fn resolve_kernel(meta: &str) -> Result<Package, Error> {
    let out = tools::run(Command::new("apt-cache").args(["depends", meta]))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let name = parse_depends(&text, "linux-image-").ok_or_else(|| {
        Error::Apt(format!(
            "apt-cache depends {meta} names no linux-image package (run `apt-get update`?)"
        ))
    })?;
    resolve_package(&name)
}

/// The candidate version of package `name`.
pub fn resolve_package(name: &str) -> Result<Package, Error> {
    let out = tools::run(Command::new("apt-cache").args(["show", "--no-all-versions", name]))?;
    let version = parse_field(&String::from_utf8_lossy(&out.stdout), "Version")
        .ok_or_else(|| Error::Apt(format!("apt-cache show {name} gives no Version")))?;
    Ok(Package {
        name: name.to_string(),
        version,
    })
}

/// Downloads the package's .deb into `dir` (unless already there) and returns its path.
pub fn download(pkg: &Package, dir: &Path) -> Result<PathBuf, Error> {
    tools::mkdir(dir)?;
    let file = dir.join(deb_file_name(pkg));
    if !file.exists() {
        crate::progress(&format!("downloading {}={}", pkg.name, pkg.version));
        tools::run(
            Command::new("apt-get")
                .args(["download", "-q", &format!("{}={}", pkg.name, pkg.version)])
                .current_dir(dir),
        )?;
        if !file.exists() {
            return Err(Error::Apt(format!(
                "apt-get download did not produce {}",
                file.display()
            )));
        }
    }
    Ok(file)
}

/// The file name `apt-get download` gives a package (epoch colon escaped as `%3a`).
pub fn deb_file_name(pkg: &Package) -> String {
    format!("{}_{}_amd64.deb", pkg.name, pkg.version.replace(':', "%3a"))
}

/// First `Depends:` target in `apt-cache depends` output that starts with `prefix`.
fn parse_depends(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|dep| dep.trim().trim_start_matches('<').trim_end_matches('>'))
        .find(|dep| dep.starts_with(prefix))
        .map(str::to_string)
}

/// Value of the first `Field: value` line.
fn parse_field(text: &str, field: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apt_cache_output() {
        let deps = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_depends(deps, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(parse_depends("x\n  Depends: foo\n", "linux-image-"), None);
        let show = "Package: linux-image-6.1.0-56-amd64\nVersion: 6.1.192-2\nVersion: 1\n";
        assert_eq!(parse_field(show, "Version").as_deref(), Some("6.1.192-2"));
    }

    #[test]
    fn deb_names_escape_the_epoch() {
        let p = Package {
            name: "busybox-static".into(),
            version: "1:1.35.0-4".into(),
        };
        assert_eq!(deb_file_name(&p), "busybox-static_1%3a1.35.0-4_amd64.deb");
    }
}
