//! A PCI function served by a vfio-user server (`vgpud`'s vGPU instances):
//! `--vgpu socket=PATH[,intr=poll|intx]`, repeatable.
//!
//! * Config space: the header (identity, BARs, command) is this VMM's own [`PciConfig`], built
//!   from the server's header and region sizes, so the bus places and moves BARs as for any
//!   function; everything above the header (the capabilities) is read from and written to the
//!   server's config region.
//! * Trapped BARs: every guest access is an MMIO exit that becomes a region read or write on
//!   the socket (synchronous: the `vfio_user` client has no posted writes).
//! * mmap-able BARs (the vGPU's window): the fd the server sends with the region is mapped here
//!   and becomes a KVM memory slot at the BAR's address ([`BarSlot`]), so the guest and the
//!   daemon share those pages with no exits and no copies.
//! * Interrupts (`intr=intx`): INTA, level-triggered. The server signals every change of its
//!   line on an eventfd (vfio-user `SET_IRQS`, INTx index); a thread of this VMM reads the line
//!   from the server's status register and drives the GSI through `KVM_IRQ_LINE` ([`Intx`]),
//!   masked by Command.INTx_Disable and shown in Status.Interrupt (what `uio_pci_generic`
//!   needs). `intr=poll` (the default) leaves the pin at 0.
//! * Guest RAM is not shared with the server: the vGPU works only in its window.

use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvm_ioctls::VmFd;
use pci::{reg, BarKind, BarSpec};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_CONFIG_REGION_INDEX,
    VFIO_PCI_INTX_IRQ_INDEX,
};
use vfio_user::Client;
use vmm_sys_util::eventfd::EventFd;

use super::intx::{Intx, IrqLevel, KvmIrq};
use super::memory_slot::{BarSlot, KvmSlots, MemorySlots};
use crate::acpi;
use crate::pci::{PciBus, PciConfig, PciError, PciFunction};

/// KVM memory slot of the first device's first mapped BAR (RAM uses slots 0 and 1).
pub const BAR_SLOT_BASE: u32 = 8;

/// Config dwords this VMM keeps itself (the type-0 header); the rest goes to the server.
const HEADER_DWORDS: usize = 16;

/// Number of BARs.
const NUM_BARS: u8 = 6;

/// How the guest learns that the device needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntrMode {
    /// No interrupt pin: the guest polls (the default).
    Poll,
    /// INTx pin A, level-triggered, routed by the DSDT's `_PRT`.
    Intx,
}

/// What one `--vgpu` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VgpuSpec {
    /// The instance's vfio-user socket (`vgpuctl start` prints it).
    pub socket: PathBuf,
    /// Interrupt delivery.
    pub intr: IntrMode,
}

impl FromStr for VgpuSpec {
    type Err = String;

    /// `socket=PATH[,intr=poll|intx]`, keys in any order.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut socket = None;
        let mut intr = IntrMode::Poll;
        for item in s.split(',').filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not key=value"))?;
            match key {
                "socket" if !value.is_empty() => socket = Some(PathBuf::from(value)),
                "intr" => {
                    intr = match value {
                        "poll" => IntrMode::Poll,
                        "intx" => IntrMode::Intx,
                        _ => return Err(format!("intr {value:?} is not poll or intx")),
                    };
                }
                "type" | "gfid" | "window" => {
                    return Err(format!(
                        "--vgpu {key}= moved to vgpud: define and start an instance with \
                         vgpuctl and pass socket=PATH"
                    ))
                }
                _ => return Err(format!("unknown --vgpu key {key:?}")),
            }
        }
        Ok(Self {
            socket: socket.ok_or("--vgpu needs socket=PATH (vgpuctl start prints it)")?,
            intr,
        })
    }
}

/// Errors attaching a device.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The server could not be reached or refused the session.
    #[error("cannot attach {path}: {why}")]
    Connect {
        /// The socket.
        path: String,
        /// Why.
        why: String,
    },
    /// The server's regions do not describe a usable PCI function.
    #[error("{0}")]
    Device(String),
    /// The config space or the bus refused.
    #[error("cannot put the device on the PCI bus")]
    Pci(#[from] PciError),
}

