//! A type-0 PCI configuration space: 256 bytes with per-bit write masks and BAR bookkeeping.

use crate::PciError;

/// Register (dword) indices and bits of the type-0 header.
pub mod reg {
    /// Vendor and device id.
    pub const ID: usize = 0;
    /// Command (low half) and status (high half).
    pub const COMMAND_STATUS: usize = 1;
    /// Class code, subclass, programming interface, revision.
    pub const CLASS_REVISION: usize = 2;
    /// BIST, header type, latency timer, cache line size.
    pub const BIST_HEADER_LATENCY_CACHE: usize = 3;
    /// The first BAR; BARs are dwords 4..=9.
    pub const BAR0: usize = 4;
    /// Subsystem vendor id and subsystem id.
    pub const SUBSYSTEM: usize = 11;
    /// Capabilities pointer.
    pub const CAPABILITIES: usize = 13;
    /// Interrupt line and pin.
    pub const INTERRUPT: usize = 15;
    /// Dwords in the configuration space.
    pub const COUNT: usize = 64;
    /// Command: I/O space, memory space, bus master, INTx disable.
    pub const COMMAND_WRITABLE: u32 = 0x0407;
    /// Command: memory space decoding.
    pub const COMMAND_MEMORY: u32 = 1 << 1;
    /// Command: INTx disable.
    pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
    /// Status: capabilities list present.
    pub const STATUS_CAP_LIST: u32 = 1 << 20;
    /// First byte of the capability area.
    pub const CAP_START: usize = 0x40;
}

/// Number of BARs in a type-0 header.
const NUM_BARS: usize = 6;
/// BAR low bits: 64-bit memory type.
const BAR_MEM_TYPE_64: u32 = 0b100;
/// BAR low bits: prefetchable.
const BAR_MEM_PREFETCH: u32 = 0b1000;

/// Identity of a PCI function.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PciHeader {
    /// Vendor id.
    pub vendor_id: u16,
    /// Device id.
    pub device_id: u16,
    /// Base class (e.g. 0x06 bridge, 0x03 display).
    pub class_code: u8,
    /// Sub-class.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision id.
    pub revision: u8,
    /// Subsystem vendor id.
    pub subsystem_vendor_id: u16,
    /// Subsystem id.
    pub subsystem_id: u16,
}

impl PciHeader {
    /// The identity in the first 64 bytes of a configuration space (what a client of an
    /// out-of-process device reads from it).
    pub fn from_config_bytes(bytes: &[u8; 64]) -> Self {
        let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
        PciHeader {
            vendor_id: u16_at(0),
            device_id: u16_at(2),
            revision: bytes[8],
            prog_if: bytes[9],
            subclass: bytes[10],
            class_code: bytes[11],
            subsystem_vendor_id: u16_at(0x2c),
            subsystem_id: u16_at(0x2e),
        }
    }
}

/// Width of a memory BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory BAR (placed below 4 GiB).
    Memory32,
    /// 64-bit memory BAR (uses two BAR slots; placed above RAM).
    Memory64,
}

/// A memory BAR a function implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    /// BAR slot, 0..=5 (a 64-bit BAR also takes `index + 1`).
    pub index: u8,
    /// Size in bytes: a power of two, at least 16 (use >= 4 KiB so the guest can map it).
    pub size: u64,
    /// 32- or 64-bit.
    pub kind: BarKind,
    /// Whether reads have no side effects (the guest may map it write-combining).
    pub prefetchable: bool,
}

impl BarSpec {
    /// The BAR that a register's low bits (`reg & 0xf`, memory BARs only) and a size describe.
    pub fn from_register(index: u8, register: u32, size: u64) -> Self {
        BarSpec {
            index,
            size,
            kind: if register & BAR_MEM_TYPE_64 != 0 {
                BarKind::Memory64
            } else {
                BarKind::Memory32
            },
            prefetchable: register & BAR_MEM_PREFETCH != 0,
        }
    }

    /// The read-only low bits of the BAR register.
    fn flag_bits(&self) -> u32 {
        let kind = match self.kind {
            BarKind::Memory32 => 0,
            BarKind::Memory64 => BAR_MEM_TYPE_64,
        };
        kind | if self.prefetchable {
            BAR_MEM_PREFETCH
        } else {
            0
        }
    }
}

