//! The vGPU (`vgpu::VgpuDevice`) as a PCI function of this VMM: `--vgpu type=..,gfid=..`.
//!
//! * Config space: built from the device's identity, BAR declarations and capabilities.
//! * BAR0 (trapped): every access is a KVM MMIO exit that the PCI bus routes here and this
//!   adapter forwards to the device (registers, doorbell, virtio structures).
//! * BAR2 (the window): the device's memfd pages become a KVM memory slot at BAR2's guest
//!   address, so guest accesses never exit. When the guest moves BAR2 or turns memory decoding
//!   off, the slot is removed and (if decoding) added at the new address ([`WindowSlot`]); a
//!   BAR programmed outside the PCI windows gets no slot (it cannot shadow RAM or the APICs).
//! * Interrupts: INTx, pin A, level-triggered, through `KVM_IRQ_LINE` on the GSI the DSDT's
//!   `_PRT` gives the slot ([`crate::acpi::pci_intx_gsi`]). The device only changes its line
//!   inside guest MMIO handling, so no thread or resample eventfd is needed: the line is raised
//!   and lowered synchronously. Command.INTx_Disable masks it and Status.Interrupt shows it
//!   (PCI 2.3, which `uio_pci_generic` needs). Polling (`intr=poll`, the default) leaves the pin
//!   at 0: the guest driver polls the used ring and its semaphores.
//! * The RM core runs in-process over the sim GPU on its real-time clock (`vgpu::SimHost`).

use std::fmt::Write as _;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;
use mdev::sim_host::SimHost;
use vgpu::pci::BarBacking;
use vgpu::protocol::{BAR2, DEFAULT_WINDOW_SIZE, MAX_WINDOW_SIZE, MIN_WINDOW_SIZE};
use vgpu::{InterruptLine, StatsSnapshot, VgpuDevice};

use crate::acpi;
use crate::pci::{PciBus, PciConfig, PciError, PciFunction};

/// KVM memory slot of the first vGPU's window (RAM uses slots 0 and 1).
pub const WINDOW_SLOT_BASE: u32 = 8;

/// How the guest learns that the device needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrMode {
    /// No interrupt pin: the guest polls (the default).
    Poll,
    /// INTx pin A, level-triggered, routed by the DSDT's `_PRT`.
    Intx,
}

/// What `--vgpu` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgpuSpec {
    /// vGPU type (`vgpu::profile`).
    pub profile: String,
    /// GFID in the RM core (1..=63).
    pub gfid: u32,
    /// BAR2 window size in bytes.
    pub window: u64,
    /// Interrupt delivery.
    pub intr: IntrMode,
}

impl Default for VgpuSpec {
    fn default() -> Self {
        Self {
            profile: mdev::profile::DEFAULT_PROFILE.to_string(),
            gfid: 1,
            window: DEFAULT_WINDOW_SIZE,
            intr: IntrMode::Poll,
        }
    }
}

/// Parses a byte size: a number with an optional binary suffix K, M or G (`64M`, `0x100000`).
impl FromStr for VgpuSpec {
    type Err = String;

    /// `type=NAME,gfid=N[,window=SIZE][,intr=poll|intx]`, keys in any order.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut spec = VgpuSpec::default();
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            match key {
                "type" => {
                    if !mdev::profile::names().contains(&value) {
                        return Err(format!(
                            "unknown vGPU type {value:?} (known: {})",
                            mdev::profile::names().join(", ")
                        ));
                    }
                    spec.profile = value.to_string();
                }
                "gfid" => {
                    spec.gfid = value
                        .parse()
                        .ok()
                        .filter(|g| (1..=63).contains(g))
                        .ok_or_else(|| format!("gfid {value:?} is not in 1..=63"))?;
                }
                "window" => {
                    spec.window = vgpu::window::parse_size(value)
                        .filter(|w| {
                            w.is_power_of_two() && (MIN_WINDOW_SIZE..=MAX_WINDOW_SIZE).contains(w)
                        })
                        .ok_or_else(|| {
                            format!("window {value:?} is not a power of two from 64K to 16G")
                        })?;
                }
                "intr" => {
                    spec.intr = match value {
                        "poll" => IntrMode::Poll,
                        "intx" => IntrMode::Intx,
                        _ => return Err(format!("intr {value:?} is not poll or intx")),
                    };
                }
                _ => return Err(format!("unknown --vgpu key {key:?}")),
            }
        }
        Ok(spec)
    }
}

