//! The virtio-pci modern transport (virtio 1.2, 4.1) for this VMM's own virtio devices: one
//! trapped BAR holding the common configuration, the ISR byte, the device configuration and
//! the notification registers, and a level-triggered INTx pin (no MSI-X).
//!
//! The device behind it implements [`VirtioDevice`]; it never sees a register. A notification
//! write runs the queue's requests synchronously on the vCPU that wrote it, and a queue that
//! put entries in its used ring raises ISR bit 0 and the pin; reading the ISR byte clears it and
//! lowers the pin.

use std::sync::Arc;

use pci::{BarKind, BarSpec, PciConfig, PciHeader};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_F_VERSION_1,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::intx::Intx;
use crate::pci::PciFunction;

/// PCI vendor id of virtio devices.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern virtio PCI device ids are this plus the virtio device id.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;

/// Size of the transport's BAR (BAR 0, 32-bit, trapped).
pub const BAR_SIZE: u64 = 0x1000;
/// Offset of the common configuration in the BAR.
pub const COMMON_CFG: u64 = 0x000;
/// Length of the common configuration (through `queue_device`).
pub const COMMON_CFG_LEN: u64 = 0x38;
/// Offset of the ISR status byte.
pub const ISR_CFG: u64 = 0x100;
/// Offset of the device-specific configuration.
pub const DEVICE_CFG: u64 = 0x200;
/// Most bytes of device-specific configuration.
pub const DEVICE_CFG_LEN: u64 = 0x100;
/// Offset of the notification registers (one per queue, `NOTIFY_MULTIPLIER` apart).
pub const NOTIFY_CFG: u64 = 0x300;
/// `notify_off_multiplier`: queue `i` is notified at `NOTIFY_CFG + i * 4`.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// The "no vector" answer to MSI-X vector registers.
const NO_VECTOR: u16 = 0xffff;
/// ISR bit: a queue has new used entries.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit: the configuration (or the device status) changed.
pub const ISR_CONFIG: u8 = 2;

/// `virtio_pci_cap.cfg_type` values (virtio 1.2, 4.1.4); `virtio-bindings` 0.2 has no
/// `virtio_pci.h`.
mod cfg_type {
    pub const COMMON: u8 = 1;
    pub const NOTIFY: u8 = 2;
    pub const ISR: u8 = 3;
    pub const DEVICE: u8 = 4;
}

/// PCI capability id of vendor-specific capabilities.
const CAP_ID_VENDOR: u8 = 0x09;

/// A virtio device model, as the transport drives it.
///
/// Lifecycle: the transport offers [`VirtioDevice::features`] (plus `VIRTIO_F_VERSION_1`),
/// accepts the driver's subset at `FEATURES_OK`, builds each queue the driver enables, and
/// calls [`VirtioDevice::process_queue`] for every notification while `DRIVER_OK` is set. A
/// status write of 0 drops the queues and calls [`VirtioDevice::reset`].
pub trait VirtioDevice: Send {
    /// The virtio device id (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// Feature bits the device offers (the transport adds `VIRTIO_F_VERSION_1`).
    fn features(&self) -> u64;
    /// Most entries of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// PCI class, subclass and programming interface.
    fn pci_class(&self) -> (u8, u8, u8);
    /// Reads the device configuration at `offset` (bytes past its end read 0).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the device configuration (ignored by default: read-only configuration).
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// Serves the available chains of queue `index`; returns whether used entries were added.
    /// `Err` means the queue is unusable (an impossible available index) and the device needs
    /// a reset.
    fn process_queue(
        &mut self,
        index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, QueueBroken>;
    /// Forgets all guest-driven state.
    fn reset(&mut self) {}
}

/// The driver made a queue unusable; the device sets `NEEDS_RESET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the driver broke the virtqueue; the device needs a reset")]
pub struct QueueBroken;

/// A queue's registers as the driver programs them, and the live queue once enabled.
#[derive(Debug)]
struct QueueSlot {
    max_size: u16,
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    live: Option<Queue>,
}

impl QueueSlot {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            desc: 0,
            driver: 0,
            device: 0,
            live: None,
        }
    }

    /// The virtio-queue `Queue` for the programmed registers, if they are valid in `mem`.
    fn build(&self, mem: &GuestMemoryMmap) -> Option<Queue> {
        // virtio-queue treats an available ring at 0 as "not configured".
        if self.driver == 0 {
            return None;
        }
        let mut q = Queue::new(self.max_size).ok()?;
        q.try_set_size(self.size).ok()?;
        q.try_set_desc_table_address(GuestAddress(self.desc)).ok()?;
        q.try_set_avail_ring_address(GuestAddress(self.driver))
            .ok()?;
        q.try_set_used_ring_address(GuestAddress(self.device))
            .ok()?;
        q.set_ready(true);
        q.is_valid(mem).then_some(q)
    }
}