/// A PCI configuration space (type-0 header plus capability area).
///
/// Each dword has a mask of bits the guest may write; everything else is read-only. BAR
/// registers are writable only in their address bits above the size, which gives the standard
/// sizing behaviour: after writing all-ones the guest reads back `!(size - 1) | flags`.
#[derive(Clone, Debug)]
pub struct PciConfig {
    regs: [u32; reg::COUNT],
    writable: [u32; reg::COUNT],
    bars: [Option<BarSpec>; NUM_BARS],
    next_cap: usize,
    last_cap: Option<usize>,
}

impl PciConfig {
    /// Index of the command/status dword.
    pub const COMMAND_STATUS: usize = reg::COMMAND_STATUS;
    /// Status bit 3 (dword bit 19): the function's INTx is asserted (PCI 2.3). Functions that
    /// raise INTx compose it into their `read_config` of [`PciConfig::COMMAND_STATUS`].
    pub const STATUS_INTERRUPT: u32 = 1 << 19;

    /// A configuration space with `header`'s identity, no BARs and no capabilities.
    pub fn new(header: &PciHeader) -> Self {
        let mut regs = [0u32; reg::COUNT];
        let mut writable = [0u32; reg::COUNT];
        regs[reg::ID] = u32::from(header.device_id) << 16 | u32::from(header.vendor_id);
        regs[reg::CLASS_REVISION] = u32::from(header.class_code) << 24
            | u32::from(header.subclass) << 16
            | u32::from(header.prog_if) << 8
            | u32::from(header.revision);
        regs[reg::SUBSYSTEM] =
            u32::from(header.subsystem_id) << 16 | u32::from(header.subsystem_vendor_id);
        writable[reg::COMMAND_STATUS] = reg::COMMAND_WRITABLE;
        // Cache line size and latency timer are plain storage.
        writable[reg::BIST_HEADER_LATENCY_CACHE] = 0x0000_ffff;
        // Interrupt line is storage for the OS; interrupt pin is read-only (0: none).
        writable[reg::INTERRUPT] = 0x0000_00ff;
        PciConfig {
            regs,
            writable,
            bars: [None; NUM_BARS],
            next_cap: reg::CAP_START,
            last_cap: None,
        }
    }

    /// Declares a memory BAR. The address starts at 0 (unassigned).
    pub fn add_bar(&mut self, spec: BarSpec) -> Result<(), PciError> {
        let idx = usize::from(spec.index);
        let slots = match spec.kind {
            BarKind::Memory32 => 1,
            BarKind::Memory64 => 2,
        };
        if idx + slots > NUM_BARS || (idx..idx + slots).any(|i| self.slot_used(i)) {
            return Err(PciError::BarSlot(spec.index));
        }
        if !spec.size.is_power_of_two() || spec.size < 16 {
            return Err(PciError::BarSize(spec.size));
        }
        if spec.kind == BarKind::Memory32 && spec.size > 1 << 31 {
            return Err(PciError::BarTooBigFor32Bit(spec.size));
        }
        let mask = !(spec.size - 1);
        self.regs[reg::BAR0 + idx] = spec.flag_bits();
        self.writable[reg::BAR0 + idx] = mask as u32 & !0xf;
        if spec.kind == BarKind::Memory64 {
            self.regs[reg::BAR0 + idx + 1] = 0;
            self.writable[reg::BAR0 + idx + 1] = (mask >> 32) as u32;
        }
        self.bars[idx] = Some(spec);
        Ok(())
    }

    fn slot_used(&self, i: usize) -> bool {
        self.bars[i].is_some()
            || (i > 0 && matches!(self.bars[i - 1], Some(b) if b.kind == BarKind::Memory64))
    }

