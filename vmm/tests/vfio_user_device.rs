//! The VMM's vfio-user PCI function against an in-process vgpud: config space (identity and
//! BARs local, capabilities forwarded), BAR0 over the socket, the window's memory slot
//! following BAR2 and memory decoding, and INTx following the server's line and INTx Disable.
//! No KVM needed: slots and the IRQ line are recorded.

mod common;

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vgpu::protocol::{self, reg};
use vmm::devices::intx::IrqLevel;
use vmm::devices::memory_slot::MemorySlots;
use vmm::devices::vfio_user::VfioUserPci;
use vmm::pci::{PciBus, PciConfig, PciFunction};

#[derive(Default)]
struct FakeSlots(Mutex<Vec<String>>);

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
    f: Arc<Mutex<VfioUserPci>>,
    slots: Arc<FakeSlots>,
    irqs: Arc<Mutex<Vec<(u32, bool)>>>,
    inst: common::Instance,
}

fn rig(intx: bool) -> Rig {
    let inst = common::instance(1, 1 << 20);
    let client = vfio_user::Client::new(std::path::Path::new(&inst.socket)).unwrap();
    let slots = Arc::new(FakeSlots::default());
    let irq = FakeIrq::default();
    let irqs = irq.0.clone();
    let intx = intx.then(|| (Box::new(irq) as Box<dyn IrqLevel>, 17));
    let f = VfioUserPci::new(client, slots.clone(), 9, vec![W32, W64], intx).unwrap();
    let f = Arc::new(Mutex::new(f));
    let bus = PciBus::new(W32, W64);
    bus.add_function(Arc::new(Mutex::new(vmm::pci::HostBridge::new())))
        .unwrap();
    assert_eq!(bus.add_function(f.clone()).unwrap(), 1);
    f.lock().unwrap().sync();
    Rig {
        bus,
        f,
        slots,
        irqs,
        inst,
    }
}

fn cfg_read(bus: &PciBus, reg: usize) -> u32 {
    bus.config_read(0, 1, 0, reg)
}

fn cfg_write(bus: &PciBus, reg: usize, v: u32) {
    bus.config_write(0, 1, 0, reg, 0, &v.to_le_bytes());
}