/// Adds and removes KVM memory slots (a trait so the slot logic is testable without KVM).
pub trait MemorySlots: Send {
    /// Maps `size` bytes of host memory at `host` into the guest at `gpa` as slot `slot`.
    ///
    /// # Safety
    /// `host..host + size` must stay mapped until [`MemorySlots::clear_slot`] removes the slot
    /// or the VM is destroyed.
    unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> std::io::Result<()>;
    /// Removes slot `slot`.
    fn clear_slot(&self, slot: u32) -> std::io::Result<()>;
}

/// [`MemorySlots`] of a KVM VM.
#[derive(Debug)]
pub struct KvmSlots(pub Arc<VmFd>);

impl MemorySlots for KvmSlots {
    unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, host: u64) -> std::io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            flags: 0,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host,
        };
        // SAFETY: the caller keeps the host range mapped while the slot exists.
        unsafe { self.0.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn clear_slot(&self, slot: u32) -> std::io::Result<()> {
        let region = kvm_userspace_memory_region {
            slot,
            ..Default::default()
        };
        // SAFETY: a zero-sized region deletes the slot; no host memory is named.
        unsafe { self.0.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// The KVM slot that backs BAR2 with the window: follows the BAR and memory decoding, and is
/// never left behind at an old address.
pub struct WindowSlot {
    slots: Box<dyn MemorySlots>,
    slot: u32,
    host: u64,
    size: u64,
    allowed: Vec<Range<u64>>,
    mapped: Option<u64>,
}

impl std::fmt::Debug for WindowSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowSlot")
            .field("slot", &self.slot)
            .field("size", &self.size)
            .field("mapped", &self.mapped)
            .finish_non_exhaustive()
    }
}

impl WindowSlot {
    /// A slot for `size` bytes at host address `host`, placed only inside `allowed` ranges.
    ///
    /// # Safety
    /// `host..host + size` must stay mapped for as long as this `WindowSlot` lives (its `Drop`
    /// removes the slot).
    pub unsafe fn new(
        slots: Box<dyn MemorySlots>,
        slot: u32,
        host: u64,
        size: u64,
        allowed: Vec<Range<u64>>,
    ) -> Self {
        Self {
            slots,
            slot,
            host,
            size,
            allowed,
            mapped: None,
        }
    }

    /// Where the window is mapped now.
    pub fn mapped_at(&self) -> Option<u64> {
        self.mapped
    }

    /// Maps the window at `wanted` (or nowhere): removes the old slot first, then adds the new
    /// one if the whole BAR lies in an allowed range.
    pub fn place(&mut self, wanted: Option<u64>) {
        let wanted = wanted.filter(|&gpa| {
            gpa.checked_add(self.size)
                .is_some_and(|end| self.allowed.iter().any(|r| r.start <= gpa && end <= r.end))
        });
        if wanted == self.mapped {
            return;
        }
        if self.mapped.take().is_some() {
            if let Err(e) = self.slots.clear_slot(self.slot) {
                tracing::error!(slot = self.slot, "cannot remove the vGPU window slot: {e}");
            }
        }
        if let Some(gpa) = wanted {
            // SAFETY: `new`'s contract keeps the host range mapped while `self` lives, and
            // `Drop` removes the slot.
            match unsafe { self.slots.set_slot(self.slot, gpa, self.size, self.host) } {
                Ok(()) => {
                    tracing::debug!(gpa, size = self.size, "vGPU window mapped");
                    self.mapped = Some(gpa);
                }
                Err(e) => tracing::warn!(gpa, "vGPU window not mapped: {e}"),
            }
        }
    }
}

impl Drop for WindowSlot {
    fn drop(&mut self) {
        self.place(None);
    }
}

/// Drives a GSI of the guest's IOAPIC (a trait so interrupt routing is testable without KVM).
pub trait IrqLevel: Send + Sync {
    /// Sets the input `gsi` to `level`.
    fn set_level(&self, gsi: u32, level: bool);
}

/// [`IrqLevel`] through `KVM_IRQ_LINE`.
#[derive(Debug)]
pub struct KvmIrq(pub Arc<VmFd>);

impl IrqLevel for KvmIrq {
    fn set_level(&self, gsi: u32, level: bool) {
        if let Err(e) = self.0.set_irq_line(gsi, level) {
            tracing::warn!(gsi, level, "KVM_IRQ_LINE failed: {e}");
        }
    }
}

/// The function's INTx state: the device's line, masked by Command.INTx_Disable.
struct Intx {
    irq: Box<dyn IrqLevel>,
    gsi: u32,
    device_level: AtomicBool,
    disabled: AtomicBool,
    driven: Mutex<bool>,
}

impl Intx {
    fn update(&self) {
        let level =
            self.device_level.load(Ordering::SeqCst) && !self.disabled.load(Ordering::SeqCst);
        let mut driven = self.driven.lock().unwrap_or_else(|e| e.into_inner());
        if *driven != level {
            *driven = level;
            self.irq.set_level(self.gsi, level);
        }
    }
}

/// The device's [`InterruptLine`], feeding [`Intx`].
struct IntxLine(Arc<Intx>);

impl InterruptLine for IntxLine {
    fn set_level(&self, asserted: bool) {
        self.0.device_level.store(asserted, Ordering::SeqCst);
        self.0.update();
    }
}

/// The vGPU on this VMM's PCI bus.
pub struct VgpuPci {
    config: PciConfig,
    // Dropped before `device`: the slot goes before the window it maps.
    slot: Option<WindowSlot>,
    intx: Option<Arc<Intx>>,
    device: VgpuDevice,
}

impl std::fmt::Debug for VgpuPci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VgpuPci")
            .field("device", &self.device)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// Errors attaching a vGPU.
#[derive(Debug, thiserror::Error)]
pub enum VgpuError {
    /// The vGPU type is unknown.
    #[error(transparent)]
    Profile(#[from] mdev::profile::UnknownProfile),
    /// The RM core or the device refused.
    #[error("cannot create the vGPU")]
    Attach(#[from] mdev::sim_host::AttachError),
    /// The config space or the bus refused.
    #[error("cannot put the vGPU on the PCI bus")]
    Pci(#[from] PciError),
}

impl VgpuPci {
    /// Wraps `device`: its config space, the window slot (through `slots`, as KVM slot
    /// `kvm_slot`, only inside `allowed`), and INTx on `intx` if given.
    pub fn new(
        device: VgpuDevice,
        slots: Box<dyn MemorySlots>,
        kvm_slot: u32,
        allowed: Vec<Range<u64>>,
        intx: Option<(Box<dyn IrqLevel>, u32)>,
    ) -> Result<Self, PciError> {
        let config = vgpu::pci::config_space(device.window().size(), intx.is_some())?;
        let mut window_slot = None;
        if let Some(bar) = device
            .bars()
            .into_iter()
            .find(|b| b.backing == BarBacking::HostMemory)
        {
            let host = device.window().host_ptr() as u64;
            // SAFETY: the window's mapping belongs to `device`, which `VgpuPci` owns and drops
            // after the slot (field order).
            window_slot =
                Some(unsafe { WindowSlot::new(slots, kvm_slot, host, bar.size, allowed) });
        }
        let mut device = device;
        let intx = intx.map(|(irq, gsi)| {
            let intx = Arc::new(Intx {
                irq,
                gsi,
                device_level: AtomicBool::new(false),
                disabled: AtomicBool::new(false),
                driven: Mutex::new(false),
            });
            device.set_interrupt_line(Box::new(IntxLine(intx.clone())));
            intx
        });
        Ok(Self {
            config,
            slot: window_slot,
            intx,
            device,
        })
    }

    /// The device.
    pub fn device(&self) -> &VgpuDevice {
        &self.device
    }

    /// Where the window is mapped in the guest now.
    pub fn window_gpa(&self) -> Option<u64> {
        self.slot.as_ref().and_then(WindowSlot::mapped_at)
    }

    /// Makes the window slot and the INTx mask match the config space (after the bus or the
    /// guest changed it).
    pub fn sync(&mut self) {
        let wanted = self
            .config
            .bar_address(BAR2)
            .filter(|&a| a != 0 && self.config.memory_enabled());
        if let Some(slot) = &mut self.slot {
            slot.place(wanted);
        }
        if let Some(intx) = &self.intx {
            intx.disabled
                .store(self.config.intx_disabled(), Ordering::SeqCst);
            intx.update();
        }
    }
}

impl PciFunction for VgpuPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&self, reg: usize) -> u32 {
        let v = self.config.read_dword(reg);
        match &self.intx {
            Some(i)
                if reg == PciConfig::COMMAND_STATUS && i.device_level.load(Ordering::SeqCst) =>
            {
                v | PciConfig::STATUS_INTERRUPT
            }
            _ => v,
        }
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        self.config.write(reg, offset, data);
        if PciConfig::affects_routing(reg) {
            self.sync();
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        self.device.bar_read(bar, offset, data);
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        self.device.bar_write(bar, offset, data);
    }
}

/// A vGPU attached to a VM, kept by the caller so its counters and the RM core's state can be
/// read after the guest ends (before the device is torn down).
pub struct AttachedVgpu {
    /// The PCI function (also held by the bus).
    pub function: Arc<Mutex<VgpuPci>>,
    /// The GFID.
    pub gfid: u32,
    /// The guest's PCI slot.
    pub pci_slot: u8,
}

impl std::fmt::Debug for AttachedVgpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedVgpu")
            .field("gfid", &self.gfid)
            .field("pci_slot", &self.pci_slot)
            .finish_non_exhaustive()
    }
}

/// Creates vGPU `spec` in `host`'s RM core and puts it on `bus` (KVM slot and IRQ through
/// `vm_fd`). Call before the vCPUs start.
pub fn attach(
    bus: &PciBus,
    vm_fd: Arc<VmFd>,
    host: &SimHost,
    spec: &VgpuSpec,
    index: u32,
) -> Result<AttachedVgpu, VgpuError> {
    let pci_slot = bus.next_free_slot().ok_or(PciError::BusFull)?;
    let profile = mdev::profile::resolve(&spec.profile, &host.gpu_info())?;
    let device = host.attach(&profile, spec.gfid, spec.window, pci_slot)?;
    let intx = (spec.intr == IntrMode::Intx).then(|| {
        let irq: Box<dyn IrqLevel> = Box::new(KvmIrq(vm_fd.clone()));
        (irq, acpi::pci_intx_gsi(pci_slot, 0))
    });
    let function = VgpuPci::new(
        device,
        Box::new(KvmSlots(vm_fd)),
        WINDOW_SLOT_BASE + index,
        vec![bus.window32(), bus.window64()],
        intx,
    )?;
    let function = Arc::new(Mutex::new(function));
    let slot = bus.add_function(function.clone())?;
    debug_assert_eq!(slot, pci_slot);
    // The bus placed the BARs and enabled decoding through `config_mut`: map the window.
    function.lock().unwrap_or_else(|e| e.into_inner()).sync();
    tracing::info!(
        gfid = spec.gfid,
        profile = %profile.name,
        slot,
        window = spec.window,
        "vGPU attached"
    );
    Ok(AttachedVgpu {
        function,
        gfid: spec.gfid,
        pci_slot,
    })
}

/// The `--stats` lines of vGPU `index`: device counters, then `rm_objects` (objects the RM core
/// holds for its GFID, read before teardown) and `open_files`.
pub fn stats_report(index: u32, s: &StatsSnapshot, rm_objects: usize, open_files: usize) -> String {
    let mut out = String::new();
    let lines: [(&str, u64); 10] = [
        ("doorbells", s.doorbells),
        ("doorbells_rejected", s.doorbells_rejected),
        ("queue_notifies", s.queue_notifies),
        ("requests", s.requests),
        ("request_errors", s.request_errors),
        ("bar0_reads", s.bar0_reads),
        ("bar0_writes", s.bar0_writes),
        ("interrupts", s.interrupts),
        ("rm_objects", rm_objects as u64),
        ("open_files", open_files as u64),
    ];
    for (name, v) in lines {
        let _ = writeln!(out, "stats: vgpu{index} {name} {v}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vgpu::protocol::{self, reg};

    #[derive(Default)]
    struct FakeSlots(Arc<Mutex<Vec<String>>>);

    impl MemorySlots for FakeSlots {
        unsafe fn set_slot(&self, slot: u32, gpa: u64, size: u64, _: u64) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap()
                .push(format!("set {slot} {gpa:#x} {size:#x}"));
            Ok(())
        }
        fn clear_slot(&self, slot: u32) -> std::io::Result<()> {
            self.0.lock().unwrap().push(format!("clear {slot}"));
            Ok(())
        }
    }

    #[derive(Default)]
    struct FakeIrq(Arc<Mutex<Vec<(u32, bool)>>>);

    impl IrqLevel for FakeIrq {
        fn set_level(&self, gsi: u32, level: bool) {
            self.0.lock().unwrap().push((gsi, level));
        }
    }

    const W32: Range<u64> = 0xc000_0000..0xfec0_0000;
    const W64: Range<u64> = 0x1_0000_0000..0x11_0000_0000;

    struct Rig {
        bus: PciBus,
        f: Arc<Mutex<VgpuPci>>,
        log: Arc<Mutex<Vec<String>>>,
        irqs: Arc<Mutex<Vec<(u32, bool)>>>,
        _host: SimHost,
    }

    fn rig(intx: bool) -> Rig {
        let host = SimHost::virtual_clock();
        let p = mdev::profile::resolve("sim-35c", &host.gpu_info()).unwrap();
        let dev = host.attach(&p, 1, 1 << 20, 1).unwrap();
        let slots = FakeSlots::default();
        let log = slots.0.clone();
        let irq = FakeIrq::default();
        let irqs = irq.0.clone();
        let intx = intx.then(|| (Box::new(irq) as Box<dyn IrqLevel>, 17));
        let f = VgpuPci::new(dev, Box::new(slots), 9, vec![W32, W64], intx).unwrap();
        let f = Arc::new(Mutex::new(f));
        let bus = PciBus::new(W32, W64);
        bus.add_function(Arc::new(Mutex::new(crate::pci::HostBridge::new())))
            .unwrap();
        assert_eq!(bus.add_function(f.clone()).unwrap(), 1);
        f.lock().unwrap().sync();
        Rig {
            bus,
            f,
            log,
            irqs,
            _host: host,
        }
    }

    fn cfg_read(bus: &PciBus, reg: usize) -> u32 {
        bus.config_read(0, 1, 0, reg)
    }

    fn cfg_write(bus: &PciBus, reg: usize, v: u32) {
        bus.config_write(0, 1, 0, reg, 0, &v.to_le_bytes());
    }

    #[test]
    fn config_space_carries_identity_bars_and_virtio_capabilities() {
        let r = rig(false);
        let b = &r.bus;
        assert_eq!(
            cfg_read(b, 0),
            u32::from(protocol::PCI_DEVICE_ID) << 16 | u32::from(protocol::PCI_VENDOR_ID)
        );
        assert_eq!(cfg_read(b, 2) >> 24, u32::from(protocol::PCI_CLASS));
        assert_eq!(cfg_read(b, 2) & 0xff, u32::from(protocol::PCI_REVISION));
        // BAR0: 32-bit non-prefetchable; BAR2/3: 64-bit prefetchable.
        assert_eq!(cfg_read(b, 4) & 0xf, 0);
        assert_eq!(cfg_read(b, 6) & 0xf, 0xc);
        // Capabilities: five vendor-specific (virtio) entries, linked.
        assert_ne!(cfg_read(b, 1) & 1 << 20, 0);
        let mut ptr = (cfg_read(b, 13) & 0xff) as usize;
        let mut types = vec![];
        while ptr != 0 {
            let d = cfg_read(b, ptr / 4);
            assert_eq!(d & 0xff, 0x09);
            types.push((d >> 24) & 0xff);
            ptr = ((d >> 8) & 0xff) as usize;
        }
        assert_eq!(types, vec![1, 2, 3, 4, 8]);
        // Polling: no interrupt pin.
        assert_eq!(cfg_read(b, 15) >> 8 & 0xff, 0);
    }

    #[test]
    fn bar0_is_routed_to_the_register_file() {
        let r = rig(false);
        let bar0 = u64::from(cfg_read(&r.bus, 4) & !0xf);
        let window = r.bus.mmio_window();
        let mut d = [0u8; 4];
        vm_device::DeviceMmio::mmio_read(
            &window,
            vm_device::bus::MmioAddress(bar0),
            u64::from(reg::MAGIC),
            &mut d,
        );
        assert_eq!(&d, b"VGPU");
        vm_device::DeviceMmio::mmio_read(
            &window,
            vm_device::bus::MmioAddress(bar0),
            u64::from(reg::GFID),
            &mut d,
        );
        assert_eq!(u32::from_le_bytes(d), 1);
    }

    #[test]
    fn window_slot_follows_bar2_and_memory_decoding() {
        let r = rig(false);
        let at =
            r.f.lock()
                .unwrap()
                .window_gpa()
                .expect("mapped after attach");
        assert!(W64.contains(&at));
        assert_eq!(
            r.log.lock().unwrap().clone(),
            vec![format!("set 9 {at:#x} 0x100000")]
        );
        r.log.lock().unwrap().clear();

        // Decoding off (as Linux does while sizing BARs): slot removed; sizing writes leave it
        // removed; decoding back on at the old address: slot back.
        let cmd = cfg_read(&r.bus, 1) & 0xffff;
        cfg_write(&r.bus, 1, cmd & !2);
        cfg_write(&r.bus, 6, 0xffff_ffff);
        cfg_write(&r.bus, 7, 0xffff_ffff);
        assert_eq!(cfg_read(&r.bus, 6), 0xfff0_000c, "BAR2 sizes to 1 MiB");
        cfg_write(&r.bus, 6, at as u32);
        cfg_write(&r.bus, 7, (at >> 32) as u32);
        assert_eq!(r.f.lock().unwrap().window_gpa(), None);
        cfg_write(&r.bus, 1, cmd);
        assert_eq!(r.f.lock().unwrap().window_gpa(), Some(at));

        // Moved while decoding: the old slot goes before the new one comes.
        r.log.lock().unwrap().clear();
        let new = at + (16 << 20);
        cfg_write(&r.bus, 6, new as u32);
        assert_eq!(r.f.lock().unwrap().window_gpa(), Some(new));
        assert_eq!(
            r.log.lock().unwrap().clone(),
            vec!["clear 9".to_string(), format!("set 9 {new:#x} 0x100000")]
        );

        // Outside the PCI windows (over RAM): no slot at all.
        cfg_write(&r.bus, 6, 0x10_0000);
        cfg_write(&r.bus, 7, 0);
        assert_eq!(r.f.lock().unwrap().window_gpa(), None);
        assert_eq!(r.log.lock().unwrap().last().unwrap(), "clear 9");

        // Dropping the function removes a live slot.
        cfg_write(&r.bus, 7, (at >> 32) as u32);
        cfg_write(&r.bus, 6, at as u32);
        assert_eq!(r.f.lock().unwrap().window_gpa(), Some(at));
        let Rig { bus, f, log, .. } = r;
        drop(bus);
        drop(f);
        assert_eq!(log.lock().unwrap().last().unwrap(), "clear 9");
    }

    #[test]
    fn intx_follows_the_device_line_and_intx_disable() {
        let r = rig(true);
        assert_eq!(cfg_read(&r.bus, 15) >> 8 & 0xff, 1, "pin A");
        let w32 = |f: &Arc<Mutex<VgpuPci>>, off: u32, v: u32| {
            f.lock()
                .unwrap()
                .bar_write(0, u64::from(off), &v.to_le_bytes())
        };
        // A bad BAR0 write raises ERROR; enabling it asserts the line.
        w32(&r.f, 0xffc, 1);
        assert!(r.irqs.lock().unwrap().is_empty());
        w32(&r.f, reg::INTR_ENABLE, protocol::intr::ERROR);
        assert_eq!(r.irqs.lock().unwrap().clone(), vec![(17, true)]);
        assert_ne!(cfg_read(&r.bus, 1) & PciConfig::STATUS_INTERRUPT, 0);
        // INTx Disable masks the line (status still shows it); clearing it re-asserts.
        let cmd = cfg_read(&r.bus, 1) & 0xffff;
        cfg_write(&r.bus, 1, cmd | 1 << 10);
        assert_eq!(r.irqs.lock().unwrap().last(), Some(&(17, false)));
        assert_ne!(cfg_read(&r.bus, 1) & PciConfig::STATUS_INTERRUPT, 0);
        cfg_write(&r.bus, 1, cmd);
        assert_eq!(r.irqs.lock().unwrap().last(), Some(&(17, true)));
        // Acknowledge: the line drops.
        w32(&r.f, reg::INTR_STATUS, protocol::intr::ALL);
        assert_eq!(r.irqs.lock().unwrap().last(), Some(&(17, false)));
        assert_eq!(cfg_read(&r.bus, 1) & PciConfig::STATUS_INTERRUPT, 0);
    }

    #[test]
    fn spec_parsing_defaults_and_errors() {
        let d: VgpuSpec = "".parse().unwrap();
        assert_eq!(d, VgpuSpec::default());
        assert_eq!((d.gfid, d.window, d.intr), (1, 64 << 20, IntrMode::Poll));
        let s: VgpuSpec = "type=sim-17c,gfid=9,window=1M,intr=intx".parse().unwrap();
        assert_eq!(
            s,
            VgpuSpec {
                profile: "sim-17c".into(),
                gfid: 9,
                window: 1 << 20,
                intr: IntrMode::Intx
            }
        );
        assert_eq!(
            "window=0x10000".parse::<VgpuSpec>().unwrap().window,
            64 << 10
        );
        for bad in [
            "type=h100",
            "gfid=0",
            "gfid=64",
            "gfid=x",
            "window=3M",
            "window=32G",
            "window=1K",
            "intr=msi",
            "colour=red",
            "type",
        ] {
            assert!(bad.parse::<VgpuSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn stats_report_names_every_counter() {
        let s = StatsSnapshot {
            doorbells: 3,
            requests: 7,
            interrupts: 2,
            ..Default::default()
        };
        let r = stats_report(0, &s, 5, 1);
        assert!(r.contains("stats: vgpu0 doorbells 3\n"));
        assert!(r.contains("stats: vgpu0 interrupts 2\n"));
        assert!(r.contains("stats: vgpu0 requests 7\n"));
        assert!(r.contains("stats: vgpu0 rm_objects 5\n"));
        assert_eq!(r.lines().count(), 10);
    }
}
