//! vGPU types: profiles derived from the physical GPU (framebuffer share and how many instances
//! of the type fit on it), named as `--vgpu type=NAME` selects them.
//!
//! This table is the VMM's until the `mdev` crate owns vGPU types (with their instances and
//! persistent definitions); then the VMM will take its type from there and this module goes.

use rm_core::backend::GpuInfo;
use thiserror::Error;

/// One vGPU type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSpec {
    /// The name `--vgpu type=` takes, e.g. `sim-35c`.
    pub name: &'static str,
    /// How many instances share the GPU: the framebuffer quota is the physical framebuffer
    /// divided by this.
    pub max_instances: u32,
}

/// The types of the sim GPU (an H200's framebuffer, about 140 GiB, split 1, 2, 4 or 8 ways,
/// named like NVIDIA's H200 compute profiles: the number is the share in GiB, `c` for compute).
pub const PROFILES: &[ProfileSpec] = &[
    ProfileSpec {
        name: "sim-141c",
        max_instances: 1,
    },
    ProfileSpec {
        name: "sim-70c",
        max_instances: 2,
    },
    ProfileSpec {
        name: "sim-35c",
        max_instances: 4,
    },
    ProfileSpec {
        name: "sim-17c",
        max_instances: 8,
    },
];

/// The type used when `--vgpu` names none.
pub const DEFAULT_PROFILE: &str = "sim-35c";

/// Framebuffer quotas are whole MiB.
const QUOTA_ALIGN: u64 = 1 << 20;

/// A type resolved against a physical GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// Type name.
    pub name: &'static str,
    /// Instances of this type the GPU holds.
    pub max_instances: u32,
    /// Video memory each instance may allocate, in bytes.
    pub fb_quota: u64,
    /// Channels each instance may hold at once: a runlist's channels divided as the
    /// framebuffer is.
    pub max_channels: usize,
    /// Host memory the backend may hold for each instance's memory contents: the GPU's
    /// (`GpuInfo::host_memory_bytes`, 4 GiB on the sim) divided as the framebuffer is, so
    /// `max_instances` guests writing all they may still fit.
    pub host_memory_quota: u64,
    /// Name the guest's RM reports (`GPU_GET_NAME_STRING`), e.g. `NVIDIA H200 (sim) sim-35c`.
    pub gpu_name: String,
}

/// `--vgpu type=` named no known type.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown vGPU type {0:?} (known: {known})", known = names().join(", "))]
pub struct UnknownProfile(pub String);

/// Names of every type, in table order.
pub fn names() -> Vec<&'static str> {
    PROFILES.iter().map(|p| p.name).collect()
}

/// Resolves type `name` against the GPU `gpu` describes.
pub fn resolve(name: &str, gpu: &GpuInfo) -> Result<Profile, UnknownProfile> {
    let spec = PROFILES
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| UnknownProfile(name.to_string()))?;
    Ok(Profile {
        name: spec.name,
        max_instances: spec.max_instances,
        fb_quota: gpu.fb_bytes / u64::from(spec.max_instances) / QUOTA_ALIGN * QUOTA_ALIGN,
        max_channels: rm_core::vgpu::MAX_CHANNELS_PER_VGPU / spec.max_instances as usize,
        host_memory_quota: match gpu.host_memory_bytes {
            u64::MAX => u64::MAX,
            all => all / u64::from(spec.max_instances),
        },
        gpu_name: format!("{} {}", gpu.name, spec.name),
    })
}

impl Profile {
    /// The RM core's configuration of a vGPU of this type: the framebuffer quota (system
    /// memory the same), its shares of channels and host memory, this type's name, and a UUID
    /// of its own derived from the physical GPU's and the GFID.
    pub fn rm_config(&self, gpu: &GpuInfo, gfid: u32, pci_slot: u8) -> rm_core::VgpuConfig {
        let mut uuid = gpu.uuid;
        uuid[15] ^= gfid as u8;
        uuid[14] ^= 0x80;
        rm_core::VgpuConfig {
            name: Some(self.gpu_name.clone()),
            uuid: Some(uuid),
            pci_slot,
            max_channels: self.max_channels,
            host_memory_quota: self.host_memory_quota,
            ..rm_core::VgpuConfig::with_quota(self.fb_quota)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rm_core::backend::Backend;
    use rm_sim::{SimBackend, SimConfig};

    fn gpu() -> GpuInfo {
        SimBackend::new(SimConfig::default()).gpu_info()
    }

    #[test]
    fn quotas_divide_the_physical_framebuffer() {
        let g = gpu();
        let full = resolve("sim-141c", &g).unwrap();
        let quarter = resolve("sim-35c", &g).unwrap();
        assert!(full.fb_quota <= g.fb_bytes && g.fb_bytes - full.fb_quota < QUOTA_ALIGN);
        assert_eq!(quarter.max_instances, 4);
        // A runlist's 2048 channels divided as the framebuffer is.
        assert_eq!((full.max_channels, quarter.max_channels), (2048, 512));
        assert_eq!(quarter.rm_config(&g, 3, 6).max_channels, 512);
        // The sim's 4 GiB of host memory for written pages, a quarter each.
        assert_eq!(g.host_memory_bytes, 4 << 30);
        assert_eq!(quarter.rm_config(&g, 3, 6).host_memory_quota, 1 << 30);
        assert_eq!(full.host_memory_quota, 4 << 30);
        assert!(quarter.fb_quota * 4 <= g.fb_bytes);
        assert_eq!(quarter.fb_quota % QUOTA_ALIGN, 0);
        // The names carry the share in GiB.
        for p in PROFILES {
            let r = resolve(p.name, &g).unwrap();
            let gib = r.fb_quota as f64 / (1u64 << 30) as f64;
            let named: f64 = p.name["sim-".len()..p.name.len() - 1].parse().unwrap();
            assert!((gib - named).abs() < 1.0, "{} has {gib:.1} GiB", p.name);
        }
        assert!(names().contains(&DEFAULT_PROFILE));
    }

    #[test]
    fn unknown_types_list_the_known_ones() {
        let e = resolve("sim-1c", &gpu()).unwrap_err();
        assert!(e.to_string().contains("sim-35c"), "{e}");
    }

    #[test]
    fn config_gives_each_gfid_its_own_uuid_and_the_type_name() {
        let g = gpu();
        let p = resolve("sim-17c", &g).unwrap();
        let a = p.rm_config(&g, 1, 1);
        let b = p.rm_config(&g, 2, 1);
        assert_ne!(a.uuid, b.uuid);
        assert_ne!(a.uuid, Some(g.uuid));
        assert_eq!(a.fb_quota, p.fb_quota);
        assert!(a.name.unwrap().ends_with("sim-17c"));
    }
}
