//! Bus 0: configuration mechanism #1 at 0xCF8/0xCFC, BAR placement, and BAR routing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};

use vm_device::bus::{MmioAddress, MmioBus, MmioRange, PioAddress, PioAddressOffset};
use vm_device::{DeviceMmio, DevicePio};

use super::{BarKind, PciConfig, PciError, PciFunction};

/// The CONFIG_ADDRESS port; CONFIG_DATA follows at +4.
pub const CONFIG_ADDRESS_PORT: u16 = 0xcf8;
/// Ports covered: CONFIG_ADDRESS (4) and CONFIG_DATA (4).
pub const CONFIG_PORTS_LEN: u16 = 8;
const CONFIG_DATA_OFFSET: PioAddressOffset = 4;
const CONFIG_ENABLE: u32 = 1 << 31;
const SLOTS: usize = 32;

/// A function shared between the bus and the BAR routes.
type SharedFunction = Arc<Mutex<dyn PciFunction>>;

/// Where a guest MMIO access in a PCI window goes.
#[derive(Clone)]
struct BarRoute {
    function: SharedFunction,
    bar: u8,
}

/// Bump allocator for one PCI memory window.
#[derive(Debug)]
struct Window {
    next: u64,
    end: u64,
}

impl Window {
    fn alloc(&mut self, size: u64) -> Result<u64, PciError> {
        let addr = self.next.next_multiple_of(size);
        let end = addr
            .checked_add(size)
            .ok_or(PciError::WindowExhausted(size))?;
        if end > self.end {
            return Err(PciError::WindowExhausted(size));
        }
        self.next = end;
        Ok(addr)
    }
}

struct BusState {
    config_address: u32,
    slots: Vec<Option<SharedFunction>>,
    /// Current route of each (slot, BAR).
    mapped: HashMap<(usize, u8), MmioRange>,
    mmio32: Window,
    mmio64: Window,
}

/// PCI bus 0 with its config ports and the routing table of BARs.
///
/// Register it on the PIO bus at [`CONFIG_ADDRESS_PORT`] for [`CONFIG_PORTS_LEN`] ports, and
/// register a [`PciMmioWindow`] (from [`PciBus::mmio_window`]) on the MMIO bus over each PCI
/// memory window.
pub struct PciBus {
    state: Mutex<BusState>,
    routes: Arc<RwLock<MmioBus<BarRoute>>>,
    window32: Range<u64>,
    window64: Range<u64>,
}

impl std::fmt::Debug for PciBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciBus")
            .field("window32", &self.window32)
            .field("window64", &self.window64)
            .finish_non_exhaustive()
    }
}

impl PciBus {
    /// An empty bus whose BARs are placed in `window32` (32-bit BARs) and `window64`.
    pub fn new(window32: Range<u64>, window64: Range<u64>) -> Self {
        PciBus {
            state: Mutex::new(BusState {
                config_address: 0,
                slots: vec![None; SLOTS],
                mapped: HashMap::new(),
                mmio32: Window {
                    next: window32.start,
                    end: window32.end,
                },
                mmio64: Window {
                    next: window64.start,
                    end: window64.end,
                },
            }),
            routes: Arc::new(RwLock::new(MmioBus::new())),
            window32,
            window64,
        }
    }

    /// The 32-bit PCI memory window.
    pub fn window32(&self) -> Range<u64> {
        self.window32.clone()
    }

    /// The 64-bit PCI memory window.
    pub fn window64(&self) -> Range<u64> {
        self.window64.clone()
    }

    /// Adds `function` at the first free slot (device number), assigns its BARs from the
    /// windows, enables memory decoding and routes the BARs. Returns the device number.
    pub fn add_function(&self, function: SharedFunction) -> Result<u8, PciError> {
        let mut state = lock(&self.state);
        let slot = state
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(PciError::BusFull)?;
        {
            let mut f = lock(&function);
            let bars: Vec<_> = f.config().bars().collect();
            for bar in bars {
                let addr = match bar.kind {
                    BarKind::Memory32 => state.mmio32.alloc(bar.size)?,
                    BarKind::Memory64 => state.mmio64.alloc(bar.size)?,
                };
                f.config_mut().set_bar_address(bar.index, addr)?;
            }
            f.config_mut().enable_memory();
        }
        state.slots[slot] = Some(function.clone());
        self.update_routes(&mut state, slot, &function);
        Ok(slot as u8)
    }

