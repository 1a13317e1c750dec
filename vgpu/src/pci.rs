//! How the vGPU presents itself on PCI: identity, BAR declarations and capability bytes, and
//! the configuration space built from them ([`config_space`]).

use ::pci::{BarKind, BarSpec, PciConfig, PciError, PciHeader};

use crate::protocol::{self, virtio, BAR0, BAR0_SIZE, BAR2};

/// The vGPU's identity (see [`protocol::PCI_DEVICE_ID`] for why no guest driver binds it).
pub const IDENTITY: PciHeader = PciHeader {
    vendor_id: protocol::PCI_VENDOR_ID,
    device_id: protocol::PCI_DEVICE_ID,
    class_code: protocol::PCI_CLASS,
    subclass: protocol::PCI_SUBCLASS,
    prog_if: protocol::PCI_PROG_IF,
    revision: protocol::PCI_REVISION,
    subsystem_vendor_id: protocol::PCI_SUBSYSTEM_VENDOR_ID,
    subsystem_id: protocol::PCI_SUBSYSTEM_ID,
};

/// How the VMM must back a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarBacking {
    /// Every access exits to the VMM, which calls `bar_read` / `bar_write`.
    Trapped,
    /// Host memory ([`crate::HostWindow::host_ptr`], the BAR's size): the VMM maps it into the
    /// guest as a KVM memory slot at the BAR's address, moving the slot when the guest moves
    /// the BAR. Without a slot, `bar_read` / `bar_write` still serve it (slowly).
    HostMemory,
}

/// One memory BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarDecl {
    /// BAR index (a 64-bit BAR also takes index + 1).
    pub index: u8,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// 64-bit BAR.
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
    /// Trapped or host memory.
    pub backing: BarBacking,
}

/// The BARs of a vGPU whose window is `window_size` bytes.
pub fn bars(window_size: u64) -> [BarDecl; 2] {
    [
        BarDecl {
            index: BAR0,
            size: BAR0_SIZE,
            is_64bit: false,
            prefetchable: false,
            backing: BarBacking::Trapped,
        },
        BarDecl {
            index: BAR2,
            size: window_size,
            is_64bit: true,
            prefetchable: true,
            backing: BarBacking::HostMemory,
        },
    ]
}

/// One PCI capability: its id, and the bytes after the id and next-pointer bytes (the VMM
/// links the list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    /// Capability id (0x09: vendor-specific, as virtio uses).
    pub id: u8,
    /// Body, starting at the capability's byte 2.
    pub body: Vec<u8>,
}

/// PCI capability id of vendor-specific capabilities (virtio's structures use it).
pub const CAP_ID_VENDOR: u8 = 0x09;

/// `cfg_type` values of `virtio_pci_cap` (virtio 1.2, 4.1.4), written out because
/// `virtio-bindings` 0.2 carries no `virtio_pci.h`; the common-configuration offsets in
/// `protocol::virtio::common` are typed out for the same reason.
pub mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
    /// Shared memory region (the window).
    pub const SHARED_MEMORY: u8 = 8;
}

fn virtio_cap(cap_len: u8, cfg: u8, bar: u8, id: u8, offset: u32, length: u32) -> Vec<u8> {
    let mut b = vec![cap_len, cfg, bar, id, 0, 0];
    b.extend_from_slice(&offset.to_le_bytes());
    b.extend_from_slice(&length.to_le_bytes());
    b
}

/// The virtio-pci modern capabilities, in list order: common, notify, ISR, device config (all
/// in BAR0) and a shared-memory capability describing the window (BAR2, shmid 0).
pub fn capabilities(window_size: u64) -> Vec<Capability> {
    let dev_len = core::mem::size_of::<protocol::DeviceConfig>() as u32;
    let mut notify = virtio_cap(
        20,
        cfg_type::NOTIFY,
        BAR0,
        0,
        virtio::NOTIFY,
        virtio::NOTIFY_LEN,
    );
    notify.extend_from_slice(&virtio::NOTIFY_OFF_MULTIPLIER.to_le_bytes());
    let mut shm = virtio_cap(
        24,
        cfg_type::SHARED_MEMORY,
        BAR2,
        virtio::WINDOW_SHMID,
        0,
        window_size as u32,
    );
    shm.extend_from_slice(&0u32.to_le_bytes());
    shm.extend_from_slice(&((window_size >> 32) as u32).to_le_bytes());
    [
        virtio_cap(
            16,
            cfg_type::COMMON,
            BAR0,
            0,
            virtio::COMMON_CFG,
            virtio::COMMON_CFG_LEN,
        ),
        notify,
        virtio_cap(16, cfg_type::ISR, BAR0, 0, virtio::ISR, virtio::ISR_LEN),
        virtio_cap(16, cfg_type::DEVICE, BAR0, 0, virtio::DEVICE_CFG, dev_len),
        shm,
    ]
    .into_iter()
    .map(|body| Capability {
        id: CAP_ID_VENDOR,
        body,
    })
    .collect()
}

/// The vGPU's configuration space for a window of `window_size` bytes: identity, BARs (not yet
/// placed), capabilities, and interrupt pin INTA when `intx`.
pub fn config_space(window_size: u64, intx: bool) -> Result<PciConfig, PciError> {
    let mut config = PciConfig::new(&IDENTITY);
    for bar in bars(window_size) {
        config.add_bar(BarSpec {
            index: bar.index,
            size: bar.size,
            kind: if bar.is_64bit {
                BarKind::Memory64
            } else {
                BarKind::Memory32
            },
            prefetchable: bar.prefetchable,
        })?;
    }
    for cap in capabilities(window_size) {
        config.add_capability(cap.id, &cap.body)?;
    }
    if intx {
        config.set_interrupt_pin(1);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_lengths_match_their_cap_len_field() {
        for c in capabilities(64 << 20) {
            assert_eq!(c.body[0] as usize, c.body.len() + 2);
        }
    }

    #[test]
    fn window_capability_carries_the_64_bit_size() {
        let caps = capabilities(8 << 30);
        let shm = &caps[4].body;
        assert_eq!(shm[1], cfg_type::SHARED_MEMORY);
        assert_eq!(shm[2], BAR2);
        let lo = u32::from_le_bytes(shm[10..14].try_into().unwrap());
        let hi = u32::from_le_bytes(shm[18..22].try_into().unwrap());
        assert_eq!(u64::from(hi) << 32 | u64::from(lo), 8 << 30);
    }

    #[test]
    fn identity_is_not_a_display_class() {
        assert_ne!(IDENTITY.class_code, 0x03);
        let b = bars(64 << 20);
        assert!(b[1].is_64bit && b[1].backing == BarBacking::HostMemory);
    }
}