/// A virtio device on the PCI bus through the modern transport.
pub struct VirtioPci<D: VirtioDevice> {
    config: PciConfig,
    device: D,
    mem: GuestMemoryMmap,
    intx: Arc<Intx>,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    config_generation: u8,
    queue_select: u16,
    queues: Vec<QueueSlot>,
    isr: u8,
}

impl<D: VirtioDevice> std::fmt::Debug for VirtioPci<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioPci")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("isr", &self.isr)
            .finish_non_exhaustive()
    }
}

fn virtio_cap(cfg: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = (16 + extra.len()) as u8;
    let mut b = vec![cap_len, cfg, 0, 0, 0, 0];
    b.extend_from_slice(&(offset as u32).to_le_bytes());
    b.extend_from_slice(&(length as u32).to_le_bytes());
    b.extend_from_slice(extra);
    b
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// Wraps `device` with its configuration space (BAR 0 and the four virtio capabilities,
    /// interrupt pin A) over guest memory `mem`, its line driven through `intx`.
    pub fn new(device: D, mem: GuestMemoryMmap, intx: Arc<Intx>) -> Result<Self, pci::PciError> {
        let (class_code, subclass, prog_if) = device.pci_class();
        let id = u16::try_from(device.device_type()).unwrap_or(0);
        let mut config = PciConfig::new(&PciHeader {
            vendor_id: VIRTIO_PCI_VENDOR,
            device_id: VIRTIO_PCI_DEVICE_BASE + id,
            class_code,
            subclass,
            prog_if,
            // Revision 1: a modern-only device (virtio 1.2, 4.1.2.1).
            revision: 1,
            subsystem_vendor_id: VIRTIO_PCI_VENDOR,
            subsystem_id: 0x40,
        });
        config.add_bar(BarSpec {
            index: 0,
            size: BAR_SIZE,
            kind: BarKind::Memory32,
            prefetchable: false,
        })?;
        let queues = device.queue_max_sizes().len() as u64;
        for body in [
            virtio_cap(cfg_type::COMMON, COMMON_CFG, COMMON_CFG_LEN, &[]),
            virtio_cap(
                cfg_type::NOTIFY,
                NOTIFY_CFG,
                queues * u64::from(NOTIFY_MULTIPLIER),
                &NOTIFY_MULTIPLIER.to_le_bytes(),
            ),
            virtio_cap(cfg_type::ISR, ISR_CFG, 1, &[]),
            virtio_cap(cfg_type::DEVICE, DEVICE_CFG, DEVICE_CFG_LEN, &[]),
        ] {
            config.add_capability(CAP_ID_VENDOR, &body)?;
        }
        config.set_interrupt_pin(1);
        let queues = device
            .queue_max_sizes()
            .iter()
            .map(|&m| QueueSlot::new(m))
            .collect();
        Ok(Self {
            config,
            device,
            mem,
            intx,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            queue_select: 0,
            queues,
            isr: 0,
        })
    }

    /// The device model.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device status register.
    pub fn status(&self) -> u8 {
        self.status
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | 1 << VIRTIO_F_VERSION_1
    }

    fn selected(&self) -> Option<&QueueSlot> {
        self.queues.get(usize::from(self.queue_select))
    }

    fn reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        for q in &mut self.queues {
            *q = QueueSlot::new(q.max_size);
        }
        self.isr = 0;
        self.intx.set_device_level(false);
        self.device.reset();
    }

    /// The value of the common-configuration field at `offset` (0 for unknown offsets).
    fn common_read(&self, offset: u64) -> u64 {
        let q = self.selected();
        let qf = |f: fn(&QueueSlot) -> u64| q.map_or(0, f);
        match offset {
            0x00 => u64::from(self.device_feature_select),
            0x04 => match self.device_feature_select {
                0 => self.offered_features() & 0xffff_ffff,
                1 => self.offered_features() >> 32,
                _ => 0,
            },
            0x08 => u64::from(self.driver_feature_select),
            0x0c => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            0x10 | 0x1a => u64::from(NO_VECTOR),
            0x12 => self.queues.len() as u64,
            0x14 => u64::from(self.status),
            0x15 => u64::from(self.config_generation),
            0x16 => u64::from(self.queue_select),
            0x18 => qf(|q| u64::from(q.size)),
            0x1c => qf(|q| u64::from(q.live.is_some())),
            // queue_notify_off: queue i notifies at i * multiplier.
            0x1e => q.map_or(0, |_| u64::from(self.queue_select)),
            0x20 => qf(|q| q.desc),
            0x24 => qf(|q| q.desc >> 32),
            0x28 => qf(|q| q.driver),
            0x2c => qf(|q| q.driver >> 32),
            0x30 => qf(|q| q.device),
            0x34 => qf(|q| q.device >> 32),
            _ => 0,
        }
    }

    fn common_write(&mut self, offset: u64, v: u64) {
        let features_locked = self.status & VIRTIO_CONFIG_S_FEATURES_OK as u8 != 0;
        let select = usize::from(self.queue_select);
        let queue = self.queues.get_mut(select).filter(|q| q.live.is_none());
        let set_lo = |r: &mut u64| *r = (*r & !0xffff_ffff) | (v & 0xffff_ffff);
        let set_hi = |r: &mut u64| *r = (*r & 0xffff_ffff) | (v << 32);
        match (offset, queue) {
            (0x00, _) => self.device_feature_select = v as u32,
            (0x08, _) => self.driver_feature_select = v as u32,
            (0x0c, _) if !features_locked => match self.driver_feature_select {
                0 => set_lo(&mut self.driver_features),
                1 => set_hi(&mut self.driver_features),
                _ => {}
            },
            (0x14, _) => self.write_status(v as u8),
            (0x16, _) => self.queue_select = v as u16,
            (0x18, Some(q)) => q.size = v as u16,
            (0x1c, Some(_)) if v == 1 => self.enable_queue(select),
            (0x20, Some(q)) => set_lo(&mut q.desc),
            (0x24, Some(q)) => set_hi(&mut q.desc),
            (0x28, Some(q)) => set_lo(&mut q.driver),
            (0x2c, Some(q)) => set_hi(&mut q.driver),
            (0x30, Some(q)) => set_lo(&mut q.device),
            (0x34, Some(q)) => set_hi(&mut q.device),
            _ => {}
        }
    }

    fn enable_queue(&mut self, index: usize) {
        let Some(slot) = self.queues.get_mut(index) else {
            return;
        };
        match slot.build(&self.mem) {
            Some(q) => slot.live = Some(q),
            None => {
                tracing::warn!(
                    index,
                    "virtio: the driver enabled an invalid queue; refused"
                )
            }
        }
    }

    fn write_status(&mut self, v: u8) {
        if v == 0 {
            self.reset();
            return;
        }
        let features_ok = VIRTIO_CONFIG_S_FEATURES_OK as u8;
        let driver_ok = VIRTIO_CONFIG_S_DRIVER_OK as u8;
        let mut new = v | (self.status & VIRTIO_CONFIG_S_NEEDS_RESET as u8);
        if new & features_ok != 0 && self.status & features_ok == 0 {
            let valid = self.driver_features & !self.offered_features() == 0
                && self.driver_features & 1 << VIRTIO_F_VERSION_1 != 0;
            if !valid {
                new &= !features_ok;
            }
        }
        if new & driver_ok != 0 && new & features_ok == 0 {
            new &= !driver_ok;
        }
        self.status = new;
    }

    fn driver_ok(&self) -> bool {
        let ok = (VIRTIO_CONFIG_S_ACKNOWLEDGE
            | VIRTIO_CONFIG_S_DRIVER
            | VIRTIO_CONFIG_S_FEATURES_OK
            | VIRTIO_CONFIG_S_DRIVER_OK) as u8;
        self.status & ok == ok && self.status & VIRTIO_CONFIG_S_NEEDS_RESET as u8 == 0
    }

    /// The driver notified queue `index`: serve it and interrupt if the driver wants it.
    pub fn notify(&mut self, index: usize) {
        if !self.driver_ok() {
            return;
        }
        let Some(queue) = self.queues.get_mut(index).and_then(|q| q.live.as_mut()) else {
            return;
        };
        match self.device.process_queue(index, queue, &self.mem) {
            Ok(true) => {
                if queue.needs_notification(&self.mem).unwrap_or(true) {
                    self.isr |= ISR_QUEUE;
                    self.intx.set_device_level(true);
                }
            }
            Ok(false) => {}
            Err(QueueBroken) => {
                tracing::warn!(index, "virtio: queue broken by the driver; NEEDS_RESET");
                self.status |= VIRTIO_CONFIG_S_NEEDS_RESET as u8;
                self.config_generation = self.config_generation.wrapping_add(1);
                self.isr |= ISR_CONFIG;
                self.intx.set_device_level(true);
            }
        }
    }
}