    /// The device number [`PciBus::add_function`] will give the next function, if any is free.
    pub fn next_free_slot(&self) -> Option<u8> {
        lock(&self.state)
            .slots
            .iter()
            .position(Option::is_none)
            .map(|s| s as u8)
    }

    /// A device for the MMIO bus that forwards accesses in the PCI windows to the routed BARs.
    pub fn mmio_window(&self) -> PciMmioWindow {
        PciMmioWindow {
            routes: self.routes.clone(),
        }
    }

    /// Reads the config dword `reg` of device `dev` on bus 0 (all-ones when absent).
    pub fn config_read(&self, bus: u8, dev: u8, func: u8, reg: usize) -> u32 {
        let state = lock(&self.state);
        match Self::function(&state, bus, dev, func) {
            Some(f) => lock(&f).read_config(reg),
            None => 0xffff_ffff,
        }
    }

    /// Writes `data` at byte `offset` of config dword `reg` of a device on bus 0, and moves
    /// the device's BAR routes if the write touched a BAR or the command register.
    pub fn config_write(&self, bus: u8, dev: u8, func: u8, reg: usize, offset: usize, data: &[u8]) {
        let mut state = lock(&self.state);
        let Some(f) = Self::function(&state, bus, dev, func) else {
            return;
        };
        lock(&f).write_config(reg, offset, data);
        if PciConfig::affects_routing(reg) {
            self.update_routes(&mut state, usize::from(dev), &f);
        }
    }

    fn function(state: &BusState, bus: u8, dev: u8, func: u8) -> Option<SharedFunction> {
        // Only single-function devices on bus 0.
        if bus != 0 || func != 0 {
            return None;
        }
        state.slots.get(usize::from(dev))?.clone()
    }

    /// Makes the routes of `slot`'s BARs match its config space: a BAR decodes when memory
    /// decoding is on and its address is non-zero and does not overlap another route.
    fn update_routes(&self, state: &mut BusState, slot: usize, function: &SharedFunction) {
        let wanted: Vec<(u8, Option<MmioRange>)> = {
            let f = lock(function);
            let config = f.config();
            config
                .bars()
                .map(|bar| {
                    let addr = config.bar_address(bar.index).unwrap_or(0);
                    let range = (config.memory_enabled() && addr != 0)
                        .then(|| MmioRange::new(MmioAddress(addr), bar.size).ok())
                        .flatten();
                    (bar.index, range)
                })
                .collect()
        };
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        for (bar, range) in wanted {
            let current = state.mapped.get(&(slot, bar)).copied();
            if current == range {
                continue;
            }
            if let Some(old) = current {
                routes.deregister(old.base());
                state.mapped.remove(&(slot, bar));
            }
            if let Some(new) = range {
                let route = BarRoute {
                    function: function.clone(),
                    bar,
                };
                match routes.register(new, route) {
                    Ok(()) => {
                        tracing::debug!(slot, bar, base = new.base().0, "PCI BAR routed");
                        state.mapped.insert((slot, bar), new);
                    }
                    Err(e) => {
                        tracing::warn!(slot, bar, base = new.base().0, "BAR not routed: {e}")
                    }
                }
            }
        }
    }

    /// Decodes CONFIG_ADDRESS into (bus, device, function, register) if enabled.
    fn decode(address: u32) -> Option<(u8, u8, u8, usize)> {
        if address & CONFIG_ENABLE == 0 {
            return None;
        }
        Some((
            (address >> 16) as u8,
            ((address >> 11) & 0x1f) as u8,
            ((address >> 8) & 0x7) as u8,
            ((address >> 2) & 0x3f) as usize,
        ))
    }

