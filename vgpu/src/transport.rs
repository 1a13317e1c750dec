//! The virtio-pci modern transport registers: the common configuration structure (feature
//! negotiation, device status, queue configuration) and the ISR byte.
//!
//! This module only keeps register state. It reports what the device must do (reset, turn the
//! queue on) as [`TransportEffects`]; the queue itself lives in [`crate::escape_queue`].

use crate::protocol::virtio::{self, common, status};

/// "No MSI-X vector": the device has no MSI-X capability.
pub const NO_VECTOR: u16 = 0xffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    DeviceFeatureSelect,
    DeviceFeature,
    DriverFeatureSelect,
    DriverFeature,
    ConfigMsixVector,
    NumQueues,
    DeviceStatus,
    ConfigGeneration,
    QueueSelect,
    QueueSize,
    QueueMsixVector,
    QueueEnable,
    QueueNotifyOff,
    QueueDesc,
    QueueDriver,
    QueueDevice,
    QueueNotifyData,
    QueueReset,
}

const FIELDS: &[(u32, u32, Field)] = &[
    (common::DEVICE_FEATURE_SELECT, 4, Field::DeviceFeatureSelect),
    (common::DEVICE_FEATURE, 4, Field::DeviceFeature),
    (common::DRIVER_FEATURE_SELECT, 4, Field::DriverFeatureSelect),
    (common::DRIVER_FEATURE, 4, Field::DriverFeature),
    (common::CONFIG_MSIX_VECTOR, 2, Field::ConfigMsixVector),
    (common::NUM_QUEUES, 2, Field::NumQueues),
    (common::DEVICE_STATUS, 1, Field::DeviceStatus),
    (common::CONFIG_GENERATION, 1, Field::ConfigGeneration),
    (common::QUEUE_SELECT, 2, Field::QueueSelect),
    (common::QUEUE_SIZE, 2, Field::QueueSize),
    (common::QUEUE_MSIX_VECTOR, 2, Field::QueueMsixVector),
    (common::QUEUE_ENABLE, 2, Field::QueueEnable),
    (common::QUEUE_NOTIFY_OFF, 2, Field::QueueNotifyOff),
    (common::QUEUE_DESC, 8, Field::QueueDesc),
    (common::QUEUE_DRIVER, 8, Field::QueueDriver),
    (common::QUEUE_DEVICE, 8, Field::QueueDevice),
    (common::QUEUE_NOTIFY_DATA, 2, Field::QueueNotifyData),
    (common::QUEUE_RESET, 2, Field::QueueReset),
];

/// The escape queue's configuration as the driver programmed it. Addresses are window offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Number of entries.
    pub size: u16,
    /// Descriptor table.
    pub desc: u64,
    /// Available ring.
    pub driver: u64,
    /// Used ring.
    pub device: u64,
}

/// What a common-config write asks of the device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportEffects {
    /// The driver wrote 0 to `device_status`: reset the device.
    pub reset: bool,
    /// The driver wrote 1 to `queue_enable`: validate and start the queue.
    pub enable_queue: bool,
}

/// Register state of the virtio-pci common configuration.
#[derive(Debug, Clone)]
pub struct Transport {
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    queue: QueueConfig,
    queue_enabled: bool,
}

impl Default for Transport {
    fn default() -> Self {
        Self::new()
    }
}