/// Reads `data.len()` little-endian bytes of `value` starting at byte `shift`.
fn put_le(value: u64, shift: u64, data: &mut [u8]) {
    let bytes = value.to_le_bytes();
    for (i, b) in data.iter_mut().enumerate() {
        *b = bytes.get(shift as usize + i).copied().unwrap_or(0);
    }
}

fn get_le(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = data.len().min(8);
    b[..n].copy_from_slice(&data[..n]);
    u64::from_le_bytes(b)
}

/// Start offset of the common-configuration field that holds byte `offset`.
fn common_field_start(offset: u64) -> u64 {
    match offset {
        0x00..=0x0f => offset & !3,
        0x10..=0x13 | 0x16..=0x1f => offset & !1,
        0x14 | 0x15 => offset,
        _ => offset & !3,
    }
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&self, reg: usize) -> u32 {
        let v = self.config.read_dword(reg);
        if reg == PciConfig::COMMAND_STATUS && self.intx.device_level() {
            v | PciConfig::STATUS_INTERRUPT
        } else {
            v
        }
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        if reg == PciConfig::COMMAND_STATUS {
            self.intx.set_disabled(self.config.intx_disabled());
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != 0 {
            return;
        }
        match offset {
            o if o < COMMON_CFG + COMMON_CFG_LEN => {
                let start = common_field_start(o);
                put_le(self.common_read(start), o - start, data);
            }
            ISR_CFG => {
                data[0] = std::mem::take(&mut self.isr);
                self.intx.set_device_level(false);
            }
            o if (DEVICE_CFG..DEVICE_CFG + DEVICE_CFG_LEN).contains(&o) => {
                self.device.read_config(o - DEVICE_CFG, data)
            }
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if bar != 0 {
            return;
        }
        let notify_len = self.queues.len() as u64 * u64::from(NOTIFY_MULTIPLIER);
        match offset {
            // Fields are written whole, as the spec requires of drivers; a write that does not
            // start a field is ignored.
            o if o < COMMON_CFG + COMMON_CFG_LEN && common_field_start(o) == o => {
                self.common_write(o, get_le(data))
            }
            o if o < COMMON_CFG + COMMON_CFG_LEN => {}
            o if (DEVICE_CFG..DEVICE_CFG + DEVICE_CFG_LEN).contains(&o) => {
                self.device.write_config(o - DEVICE_CFG, data)
            }
            o if (NOTIFY_CFG..NOTIFY_CFG + notify_len).contains(&o) => {
                self.notify(((o - NOTIFY_CFG) / u64::from(NOTIFY_MULTIPLIER)) as usize)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::intx::IrqLevel;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use virtio_queue::QueueOwnedT;
    use vm_memory::GuestAddress;

    /// Records the last level driven.
    struct Line(Arc<AtomicBool>);
    impl IrqLevel for Line {
        fn set_level(&self, _gsi: u32, level: bool) {
            self.0.store(level, Ordering::SeqCst);
        }
    }

    /// A device that completes every chain with used length 0.
    struct Echo(Arc<AtomicU32>);
    impl VirtioDevice for Echo {
        fn device_type(&self) -> u32 {
            2
        }
        fn features(&self) -> u64 {
            1 << 9
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16]
        }
        fn pci_class(&self) -> (u8, u8, u8) {
            (1, 0, 0)
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            put_le(0x1122_3344, offset, data);
        }
        fn process_queue(
            &mut self,
            _index: usize,
            queue: &mut Queue,
            mem: &GuestMemoryMmap,
        ) -> Result<bool, QueueBroken> {
            let mut used = false;
            let chains: Vec<_> = queue.iter(mem).map_err(|_| QueueBroken)?.collect();
            for c in chains {
                queue.add_used(mem, c.head_index(), 0).unwrap();
                used = true;
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            Ok(used)
        }
    }

    fn w(d: &mut VirtioPci<Echo>, off: u64, v: u64, len: usize) {
        d.bar_write(0, off, &v.to_le_bytes()[..len]);
    }
    fn r(d: &mut VirtioPci<Echo>, off: u64, len: usize) -> u64 {
        let mut b = vec![0u8; len];
        d.bar_read(0, off, &mut b);
        get_le(&b)
    }

    fn device() -> (VirtioPci<Echo>, Arc<AtomicBool>, Arc<AtomicU32>) {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let line = Arc::new(AtomicBool::new(false));
        let intx = Arc::new(Intx::new(Box::new(Line(line.clone())), 16));
        let served = Arc::new(AtomicU32::new(0));
        let d = VirtioPci::new(Echo(served.clone()), mem, intx).unwrap();
        (d, line, served)
    }

    #[test]
    fn negotiates_then_serves_a_notify_with_an_interrupt() {
        let (mut d, line, served) = device();
        w(&mut d, 0x00, 1, 4);
        assert_eq!(r(&mut d, 0x04, 4), 1, "VERSION_1 offered");
        w(&mut d, 0x14, 3, 1);
        w(&mut d, 0x08, 0, 4);
        w(&mut d, 0x0c, 1 << 9, 4);
        w(&mut d, 0x08, 1, 4);
        w(&mut d, 0x0c, 1, 4);
        w(&mut d, 0x14, 0xb, 1);
        assert_eq!(r(&mut d, 0x14, 1), 0xb, "FEATURES_OK kept");
        assert_eq!(r(&mut d, 0x12, 2), 1);
        assert_eq!(r(&mut d, 0x18, 2), 16);
        // Rings at 0x1000 (desc), 0x2000 (avail), 0x3000 (used).
        w(&mut d, 0x20, 0x1000, 4);
        w(&mut d, 0x24, 0, 4);
        w(&mut d, 0x28, 0x2000, 4);
        w(&mut d, 0x30, 0x3000, 4);
        w(&mut d, 0x1c, 1, 2);
        assert_eq!(r(&mut d, 0x1c, 2), 1);
        w(&mut d, 0x14, 0xf, 1);
        // One chain of one descriptor, made available.
        let mem = d.mem.clone();
        use vm_memory::Bytes;
        mem.write_obj(0x8000u64, GuestAddress(0x1000)).unwrap();
        mem.write_obj(16u32, GuestAddress(0x1008)).unwrap();
        mem.write_obj(0u16, GuestAddress(0x2004)).unwrap();
        mem.write_obj(1u16, GuestAddress(0x2002)).unwrap();
        w(&mut d, NOTIFY_CFG, 0, 2);
        assert_eq!(served.load(Ordering::SeqCst), 1);
        assert!(line.load(Ordering::SeqCst), "interrupt raised");
        assert_ne!(
            d.read_config(PciConfig::COMMAND_STATUS) & PciConfig::STATUS_INTERRUPT,
            0
        );
        assert_eq!(r(&mut d, ISR_CFG, 1), u64::from(ISR_QUEUE));
        assert!(
            !line.load(Ordering::SeqCst),
            "reading the ISR lowers the line"
        );
        assert_eq!(r(&mut d, ISR_CFG, 1), 0);
        assert_eq!(r(&mut d, DEVICE_CFG, 4), 0x1122_3344);
        // Reset drops the queue.
        w(&mut d, 0x14, 0, 1);
        assert_eq!((r(&mut d, 0x14, 1), r(&mut d, 0x1c, 2)), (0, 0));
    }

    #[test]
    fn bad_features_queues_and_offsets_are_refused_quietly() {
        let (mut d, _, served) = device();
        w(&mut d, 0x14, 3, 1);
        // No VERSION_1: FEATURES_OK does not stick, DRIVER_OK neither.
        w(&mut d, 0x0c, 1 << 9, 4);
        w(&mut d, 0x14, 0xb, 1);
        assert_eq!(r(&mut d, 0x14, 1), 3);
        w(&mut d, 0x14, 0xf, 1);
        assert_eq!(r(&mut d, 0x14, 1) & 4, 0);
        // A queue outside guest memory is not enabled.
        w(&mut d, 0x20, 0xffff_0000, 4);
        w(&mut d, 0x1c, 1, 2);
        assert_eq!(r(&mut d, 0x1c, 2), 0);
        // A non-existent queue reads 0 and takes nothing.
        w(&mut d, 0x16, 5, 2);
        assert_eq!(r(&mut d, 0x18, 2), 0);
        w(&mut d, 0x1c, 1, 2);
        // Notifies before DRIVER_OK, and past the registers, do nothing.
        w(&mut d, NOTIFY_CFG, 0, 2);
        w(&mut d, NOTIFY_CFG + 4, 0, 2);
        w(&mut d, 0xfff, 0, 1);
        d.bar_write(1, 0, &[1]);
        assert_eq!(served.load(Ordering::SeqCst), 0);
        assert_eq!(r(&mut d, 0x800, 8), 0);
    }

    #[test]
    fn capabilities_describe_the_bar_layout() {
        let (d, _, _) = device();
        let id = d.read_config(0);
        assert_eq!(id, u32::from(VIRTIO_PCI_DEVICE_BASE + 2) << 16 | 0x1af4);
        let mut ptr = (d.read_config(0x34 / 4) & 0xff) as usize;
        let mut seen = Vec::new();
        while ptr != 0 {
            let dw = d.read_config(ptr / 4);
            assert_eq!(dw & 0xff, u32::from(CAP_ID_VENDOR));
            let cfg = (dw >> 24) as u8;
            let offset = d.read_config(ptr / 4 + 2);
            seen.push((cfg, offset));
            ptr = ((dw >> 8) & 0xff) as usize;
        }
        assert_eq!(
            seen,
            [
                (cfg_type::COMMON, COMMON_CFG as u32),
                (cfg_type::NOTIFY, NOTIFY_CFG as u32),
                (cfg_type::ISR, ISR_CFG as u32),
                (cfg_type::DEVICE, DEVICE_CFG as u32)
            ]
        );
    }
}