    /// What a CONFIG_DATA access of `len` bytes at port offset `offset` reaches: (bus, device,
    /// function, register, byte in the register). `None` when the access is not inside
    /// CONFIG_DATA or CONFIG_ADDRESS is not enabled.
    fn data_target(
        &self,
        offset: PioAddressOffset,
        len: usize,
    ) -> Option<(u8, u8, u8, usize, usize)> {
        let byte = usize::from(offset.checked_sub(CONFIG_DATA_OFFSET)?);
        if byte + len > 4 {
            return None;
        }
        let (bus, dev, func, reg) = Self::decode(lock(&self.state).config_address)?;
        Some((bus, dev, func, reg, byte))
    }
}

impl DevicePio for PciBus {
    fn pio_read(&self, _base: PioAddress, offset: PioAddressOffset, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 && data.len() == 4 {
            data.copy_from_slice(&lock(&self.state).config_address.to_le_bytes());
            return;
        }
        if let Some((bus, dev, func, reg, byte)) = self.data_target(offset, data.len()) {
            let value = self.config_read(bus, dev, func, reg).to_le_bytes();
            data.copy_from_slice(&value[byte..byte + data.len()]);
        }
    }

    fn pio_write(&self, _base: PioAddress, offset: PioAddressOffset, data: &[u8]) {
        if offset == 0 && data.len() == 4 {
            let value = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
            // Bits 1:0 are reserved and read as 0.
            lock(&self.state).config_address = value & !0x3;
            return;
        }
        // Narrow writes to CONFIG_ADDRESS (Linux's type-2 probe pokes 0xCFB) are ignored.
        if let Some((bus, dev, func, reg, byte)) = self.data_target(offset, data.len()) {
            self.config_write(bus, dev, func, reg, byte, data);
        }
    }
}

/// Forwards guest MMIO in the PCI memory windows to the BAR that decodes the address.
///
/// Unrouted addresses read as all-ones and drop writes, as on a real bus (master abort).
#[derive(Clone)]
pub struct PciMmioWindow {
    routes: Arc<RwLock<MmioBus<BarRoute>>>,
}

impl std::fmt::Debug for PciMmioWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PciMmioWindow").finish_non_exhaustive()
    }
}

impl PciMmioWindow {
    /// Finds the route for an access of `len` bytes at `addr`, fully inside one BAR.
    fn route(&self, addr: u64, len: usize) -> Option<(BarRoute, u64)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let (range, route) = routes.check_access(MmioAddress(addr), len).ok()?;
        Some((route.clone(), addr - range.base().0))
    }

    /// Handles a read at absolute guest-physical `addr`.
    pub fn read(&self, addr: u64, data: &mut [u8]) {
        match self.route(addr, data.len()) {
            Some((route, offset)) => lock(&route.function).bar_read(route.bar, offset, data),
            None => data.fill(0xff),
        }
    }

    /// Handles a write at absolute guest-physical `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) {
        if let Some((route, offset)) = self.route(addr, data.len()) {
            lock(&route.function).bar_write(route.bar, offset, data);
        }
    }
}

impl DeviceMmio for PciMmioWindow {
    fn mmio_read(&self, base: MmioAddress, offset: u64, data: &mut [u8]) {
        self.read(base.0 + offset, data);
    }

    fn mmio_write(&self, base: MmioAddress, offset: u64, data: &[u8]) {
        self.write(base.0 + offset, data);
    }
}