impl Transport {
    /// The state after reset.
    pub fn new() -> Self {
        Self {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queue: QueueConfig {
                size: virtio::QUEUE_MAX_SIZE,
                desc: 0,
                driver: 0,
                device: 0,
            },
            queue_enabled: false,
        }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// `device_status`.
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Whether the driver set `DRIVER_OK` (and the device did not set `NEEDS_RESET`).
    pub fn driver_ok(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    /// Marks the device as needing a reset (the queue broke).
    pub fn set_needs_reset(&mut self) {
        self.status |= status::NEEDS_RESET;
        self.config_generation = self.config_generation.wrapping_add(1);
    }

    /// The queue configuration the driver programmed.
    pub fn queue_config(&self) -> QueueConfig {
        self.queue
    }

    /// Whether the queue is enabled.
    pub fn queue_enabled(&self) -> bool {
        self.queue_enabled
    }

    /// The device accepted the queue: `queue_enable` now reads 1.
    pub fn set_queue_enabled(&mut self, enabled: bool) {
        self.queue_enabled = enabled;
    }

    fn selected(&self) -> bool {
        self.queue_select < virtio::NUM_QUEUES
    }

    fn field_value(&self, f: Field) -> u64 {
        let sel = self.selected();
        match f {
            Field::DeviceFeatureSelect => u64::from(self.device_feature_select),
            Field::DeviceFeature => match self.device_feature_select {
                0 => virtio::DEVICE_FEATURES & 0xffff_ffff,
                1 => virtio::DEVICE_FEATURES >> 32,
                _ => 0,
            },
            Field::DriverFeatureSelect => u64::from(self.driver_feature_select),
            Field::DriverFeature => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            Field::ConfigMsixVector | Field::QueueMsixVector => u64::from(NO_VECTOR),
            Field::NumQueues => u64::from(virtio::NUM_QUEUES),
            Field::DeviceStatus => u64::from(self.status),
            Field::ConfigGeneration => u64::from(self.config_generation),
            Field::QueueSelect => u64::from(self.queue_select),
            Field::QueueSize if sel => u64::from(self.queue.size),
            Field::QueueEnable if sel => u64::from(self.queue_enabled),
            Field::QueueDesc if sel => self.queue.desc,
            Field::QueueDriver if sel => self.queue.driver,
            Field::QueueDevice if sel => self.queue.device,
            Field::QueueNotifyOff | Field::QueueNotifyData | Field::QueueReset => 0,
            Field::QueueSize
            | Field::QueueEnable
            | Field::QueueDesc
            | Field::QueueDriver
            | Field::QueueDevice => 0,
        }
    }

    fn image(&self) -> [u8; virtio::COMMON_CFG_LEN as usize] {
        let mut img = [0u8; virtio::COMMON_CFG_LEN as usize];
        for &(off, size, f) in FIELDS {
            let v = self.field_value(f).to_le_bytes();
            img[off as usize..(off + size) as usize].copy_from_slice(&v[..size as usize]);
        }
        img
    }

    /// A driver read of `data.len()` bytes at `offset` in the common configuration.
    pub fn read(&self, offset: u32, data: &mut [u8]) {
        let img = self.image();
        for (i, b) in data.iter_mut().enumerate() {
            *b = img.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    /// A driver write of `data` at `offset` in the common configuration.
    pub fn write(&mut self, offset: u32, data: &[u8]) -> TransportEffects {
        let mut img = self.image();
        let start = offset as usize;
        let end = start.saturating_add(data.len()).min(img.len());
        if start >= end {
            return TransportEffects::default();
        }
        img[start..end].copy_from_slice(&data[..end - start]);
        let mut effects = TransportEffects::default();
        for &(off, size, f) in FIELDS {
            let (fs, fe) = (off as usize, (off + size) as usize);
            if fe <= start || fs >= end {
                continue;
            }
            let mut v = [0u8; 8];
            v[..size as usize].copy_from_slice(&img[fs..fe]);
            self.apply(f, u64::from_le_bytes(v), &mut effects);
        }
        effects
    }

    fn apply(&mut self, f: Field, v: u64, effects: &mut TransportEffects) {
        let features_locked = self.status & status::FEATURES_OK != 0;
        let queue_writable = self.selected() && !self.queue_enabled;
        match f {
            Field::DeviceFeatureSelect => self.device_feature_select = v as u32,
            Field::DriverFeatureSelect => self.driver_feature_select = v as u32,
            Field::DriverFeature if !features_locked => match self.driver_feature_select {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | (v & 0xffff_ffff)
                }
                1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (v << 32),
                _ => {}
            },
            Field::DeviceStatus => self.write_status(v as u8, effects),
            Field::QueueSelect => self.queue_select = v as u16,
            Field::QueueSize if queue_writable => self.queue.size = v as u16,
            Field::QueueDesc if queue_writable => self.queue.desc = v,
            Field::QueueDriver if queue_writable => self.queue.driver = v,
            Field::QueueDevice if queue_writable => self.queue.device = v,
            Field::QueueEnable if queue_writable && v == 1 => effects.enable_queue = true,
            _ => {}
        }
    }

    fn write_status(&mut self, v: u8, effects: &mut TransportEffects) {
        if v == 0 {
            effects.reset = true;
            return;
        }
        let mut new = v | (self.status & status::NEEDS_RESET);
        let negotiating = new & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0;
        if negotiating {
            let valid = self.driver_features & !virtio::DEVICE_FEATURES == 0
                && self.driver_features & virtio::F_VERSION_1 != 0;
            if !valid {
                new &= !status::FEATURES_OK;
            }
        }
        // DRIVER_OK without FEATURES_OK is a driver error; the queue stays off.
        if new & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            new &= !status::DRIVER_OK;
        }
        self.status = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w32(t: &mut Transport, off: u32, v: u32) -> TransportEffects {
        t.write(off, &v.to_le_bytes())
    }

    fn r32(t: &Transport, off: u32) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn negotiate(t: &mut Transport, features: u64) {
        t.write(
            common::DEVICE_STATUS,
            &[status::ACKNOWLEDGE | status::DRIVER],
        );
        w32(t, common::DRIVER_FEATURE_SELECT, 0);
        w32(t, common::DRIVER_FEATURE, features as u32);
        w32(t, common::DRIVER_FEATURE_SELECT, 1);
        w32(t, common::DRIVER_FEATURE, (features >> 32) as u32);
        t.write(
            common::DEVICE_STATUS,
            &[status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK],
        );
    }

    #[test]
    fn offers_version_1_only() {
        let mut t = Transport::new();
        w32(&mut t, common::DEVICE_FEATURE_SELECT, 0);
        assert_eq!(r32(&t, common::DEVICE_FEATURE), 0);
        w32(&mut t, common::DEVICE_FEATURE_SELECT, 1);
        assert_eq!(r32(&t, common::DEVICE_FEATURE), 1);
        w32(&mut t, common::DEVICE_FEATURE_SELECT, 2);
        assert_eq!(r32(&t, common::DEVICE_FEATURE), 0);
    }

    #[test]
    fn features_ok_needs_version_1_and_nothing_unknown() {
        let mut t = Transport::new();
        negotiate(&mut t, virtio::F_VERSION_1);
        assert_ne!(t.status() & status::FEATURES_OK, 0);

        let mut t = Transport::new();
        negotiate(&mut t, 0);
        assert_eq!(t.status() & status::FEATURES_OK, 0);

        let mut t = Transport::new();
        negotiate(&mut t, virtio::F_VERSION_1 | 1 << 28);
        assert_eq!(t.status() & status::FEATURES_OK, 0);
    }

    #[test]
    fn queue_registers_take_split_and_whole_writes() {
        let mut t = Transport::new();
        w32(&mut t, common::QUEUE_DESC, 0x1000);
        w32(&mut t, common::QUEUE_DESC + 4, 0x2);
        t.write(common::QUEUE_DRIVER, &0x3000u64.to_le_bytes());
        t.write(common::QUEUE_SIZE, &64u16.to_le_bytes());
        let q = t.queue_config();
        assert_eq!((q.desc, q.driver, q.size), (0x2_0000_1000, 0x3000, 64));
        let fx = t.write(common::QUEUE_ENABLE, &1u16.to_le_bytes());
        assert!(fx.enable_queue);
    }

    #[test]
    fn unselected_queue_reads_zero_and_ignores_writes() {
        let mut t = Transport::new();
        t.write(common::QUEUE_SELECT, &1u16.to_le_bytes());
        let mut b = [0u8; 2];
        t.read(common::QUEUE_SIZE, &mut b);
        assert_eq!(u16::from_le_bytes(b), 0);
        assert!(
            !t.write(common::QUEUE_ENABLE, &1u16.to_le_bytes())
                .enable_queue
        );
        t.write(common::QUEUE_SELECT, &0u16.to_le_bytes());
        t.read(common::QUEUE_SIZE, &mut b);
        assert_eq!(u16::from_le_bytes(b), virtio::QUEUE_MAX_SIZE);
    }

    #[test]
    fn status_zero_requests_reset_and_reads_outside_are_zero() {
        let mut t = Transport::new();
        assert!(t.write(common::DEVICE_STATUS, &[0]).reset);
        let mut b = [0xffu8; 8];
        t.read(0x3c, &mut b);
        assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(t.write(0x40, &[1, 2, 3, 4]), TransportEffects::default());
    }

    #[test]
    fn driver_ok_without_features_ok_is_ignored() {
        let mut t = Transport::new();
        t.write(
            common::DEVICE_STATUS,
            &[status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK],
        );
        assert!(!t.driver_ok());
    }
}
