//! The host driver's version, from `/proc/driver/nvidia/version`, and whether this crate has an
//! ABI for its branch. Every struct in [`rm_abi`] is the 580 branch's layout; forwarding to a
//! driver of another branch would hand it structs of the wrong size, so it is refused up front.

use thiserror::Error;

/// Where the loaded kernel module reports its version.
pub const VERSION_FILE: &str = "/proc/driver/nvidia/version";

/// Driver branches (major versions) whose escape ABI this crate implements.
pub const SUPPORTED_BRANCHES: &[u32] = &[580];

/// A parsed `NVRM version:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverVersion {
    /// Major version: the branch (580).
    pub major: u32,
    /// Minor version (159).
    pub minor: u32,
    /// Patch (04), kept as text because it has leading zeros.
    pub patch: String,
    /// Whether this is the open kernel module ("Open Kernel Module").
    pub open: bool,
}

/// Why the driver cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum VersionError {
    /// The version file is missing: no NVIDIA kernel module is loaded.
    #[error("{VERSION_FILE} not readable ({0}): is the NVIDIA kernel module loaded?")]
    NoDriver(String),
    /// The file has no `NVRM version:` line with a version number.
    #[error("cannot find a driver version in {VERSION_FILE}: {0:?}")]
    Unparsable(String),
    /// The branch has no ABI here.
    #[error("driver {found} is branch {branch}; this build has the escape ABI of branch(es) {supported:?} only")]
    UnsupportedBranch {
        /// The full version found.
        found: String,
        /// Its branch.
        branch: u32,
        /// Branches supported.
        supported: &'static [u32],
    },
}

impl DriverVersion {
    /// Parses the contents of [`VERSION_FILE`].
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let line = text
            .lines()
            .find(|l| l.starts_with("NVRM version:"))
            .ok_or_else(|| VersionError::Unparsable(text.chars().take(120).collect()))?;
        let open = line.contains("Open Kernel Module");
        let version = line
            .split_whitespace()
            .find_map(Self::parse_number)
            .ok_or_else(|| VersionError::Unparsable(line.to_string()))?;
        Ok(Self { open, ..version })
    }

    fn parse_number(word: &str) -> Option<Self> {
        let mut parts = word.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = parts.next().unwrap_or("0");
        if parts.next().is_some() || !patch.bytes().all(|b| b.is_ascii_digit()) || patch.is_empty()
        {
            return None;
        }
        Some(Self {
            major,
            minor,
            patch: patch.to_string(),
            open: false,
        })
    }

    /// Reads and parses [`VERSION_FILE`].
    pub fn read() -> Result<Self, VersionError> {
        let text = std::fs::read_to_string(VERSION_FILE)
            .map_err(|e| VersionError::NoDriver(e.to_string()))?;
        Self::parse(&text)
    }

    /// `Ok` when this crate has the ABI of the driver's branch.
    pub fn check_supported(&self) -> Result<(), VersionError> {
        if SUPPORTED_BRANCHES.contains(&self.major) {
            Ok(())
        } else {
            Err(VersionError::UnsupportedBranch {
                found: self.to_string(),
                branch: self.major,
                supported: SUPPORTED_BRANCHES,
            })
        }
    }
}

impl std::fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Reads the driver version and refuses a branch without an ABI here.
pub fn detect() -> Result<DriverVersion, VersionError> {
    let v = DriverVersion::read()?;
    v.check_supported()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H200: &str = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (dvs-builder@U22-I3-AE18-23-3)  Tue Oct 14 12:00:00 UTC 2025\nGCC version:  gcc version 13.3.0 (Ubuntu 13.3.0-6ubuntu2~24.04)\n";

    #[test]
    fn parses_the_h200_driver_and_accepts_its_branch() {
        let v = DriverVersion::parse(H200).unwrap();
        assert_eq!(
            (v.major, v.minor, v.patch.as_str(), v.open),
            (580, 159, "04", true)
        );
        assert_eq!(v.to_string(), "580.159.04");
        v.check_supported().unwrap();
    }

    #[test]
    fn refuses_other_branches_with_a_clear_error() {
        let text = H200
            .replace("580.159.04", "595.45.04")
            .replace("Open Kernel Module", "Kernel Module");
        let v = DriverVersion::parse(&text).unwrap();
        assert!(!v.open);
        let e = v.check_supported().unwrap_err();
        assert!(e.to_string().contains("595.45.04 is branch 595"), "{e}");
    }

    #[test]
    fn garbage_is_unparsable() {
        assert!(matches!(
            DriverVersion::parse("hello"),
            Err(VersionError::Unparsable(_))
        ));
        assert!(matches!(
            DriverVersion::parse("NVRM version: NVIDIA UNIX Kernel Module for x86_64 Release"),
            Err(VersionError::Unparsable(_))
        ));
        assert!(DriverVersion::parse("NVRM version: x 580.1a.2 y").is_err());
    }
}