/// Locks a mutex, recovering from poisoning (a panicked vCPU thread already ends the VM).
fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{BarSpec, HostBridge, PciHeader};

    const W32: Range<u64> = 0xc000_0000..0xfec0_0000;
    const W64: Range<u64> = 0x1_0000_0000..0x11_0000_0000;

    struct Regs {
        config: PciConfig,
        last_write: Option<(u8, u64, Vec<u8>)>,
    }

    impl PciFunction for Regs {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = bar
                    .wrapping_mul(0x10)
                    .wrapping_add((offset as u8).wrapping_add(i as u8));
            }
        }
        fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    fn cf8(bus: &PciBus, dev: u32, reg: u32) {
        let addr = CONFIG_ENABLE | dev << 11 | reg << 2;
        bus.pio_write(PioAddress(0xcf8), 0, &addr.to_le_bytes());
    }

    fn read_cfc(bus: &PciBus) -> u32 {
        let mut d = [0u8; 4];
        bus.pio_read(PioAddress(0xcf8), 4, &mut d);
        u32::from_le_bytes(d)
    }

    fn write_cfc(bus: &PciBus, v: u32) {
        bus.pio_write(PioAddress(0xcf8), 4, &v.to_le_bytes());
    }

    fn bus_with_device() -> (PciBus, Arc<Mutex<Regs>>) {
        let bus = PciBus::new(W32, W64);
        bus.add_function(Arc::new(Mutex::new(HostBridge::new())))
            .unwrap();
        let mut config = PciConfig::new(&PciHeader {
            vendor_id: 0x1234,
            device_id: 0x11e8,
            class_code: 0x03,
            ..Default::default()
        });
        config
            .add_bar(BarSpec {
                index: 0,
                size: 0x1000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        config
            .add_bar(BarSpec {
                index: 2,
                size: 1 << 20,
                kind: BarKind::Memory64,
                prefetchable: true,
            })
            .unwrap();
        let dev = Arc::new(Mutex::new(Regs {
            config,
            last_write: None,
        }));
        assert_eq!(bus.add_function(dev.clone()).unwrap(), 1);
        (bus, dev)
    }

    #[test]
    fn host_bridge_through_cf8_cfc() {
        let (bus, _) = bus_with_device();
        cf8(&bus, 0, 0);
        assert_eq!(read_cfc(&bus), 0x0008_1b36);
        cf8(&bus, 0, 2);
        assert_eq!(read_cfc(&bus) >> 8, 0x060000);
        // CONFIG_ADDRESS reads back.
        let mut d = [0u8; 4];
        bus.pio_read(PioAddress(0xcf8), 0, &mut d);
        assert_eq!(u32::from_le_bytes(d), CONFIG_ENABLE | 2 << 2);
        // Byte and word reads at CFC+n.
        cf8(&bus, 0, 0);
        let mut w = [0u8; 2];
        bus.pio_read(PioAddress(0xcf8), 6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x0008);
        let mut b = [0u8; 1];
        bus.pio_read(PioAddress(0xcf8), 5, &mut b);
        assert_eq!(b[0], 0x1b);
    }

    #[test]
    fn enable_bit_and_absent_devices() {
        let (bus, _) = bus_with_device();
        // Enable bit clear: all-ones, writes dropped.
        bus.pio_write(PioAddress(0xcf8), 0, &0x0000_0804u32.to_le_bytes());
        assert_eq!(read_cfc(&bus), 0xffff_ffff);
        write_cfc(&bus, 0);
        cf8(&bus, 1, 1);
        assert_ne!(read_cfc(&bus) & 0x2, 0, "memory decoding still on");
        // Absent slot, other bus, other function.
        cf8(&bus, 5, 0);
        assert_eq!(read_cfc(&bus), 0xffff_ffff);
        bus.pio_write(
            PioAddress(0xcf8),
            0,
            &(CONFIG_ENABLE | 1 << 16).to_le_bytes(),
        );
        assert_eq!(read_cfc(&bus), 0xffff_ffff);
        bus.pio_write(
            PioAddress(0xcf8),
            0,
            &(CONFIG_ENABLE | 1 << 11 | 1 << 8).to_le_bytes(),
        );
        assert_eq!(read_cfc(&bus), 0xffff_ffff);
        // A narrow write to CONFIG_ADDRESS does not change it.
        cf8(&bus, 0, 0);
        bus.pio_write(PioAddress(0xcf8), 3, &[0x01]);
        assert_eq!(read_cfc(&bus), 0x0008_1b36);
        // A straddling data access is refused.
        let mut d = [0u8; 4];
        bus.pio_read(PioAddress(0xcf8), 6, &mut d);
        assert_eq!(d, [0xff; 4]);
    }

    #[test]
    fn bars_are_assigned_and_sized_through_cfc() {
        let (bus, _) = bus_with_device();
        cf8(&bus, 1, 4);
        assert_eq!(read_cfc(&bus), 0xc000_0000);
        cf8(&bus, 1, 6);
        assert_eq!(read_cfc(&bus), 0x0000_000c);
        cf8(&bus, 1, 7);
        assert_eq!(read_cfc(&bus), 0x1);
        // Sizing: disable decode, write all-ones, read masks.
        cf8(&bus, 1, 1);
        write_cfc(&bus, 0);
        cf8(&bus, 1, 4);
        write_cfc(&bus, 0xffff_ffff);
        assert_eq!(read_cfc(&bus), 0xffff_f000);
        cf8(&bus, 1, 6);
        write_cfc(&bus, 0xffff_ffff);
        assert_eq!(read_cfc(&bus), 0xfff0_000c);
        cf8(&bus, 1, 7);
        write_cfc(&bus, 0xffff_ffff);
        assert_eq!(read_cfc(&bus), 0xffff_ffff);
    }

    #[test]
    fn mmio_follows_the_programmed_bar() {
        let (bus, dev) = bus_with_device();
        let window = bus.mmio_window();
        let mut d = [0u8; 4];
        window.read(0xc000_0010, &mut d);
        assert_eq!(d, [0x10, 0x11, 0x12, 0x13]);
        window.read(0x1_0000_0004, &mut d);
        assert_eq!(d, [0x24, 0x25, 0x26, 0x27]);
        // The guest moves BAR0.
        cf8(&bus, 1, 4);
        write_cfc(&bus, 0xd000_0000);
        window.read(0xc000_0010, &mut d);
        assert_eq!(d, [0xff; 4]);
        window.write(0xd000_0ffc, &[1, 2, 3, 4]);
        assert_eq!(
            dev.lock().unwrap().last_write,
            Some((0, 0xffc, vec![1, 2, 3, 4]))
        );
        // An access crossing the BAR end is not routed.
        window.read(0xd000_0ffe, &mut d);
        assert_eq!(d, [0xff; 4]);
        // Memory decoding off: nothing routed.
        cf8(&bus, 1, 1);
        write_cfc(&bus, 0);
        window.read(0xd000_0000, &mut d);
        assert_eq!(d, [0xff; 4]);
        write_cfc(&bus, 0x2);
        window.read(0xd000_0000, &mut d);
        assert_eq!(d, [0, 1, 2, 3]);
    }

    #[test]
    fn overlapping_bar_is_not_routed() {
        let (bus, _) = bus_with_device();
        // Move the 64-bit BAR onto BAR0's range: refused by the route table, BAR0 still works.
        cf8(&bus, 1, 6);
        write_cfc(&bus, 0xc000_0000 | 0xc);
        cf8(&bus, 1, 7);
        write_cfc(&bus, 0);
        let window = bus.mmio_window();
        let mut d = [0u8; 1];
        window.read(0xc000_0000, &mut d);
        assert_eq!(d, [0x00]);
    }

    #[test]
    fn window_exhaustion() {
        let bus = PciBus::new(0xc000_0000..0xc000_1000, W64);
        let mut config = PciConfig::new(&PciHeader::default());
        config
            .add_bar(BarSpec {
                index: 0,
                size: 0x2000,
                kind: BarKind::Memory32,
                prefetchable: false,
            })
            .unwrap();
        let dev = Arc::new(Mutex::new(Regs {
            config,
            last_write: None,
        }));
        assert_eq!(
            bus.add_function(dev),
            Err(PciError::WindowExhausted(0x2000))
        );
    }
}