    /// Appends a capability (`id`, then the next pointer, then `body`) to the capability list
    /// and returns its offset. The body is read-only to the guest unless the function
    /// overrides `write_config`.
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> Result<u8, PciError> {
        let len = (2 + body.len()).next_multiple_of(4);
        let offset = self.next_cap;
        if offset + len > reg::COUNT * 4 {
            return Err(PciError::CapabilitySpace(len));
        }
        self.set_byte(offset, id);
        self.set_byte(offset + 1, 0);
        for (i, b) in body.iter().enumerate() {
            self.set_byte(offset + 2 + i, *b);
        }
        match self.last_cap {
            Some(prev) => self.set_byte(prev + 1, offset as u8),
            None => {
                self.set_byte(reg::CAPABILITIES * 4, offset as u8);
                self.regs[reg::COMMAND_STATUS] |= reg::STATUS_CAP_LIST;
            }
        }
        self.last_cap = Some(offset);
        self.next_cap = offset + len;
        Ok(offset as u8)
    }

    fn set_byte(&mut self, offset: usize, value: u8) {
        let shift = (offset % 4) * 8;
        let r = &mut self.regs[offset / 4];
        *r = (*r & !(0xff << shift)) | (u32::from(value) << shift);
    }

    /// Reads dword `reg`; out-of-range registers read as 0.
    pub fn read_dword(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Reads `buf.len()` bytes at byte `offset` of the space (as a vfio-user config region
    /// read); bytes past the end read as 0xff.
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = offset
                .checked_add(i as u64)
                .and_then(|o| usize::try_from(o).ok())
                .filter(|&o| o < reg::COUNT * 4)
                .map_or(0xff, |o| self.regs[o / 4].to_le_bytes()[o % 4]);
        }
    }

    /// Writes `data` at byte `offset` of the space through the write masks, dword by dword
    /// (as a vfio-user config region write); bytes past the end are ignored.
    pub fn write_bytes(&mut self, offset: u64, data: &[u8]) {
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let mut done = 0;
        while done < data.len() {
            let Some(at) = start.checked_add(done) else {
                return;
            };
            let within = at % 4;
            let n = (4 - within).min(data.len() - done);
            self.write(at / 4, within, &data[done..done + n]);
            done += n;
        }
    }

    /// Writes `data` (1, 2 or 4 bytes) at byte `offset` of dword `reg`, through the write mask.
    /// Accesses that leave the dword or the space are ignored.
    pub fn write(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= reg::COUNT || data.is_empty() || offset + data.len() > 4 {
            return;
        }
        let mut value = 0u32;
        let mut mask = 0u32;
        for (i, b) in data.iter().enumerate() {
            let shift = (offset + i) * 8;
            value |= u32::from(*b) << shift;
            mask |= 0xff << shift;
        }
        let writable = self.writable[reg] & mask;
        self.regs[reg] = (self.regs[reg] & !writable) | (value & writable);
    }