/// What this VMM counts for one device (the daemon counts the rest).
#[derive(Debug, Default)]
pub struct Counters {
    /// Trapped BAR reads (MMIO exits, each a socket round trip).
    pub bar_reads: AtomicU64,
    /// Trapped BAR writes.
    pub bar_writes: AtomicU64,
    /// Config accesses forwarded to the server.
    pub config_forwards: AtomicU64,
    /// Interrupt line changes signalled by the server.
    pub irq_changes: AtomicU64,
}

/// A shared mapping of a region's fd, unmapped on drop.
struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; nothing here dereferences it (KVM and the guest
// do, through the slot).
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base..base + len` is the mapping made in `Mapping::new`, unmapped only here.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Mapping {
    fn new(fd: i32, offset: u64, len: u64) -> std::io::Result<Self> {
        let off = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let n = usize::try_from(len).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of an fd the server sent; owned by the returned value.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                off,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            base: base.cast(),
            len: n,
        })
    }
}

/// A mapped BAR: the slot goes before the mapping it points at (field order).
struct MappedBar {
    index: u8,
    slot: BarSlot,
    _mapping: Mapping,
}

fn lock(c: &Mutex<Client>) -> MutexGuard<'_, Client> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// The vfio-user device on this VMM's PCI bus.
pub struct VfioUserPci {
    config: PciConfig,
    client: Arc<Mutex<Client>>,
    mapped: Vec<MappedBar>,
    intx: Option<Arc<Intx>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for VfioUserPci {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioUserPci")
            .field("mapped_bars", &self.mapped.len())
            .field("intx", &self.intx.is_some())
            .finish_non_exhaustive()
    }
}

/// Reads `buf.len()` bytes of the server's config space; all-ones if the server is gone.
/// The server's INTx line: Status.Interrupt (byte 6, bit 3 of its config space); None when the
/// server no longer answers (its config reads as all-ones).
fn server_line(client: &Mutex<Client>) -> Option<bool> {
    let mut status = [0u8; 1];
    server_config_read(client, 6, &mut status);
    (status[0] != 0xff).then_some(status[0] & 0x08 != 0)
}

fn server_config_read(client: &Mutex<Client>, offset: u64, buf: &mut [u8]) {
    if lock(client)
        .region_read(VFIO_PCI_CONFIG_REGION_INDEX, offset, buf)
        .is_err()
    {
        buf.fill(0xff);
    }
}

impl VfioUserPci {
    /// Builds the function from `client`'s regions: KVM slots through `slots` from
    /// `first_slot` on (only inside `allowed`), INTx on `intx` if given.
    pub fn new(
        client: Client,
        slots: Arc<dyn MemorySlots + Sync>,
        first_slot: u32,
        allowed: Vec<std::ops::Range<u64>>,
        intx: Option<(Box<dyn IrqLevel>, u32)>,
    ) -> Result<Self, AttachError> {
        let client = Arc::new(Mutex::new(client));
        let mut header = [0u8; 64];
        server_config_read(&client, 0, &mut header);
        let id = pci::PciHeader::from_config_bytes(&header);
        if id.vendor_id == 0xffff {
            return Err(AttachError::Device(
                "the server's config space reads as all-ones".into(),
            ));
        }
        let mut config = PciConfig::new(&id);
        let dword = |i: usize| u32::from_le_bytes(header[4 * i..4 * i + 4].try_into().unwrap());
        let mut mapped = Vec::new();
        let mut index = 0u8;
        while index < NUM_BARS {
            let region = lock(&client).region(u32::from(index)).map(|r| {
                (
                    r.size,
                    r.file_offset
                        .as_ref()
                        .map(|fo| (fo.file().as_raw_fd(), fo.start())),
                    r.sparse_areas.clone(),
                )
            });
            let Some((size, fd, areas)) = region.filter(|r| r.0 > 0) else {
                index += 1;
                continue;
            };
            let bar = BarSpec::from_register(index, dword(reg::BAR0 + usize::from(index)), size);
            config.add_bar(bar)?;
            // A region mapped whole from its fd becomes a memory slot; anything else traps.
            if let (Some((fd, start)), [area]) = (fd, areas.as_slice()) {
                if area.offset == 0 && area.size == size {
                    let mapping = Mapping::new(fd, start, size).map_err(|e| {
                        AttachError::Device(format!("mapping BAR{index} from the server's fd: {e}"))
                    })?;
                    let host = mapping.base as u64;
                    let slot_no = first_slot + mapped.len() as u32;
                    // SAFETY: the mapping lives in the same `MappedBar`, dropped after the slot.
                    let slot = unsafe {
                        BarSlot::new(
                            Box::new(slots.clone()),
                            slot_no,
                            host,
                            size,
                            allowed.clone(),
                        )
                    };
                    mapped.push(MappedBar {
                        index,
                        slot,
                        _mapping: mapping,
                    });
                }
            }
            index += if bar.kind == BarKind::Memory64 { 2 } else { 1 };
        }
        config.set_capability_pointer(header[reg::CAPABILITIES * 4]);
        let counters = Arc::new(Counters::default());
        let intx = match intx {
            Some((irq, gsi)) => {
                config.set_interrupt_pin(1);
                Some(wire_intx(&client, irq, gsi, &counters)?)
            }
            None => None,
        };
        Ok(Self {
            config,
            client,
            mapped,
            intx,
            counters,
        })
    }

    /// The counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Where BAR `index` is mapped as a memory slot now, if it is a mapped BAR.
    pub fn mapped_at(&self, index: u8) -> Option<u64> {
        self.mapped
            .iter()
            .find(|m| m.index == index)
            .and_then(|m| m.slot.mapped_at())
    }

    /// Makes the memory slots and the INTx mask match the config space (after the bus or the
    /// guest changed it).
    pub fn sync(&mut self) {
        let decoding = self.config.memory_enabled();
        for m in &mut self.mapped {
            let wanted = self
                .config
                .bar_address(m.index)
                .filter(|&a| a != 0 && decoding);
            m.slot.place(wanted);
        }
        if let Some(intx) = &self.intx {
            let disabled = self.config.intx_disabled();
            if !disabled {
                // Unmasking a line this VMM still believes high: the guest has likely just
                // acknowledged the cause with a BAR0 write the INTx thread has not seen yet.
                self.fresh_line(intx);
            }
            intx.set_disabled(disabled);
        }
    }

    /// The server's line now (Status.Interrupt), when this VMM's copy says it is high: the
    /// copy may lag a BAR0 write that lowered it, and asserting on a stale high re-raises an
    /// interrupt whose cause is gone, again on every unmask. One round trip per interrupt.
    fn fresh_line(&self, intx: &Intx) -> bool {
        if !intx.device_level() {
            return false;
        }
        let level = server_line(&self.client).unwrap_or(false);
        intx.set_device_level(level);
        level
    }
}

/// INTx: the eventfd the server signals on each line change, and the thread that reads the
/// line (Status.Interrupt of the server's config) and drives the GSI.
fn wire_intx(
    client: &Arc<Mutex<Client>>,
    irq: Box<dyn IrqLevel>,
    gsi: u32,
    counters: &Arc<Counters>,
) -> Result<Arc<Intx>, AttachError> {
    let efd = EventFd::new(0).map_err(|e| AttachError::Device(format!("eventfd: {e}")))?;
    lock(client)
        .set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            &[efd.as_raw_fd()],
        )
        .map_err(|e| AttachError::Device(format!("SET_IRQS (INTx): {e}")))?;
    let intx = Arc::new(Intx::new(irq, gsi));
    let (client, line, counters) = (client.clone(), intx.clone(), counters.clone());
    std::thread::Builder::new()
        .name(format!("intx-{gsi}"))
        .spawn(move || {
            while efd.read().is_ok() {
                let Some(level) = server_line(&client) else {
                    tracing::warn!(gsi, "INTx: the server's config space is gone; line dropped");
                    line.set_device_level(false);
                    return;
                };
                counters.irq_changes.fetch_add(1, Ordering::Relaxed);
                line.set_device_level(level);
            }
        })
        .map_err(|e| AttachError::Device(format!("INTx thread: {e}")))?;
    Ok(intx)
}

impl PciFunction for VfioUserPci {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&self, reg: usize) -> u32 {
        if reg >= HEADER_DWORDS {
            self.counters
                .config_forwards
                .fetch_add(1, Ordering::Relaxed);
            let mut b = [0u8; 4];
            server_config_read(&self.client, (reg * 4) as u64, &mut b);
            return u32::from_le_bytes(b);
        }
        let v = self.config.read_dword(reg);
        match &self.intx {
            Some(i) if reg == PciConfig::COMMAND_STATUS && self.fresh_line(i) => {
                v | PciConfig::STATUS_INTERRUPT
            }
            _ => v,
        }
    }

    fn write_config(&mut self, reg: usize, offset: usize, data: &[u8]) {
        if reg >= HEADER_DWORDS {
            self.counters
                .config_forwards
                .fetch_add(1, Ordering::Relaxed);
            let _ = lock(&self.client).region_write(
                VFIO_PCI_CONFIG_REGION_INDEX,
                (reg * 4 + offset) as u64,
                data,
            );
            return;
        }
        self.config.write(reg, offset, data);
        if PciConfig::affects_routing(reg) {
            self.sync();
        }
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        self.counters.bar_reads.fetch_add(1, Ordering::Relaxed);
        if lock(&self.client)
            .region_read(u32::from(bar), offset, data)
            .is_err()
        {
            data.fill(0xff);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        self.counters.bar_writes.fetch_add(1, Ordering::Relaxed);
        let _ = lock(&self.client).region_write(u32::from(bar), offset, data);
    }
}

/// A device attached to a VM, kept by the caller for `--stats`.
#[derive(Debug)]
pub struct AttachedDevice {
    /// The PCI function (also held by the bus).
    pub function: Arc<Mutex<VfioUserPci>>,
    /// Its guest PCI slot.
    pub pci_slot: u8,
    /// The socket it came from.
    pub socket: PathBuf,
}

/// Connects to `spec`'s server and puts the device on `bus` as device `index` of this VM
/// (KVM slots and IRQs through `vm_fd`). Call before the vCPUs start.
pub fn attach(
    bus: &PciBus,
    vm_fd: Arc<VmFd>,
    spec: &VgpuSpec,
    index: u32,
) -> Result<AttachedDevice, AttachError> {
    let pci_slot = bus.next_free_slot().ok_or(PciError::BusFull)?;
    let path = spec.socket.display().to_string();
    let client = Client::new(&spec.socket).map_err(|e| AttachError::Connect {
        path: path.clone(),
        why: e.to_string(),
    })?;
    let intx = (spec.intr == IntrMode::Intx).then(|| {
        let irq: Box<dyn IrqLevel> = Box::new(KvmIrq(vm_fd.clone()));
        (irq, acpi::pci_intx_gsi(pci_slot, 0))
    });
    let function = VfioUserPci::new(
        client,
        Arc::new(KvmSlots(vm_fd)),
        BAR_SLOT_BASE + u32::from(NUM_BARS) * index,
        vec![bus.window32(), bus.window64()],
        intx,
    )?;
    let function = Arc::new(Mutex::new(function));
    let slot = bus.add_function(function.clone())?;
    debug_assert_eq!(slot, pci_slot);
    // The bus placed the BARs and enabled decoding through `config_mut`: map them.
    function.lock().unwrap_or_else(|e| e.into_inner()).sync();
    tracing::info!(socket = %path, slot, "vfio-user device attached");
    Ok(AttachedDevice {
        function,
        pci_slot,
        socket: spec.socket.clone(),
    })
}

/// The `--stats` lines of device `index`.
pub fn stats_report(index: usize, c: &Counters) -> String {
    let mut out = String::new();
    for (name, v) in [
        ("bar_reads", &c.bar_reads),
        ("bar_writes", &c.bar_writes),
        ("config_forwards", &c.config_forwards),
        ("irq_changes", &c.irq_changes),
    ] {
        let _ = writeln!(
            out,
            "stats: vgpu{index} {name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    out
}