#[test]
fn config_space_carries_identity_bars_and_the_servers_capabilities() {
    let r = rig(false);
    let b = &r.bus;
    assert_eq!(
        cfg_read(b, 0),
        u32::from(protocol::PCI_DEVICE_ID) << 16 | u32::from(protocol::PCI_VENDOR_ID)
    );
    assert_eq!(cfg_read(b, 2) >> 24, u32::from(protocol::PCI_CLASS));
    // BAR0: 32-bit non-prefetchable; BAR2/3: 64-bit prefetchable.
    assert_eq!(cfg_read(b, 4) & 0xf, 0);
    assert_eq!(cfg_read(b, 6) & 0xf, 0xc);
    // Capabilities (read from the server): five vendor-specific (virtio) entries, linked.
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
fn bar0_is_the_servers_register_file() {
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
    let dev = common::device(&r.inst);
    assert_eq!(dev.lock().unwrap().stats().snapshot().bar0_reads, 2);
}

#[test]
fn window_slot_follows_bar2_and_memory_decoding() {
    let r = rig(false);
    let at =
        r.f.lock()
            .unwrap()
            .mapped_at(2)
            .expect("mapped after attach");
    assert!(W64.contains(&at));
    let log = |r: &Rig| r.slots.0.lock().unwrap().clone();
    assert_eq!(log(&r), vec![format!("set 9 {at:#x} 0x100000")]);
    r.slots.0.lock().unwrap().clear();

    // Decoding off (as Linux does while sizing BARs): slot removed; sizing writes leave it
    // removed; decoding back on at the old address: slot back.
    let cmd = cfg_read(&r.bus, 1) & 0xffff;
    cfg_write(&r.bus, 1, cmd & !2);
    cfg_write(&r.bus, 6, 0xffff_ffff);
    cfg_write(&r.bus, 7, 0xffff_ffff);
    assert_eq!(cfg_read(&r.bus, 6), 0xfff0_000c, "BAR2 sizes to 1 MiB");
    cfg_write(&r.bus, 6, at as u32);
    cfg_write(&r.bus, 7, (at >> 32) as u32);
    assert_eq!(r.f.lock().unwrap().mapped_at(2), None);
    cfg_write(&r.bus, 1, cmd);
    assert_eq!(r.f.lock().unwrap().mapped_at(2), Some(at));

    // Moved while decoding: the old slot goes before the new one comes.
    r.slots.0.lock().unwrap().clear();
    let new = at + (16 << 20);
    cfg_write(&r.bus, 6, new as u32);
    assert_eq!(r.f.lock().unwrap().mapped_at(2), Some(new));
    assert_eq!(
        log(&r),
        vec!["clear 9".to_string(), format!("set 9 {new:#x} 0x100000")]
    );

    // Outside the PCI windows (over RAM): no slot at all.
    cfg_write(&r.bus, 6, 0x10_0000);
    cfg_write(&r.bus, 7, 0);
    assert_eq!(r.f.lock().unwrap().mapped_at(2), None);
    assert_eq!(log(&r).last().unwrap(), "clear 9");

    // Dropping the function removes a live slot.
    cfg_write(&r.bus, 7, (at >> 32) as u32);
    cfg_write(&r.bus, 6, at as u32);
    assert_eq!(r.f.lock().unwrap().mapped_at(2), Some(at));
    let Rig { bus, f, slots, .. } = r;
    drop(bus);
    drop(f);
    assert_eq!(slots.0.lock().unwrap().last().unwrap(), "clear 9");
}

/// Waits until the recorded IRQ line's last level is `level`.
fn wait_line(irqs: &Mutex<Vec<(u32, bool)>>, level: bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while irqs.lock().unwrap().last().map(|l| l.1) != Some(level) {
        assert!(
            Instant::now() < deadline,
            "line never went {level}: {irqs:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn intx_follows_the_servers_line_and_intx_disable() {
    let r = rig(true);
    assert_eq!(cfg_read(&r.bus, 15) >> 8 & 0xff, 1, "pin A");
    let w32 = |f: &Arc<Mutex<VfioUserPci>>, off: u32, v: u32| {
        f.lock()
            .unwrap()
            .bar_write(0, u64::from(off), &v.to_le_bytes())
    };
    // A bad BAR0 write raises ERROR; enabling it asserts the line (through the server's
    // eventfd and this VMM's INTx thread).
    w32(&r.f, 0xffc, 1);
    assert!(r.irqs.lock().unwrap().is_empty());
    w32(&r.f, reg::INTR_ENABLE, protocol::intr::ERROR);
    wait_line(&r.irqs, true);
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
    wait_line(&r.irqs, false);
    assert_eq!(cfg_read(&r.bus, 1) & PciConfig::STATUS_INTERRUPT, 0);
}

#[test]
fn unmasking_after_an_acknowledge_does_not_raise_the_gone_cause_again() {
    let r = rig(true);
    let w32 = |f: &Arc<Mutex<VfioUserPci>>, off: u32, v: u32| {
        f.lock()
            .unwrap()
            .bar_write(0, u64::from(off), &v.to_le_bytes())
    };
    w32(&r.f, 0xffc, 1);
    w32(&r.f, reg::INTR_ENABLE, protocol::intr::ERROR);
    wait_line(&r.irqs, true);
    // What uio_pci_generic and its user do: mask, acknowledge at the device, unmask at once,
    // before this VMM's INTx thread may have seen the line drop.
    let cmd = cfg_read(&r.bus, 1) & 0xffff;
    cfg_write(&r.bus, 1, cmd | 1 << 10);
    let masked = r.irqs.lock().unwrap().len();
    w32(&r.f, reg::INTR_STATUS, protocol::intr::ALL);
    cfg_write(&r.bus, 1, cmd);
    assert_eq!(cfg_read(&r.bus, 1) & PciConfig::STATUS_INTERRUPT, 0);
    std::thread::sleep(Duration::from_millis(50));
    let after: Vec<_> = r.irqs.lock().unwrap()[masked..].to_vec();
    assert!(
        !after.contains(&(17, true)),
        "the acknowledged cause was raised again: {after:?}"
    );
}