    /// The BARs this function declared.
    pub fn bars(&self) -> impl Iterator<Item = BarSpec> + '_ {
        self.bars.iter().flatten().copied()
    }

    /// The address BAR `index` is programmed to (0 when unassigned), or `None` if no such BAR.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        let spec = self.bars.get(usize::from(index)).copied().flatten()?;
        let idx = usize::from(index);
        let low = u64::from(self.regs[reg::BAR0 + idx] & !0xf);
        let high = match spec.kind {
            BarKind::Memory32 => 0,
            BarKind::Memory64 => u64::from(self.regs[reg::BAR0 + idx + 1]),
        };
        Some(high << 32 | low)
    }

    /// Programs BAR `index` to `addr` as firmware would (the address must be size-aligned).
    pub fn set_bar_address(&mut self, index: u8, addr: u64) -> Result<(), PciError> {
        let spec = self
            .bars
            .get(usize::from(index))
            .copied()
            .flatten()
            .ok_or(PciError::BarSlot(index))?;
        let idx = usize::from(index);
        self.regs[reg::BAR0 + idx] = (addr as u32 & !0xf) | spec.flag_bits();
        if spec.kind == BarKind::Memory64 {
            self.regs[reg::BAR0 + idx + 1] = (addr >> 32) as u32;
        }
        Ok(())
    }

    /// Points the capability list at `offset` (the capabilities themselves live elsewhere: a
    /// VMM forwards reads above the header to an out-of-process device). 0 clears the list.
    pub fn set_capability_pointer(&mut self, offset: u8) {
        self.set_byte(reg::CAPABILITIES * 4, offset);
        if offset == 0 {
            self.regs[reg::COMMAND_STATUS] &= !reg::STATUS_CAP_LIST;
        } else {
            self.regs[reg::COMMAND_STATUS] |= reg::STATUS_CAP_LIST;
        }
    }

    /// Sets the interrupt pin register (1 = INTA .. 4 = INTD; 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_byte(reg::INTERRUPT * 4 + 1, pin);
    }

    /// Whether the guest set INTx Disable in the command register.
    pub fn intx_disabled(&self) -> bool {
        self.regs[reg::COMMAND_STATUS] & reg::COMMAND_INTX_DISABLE != 0
    }

    /// Whether memory decoding is enabled in the command register.
    pub fn memory_enabled(&self) -> bool {
        self.regs[reg::COMMAND_STATUS] & reg::COMMAND_MEMORY != 0
    }

    /// Turns memory decoding on, as firmware does after assigning BARs.
    pub fn enable_memory(&mut self) {
        self.regs[reg::COMMAND_STATUS] |= reg::COMMAND_MEMORY;
    }

    /// Whether a write to dword `reg` may change where BARs decode (a BAR or the command).
    pub fn affects_routing(reg: usize) -> bool {
        reg == reg::COMMAND_STATUS || (reg::BAR0..reg::BAR0 + NUM_BARS).contains(&reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> PciHeader {
        PciHeader {
            vendor_id: 0x10de,
            device_id: 0x2335,
            class_code: 0x03,
            subclass: 0x02,
            prog_if: 0,
            revision: 0xa1,
            subsystem_vendor_id: 0x10de,
            subsystem_id: 0x18be,
        }
    }

    #[test]
    fn identity_registers() {
        let c = PciConfig::new(&header());
        assert_eq!(c.read_dword(0), 0x2335_10de);
        assert_eq!(c.read_dword(2), 0x0302_00a1);
        assert_eq!(c.read_dword(11), 0x18be_10de);
        assert_eq!(c.read_dword(64), 0);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut c = PciConfig::new(&header());
        c.write(0, 0, &[0xff; 4]);
        c.write(2, 0, &[0; 4]);
        assert_eq!(c.read_dword(0), 0x2335_10de);
        assert_eq!(c.read_dword(2), 0x0302_00a1);
        // Command: only I/O, memory, master and INTx-disable bits stick.
        c.write(1, 0, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(c.read_dword(1), 0x0407);
        // Byte writes land on their own byte only.
        c.write(15, 0, &[0x0b]);
        c.write(15, 1, &[0x04]);
        assert_eq!(c.read_dword(15), 0x0b);
        // Accesses straddling the dword are dropped.
        c.write(3, 3, &[1, 2]);
        assert_eq!(c.read_dword(3), 0);
    }

    #[test]
    fn interrupt_pin_intx_disable_and_status() {
        let mut c = PciConfig::new(&header());
        c.set_interrupt_pin(1);
        assert_eq!(c.read_dword(15) >> 8 & 0xff, 1);
        c.write(15, 1, &[4]);
        assert_eq!(c.read_dword(15) >> 8 & 0xff, 1, "pin is read-only");
        assert!(!c.intx_disabled());
        c.write(1, 1, &[0x04]);
        assert!(c.intx_disabled());
        c.write(1, 2, &[0xff, 0xff]);
        assert_eq!(c.read_dword(1) >> 16, 0, "status bits are read-only");
    }

    #[test]
    fn bar32_sizing() {
        let mut c = PciConfig::new(&header());
        c.add_bar(BarSpec {
            index: 0,
            size: 0x100_0000,
            kind: BarKind::Memory32,
            prefetchable: false,
        })
        .unwrap();
        c.write(4, 0, &[0xff; 4]);
        assert_eq!(c.read_dword(4), 0xff00_0000);
        c.write(4, 0, &0xfd00_0000u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0xfd00_0000));
        // Unaligned low bits are dropped.
        c.write(4, 0, &0xfd12_3456u32.to_le_bytes());
        assert_eq!(c.bar_address(0), Some(0xfd00_0000));
        // Unimplemented BARs and the ROM BAR size to 0.
        c.write(5, 0, &[0xff; 4]);
        assert_eq!(c.read_dword(5), 0);
        c.write(12, 0, &[0xff; 4]);
        assert_eq!(c.read_dword(12), 0);
        assert_eq!(c.bar_address(1), None);
    }

    #[test]
    fn bar64_prefetchable_sizing() {
        let mut c = PciConfig::new(&header());
        c.add_bar(BarSpec {
            index: 2,
            size: 8 << 30,
            kind: BarKind::Memory64,
            prefetchable: true,
        })
        .unwrap();
        assert_eq!(c.read_dword(6), 0xc);
        c.write(6, 0, &[0xff; 4]);
        c.write(7, 0, &[0xff; 4]);
        assert_eq!(c.read_dword(6), 0x0000_000c);
        assert_eq!(c.read_dword(7), 0xffff_fffe);
        c.set_bar_address(2, 0x40_0000_0000).unwrap();
        assert_eq!(c.read_dword(6), 0xc);
        assert_eq!(c.read_dword(7), 0x40);
        assert_eq!(c.bar_address(2), Some(0x40_0000_0000));
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = PciConfig::new(&header());
        let bar = |index, size, kind| BarSpec {
            index,
            size,
            kind,
            prefetchable: false,
        };
        assert_eq!(
            c.add_bar(bar(6, 4096, BarKind::Memory32)),
            Err(PciError::BarSlot(6))
        );
        assert_eq!(
            c.add_bar(bar(5, 4096, BarKind::Memory64)),
            Err(PciError::BarSlot(5))
        );
        assert_eq!(
            c.add_bar(bar(0, 3000, BarKind::Memory32)),
            Err(PciError::BarSize(3000))
        );
        assert_eq!(
            c.add_bar(bar(0, 1 << 32, BarKind::Memory32)),
            Err(PciError::BarTooBigFor32Bit(1 << 32))
        );
        c.add_bar(bar(0, 4096, BarKind::Memory64)).unwrap();
        assert_eq!(
            c.add_bar(bar(1, 4096, BarKind::Memory32)),
            Err(PciError::BarSlot(1))
        );
        c.add_bar(bar(2, 4096, BarKind::Memory32)).unwrap();
        assert_eq!(c.bars().count(), 2);
    }

    #[test]
    fn capability_list_is_linked() {
        let mut c = PciConfig::new(&header());
        assert_eq!(c.add_capability(0x09, &[0xaa, 0xbb]).unwrap(), 0x40);
        assert_eq!(c.add_capability(0x05, &[0; 10]).unwrap(), 0x44);
        assert_ne!(c.read_dword(1) & (1 << 20), 0);
        assert_eq!(c.read_dword(13) & 0xff, 0x40);
        assert_eq!(c.read_dword(0x40 / 4), 0xbbaa_4409);
        assert_eq!(c.read_dword(0x44 / 4) & 0xffff, 0x0005);
        assert!(c.add_capability(0x09, &[0; 200]).is_err());
    }

    #[test]
    fn byte_access_matches_dword_access_and_stops_at_the_end() {
        let mut c = PciConfig::new(&header());
        c.add_bar(BarSpec {
            index: 0,
            size: 0x1000,
            kind: BarKind::Memory32,
            prefetchable: false,
        })
        .unwrap();
        let mut b = [0u8; 64];
        c.read_bytes(0, &mut b);
        assert_eq!(PciHeader::from_config_bytes(&b), header());
        // An unaligned write across the BAR dword goes through its mask.
        c.write_bytes(0x11, &[0xff, 0xff, 0xff]);
        assert_eq!(c.read_dword(reg::BAR0), 0xffff_f000);
        let mut tail = [0u8; 4];
        c.read_bytes(0xfe, &mut tail);
        assert_eq!(&tail[2..], &[0xff, 0xff]);
        c.write_bytes(u64::MAX, &[1, 2]);
        c.read_bytes(u64::MAX - 1, &mut tail);
        assert_eq!(tail, [0xff; 4]);
    }

    #[test]
    fn bar_spec_from_register_reads_the_flag_bits() {
        let b = BarSpec::from_register(2, 0b1100, 1 << 26);
        assert_eq!(b.kind, BarKind::Memory64);
        assert!(b.prefetchable);
        assert_eq!(BarSpec::from_register(0, 0, 0x1000).kind, BarKind::Memory32);
    }
}
