//! virtio-blk (virtio 1.2, 5.2) over a raw image ([`DiskImage`]):
//! `--disk path=IMG[,readonly|,snapshot][,overlay_mib=N]`.
//!
//! One request queue, served synchronously on the notifying vCPU through the virtio-pci
//! transport ([`super::virtio_pci`]). Features: `FLUSH`, `BLK_SIZE` (512), `SEG_MAX`, `RO`
//! for a read-only disk, `DISCARD` for a writable one.
//!
//! Every chain is hostile input. Its status byte is the last byte of its device-writable part;
//! a chain with none (or whose buffers are not guest RAM) is completed with a used length of 0
//! and nothing else. Reads, writes and discards are checked against the disk's capacity with
//! overflow-checked arithmetic and must be whole sectors, else `VIRTIO_BLK_S_IOERR`. Reads go
//! from the image straight into the guest's buffers (one copy, by the host kernel); writes, and
//! reads whose buffers cross a memory region, move through a fixed-size host buffer, so no
//! request makes the host allocate by its length.
//! Writes to a read-only disk get `VIRTIO_BLK_S_IOERR` with nothing written, as the
//! specification requires (5.2.6.2) and QEMU answers; so do snapshot writes past the overlay's
//! cap. A flush on a read-only disk succeeds (firmware such as OVMF flushes read-only disks).
//! Unknown request types get `VIRTIO_BLK_S_UNSUPP`, and so does a discard on a read-only disk,
//! which does not offer `DISCARD`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use kvm_ioctls::VmFd;
use virtio_bindings::virtio_blk::{
    virtio_blk_config, virtio_blk_outhdr, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD,
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_ID_BYTES,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{ByteValued, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

use super::disk_image::{DiskError, DiskImage, DiskMode, DEFAULT_OVERLAY_CAP, SECTOR_SIZE};
use super::intx::{Intx, KvmIrq};
use super::virtio_pci::{QueueBroken, VirtioDevice, VirtioPci};
use crate::acpi;
use crate::pci::{PciBus, PciError};

/// Entries of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes a request moves through the host per step (the host buffer's size).
const IO_CHUNK: usize = 64 << 10;
/// Most sectors one discard segment may cover (`max_discard_sectors`).
const MAX_DISCARD_SECTORS: u32 = u32::MAX >> 9;
/// Most segments in one discard request (`max_discard_seg`).
const MAX_DISCARD_SEG: u32 = 16;

/// A discard segment (`struct virtio_blk_discard_write_zeroes`).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
struct DiscardSegment {
    sector: u64,
    num_sectors: u32,
    flags: u32,
}
const _: () = assert!(std::mem::size_of::<DiscardSegment>() == 16);
// SAFETY: plain integers without padding (the size assertion above).
unsafe impl ByteValued for DiscardSegment {}

/// A request header as the guest wrote it.
#[derive(Debug, Clone, Copy, Default)]
#[repr(transparent)]
struct Header(virtio_blk_outhdr);
// SAFETY: `virtio_blk_outhdr` is two u32 and a u64, 16 bytes without padding.
unsafe impl ByteValued for Header {}

/// What one `--disk` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The raw image (a file or a block device).
    pub path: PathBuf,
    /// How it is used.
    pub mode: DiskMode,
    /// Cap of the snapshot overlay, bytes.
    pub overlay_cap: u64,
}

impl FromStr for DiskSpec {
    type Err = String;

    /// `path=IMG[,readonly|,snapshot][,overlay_mib=N]`, items in any order.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut path = None;
        let mut mode = DiskMode::ReadWrite;
        let mut overlay_cap = DEFAULT_OVERLAY_CAP;
        let set_mode = |m: DiskMode, mode: &mut DiskMode| {
            if *mode != DiskMode::ReadWrite && *mode != m {
                return Err("--disk takes one of readonly and snapshot".to_string());
            }
            *mode = m;
            Ok(())
        };
        for item in s.split(',').filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("path", p)) if !p.is_empty() => path = Some(PathBuf::from(p)),
                Some(("overlay_mib", n)) => {
                    let mib: u64 = n
                        .parse()
                        .map_err(|_| format!("overlay_mib {n:?} is not a number"))?;
                    overlay_cap = mib
                        .checked_mul(1 << 20)
                        .ok_or_else(|| format!("overlay_mib {n} is too large"))?;
                }
                None if item == "readonly" => set_mode(DiskMode::ReadOnly, &mut mode)?,
                None if item == "snapshot" => set_mode(DiskMode::Snapshot, &mut mode)?,
                _ => return Err(format!("unknown --disk item {item:?}")),
            }
        }
        Ok(Self {
            path: path.ok_or("--disk needs path=IMG")?,
            mode,
            overlay_cap,
        })
    }
}

/// Request counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockCounters {
    /// Read requests completed OK.
    pub reads: u64,
    /// Write requests completed OK.
    pub writes: u64,
    /// Flushes.
    pub flushes: u64,
    /// Requests answered with IOERR or UNSUPP.
    pub errors: u64,
    /// Chains dropped for having no status byte.
    pub dropped: u64,
}

/// The virtio-blk device model.
#[derive(Debug)]
pub struct Block {
    disk: DiskImage,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    counters: BlockCounters,
}

impl Block {
    /// A device over `disk`; `GET_ID` answers `serial` (cut to 20 bytes).
    pub fn new(disk: DiskImage, serial: &str) -> Self {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        let n = serial.len().min(id.len());
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        Self {
            disk,
            id,
            counters: BlockCounters::default(),
        }
    }

    /// The request counters.
    pub fn counters(&self) -> BlockCounters {
        self.counters
    }

    /// The disk image.
    pub fn disk(&self) -> &DiskImage {
        &self.disk
    }

    fn writable(&self) -> bool {
        self.disk.mode() != DiskMode::ReadOnly
    }

    fn config(&self) -> virtio_blk_config {
        let mut c = virtio_blk_config {
            capacity: self.disk.sectors(),
            seg_max: u32::from(QUEUE_SIZE) - 2,
            blk_size: SECTOR_SIZE as u32,
            num_queues: 1,
            ..Default::default()
        };
        if self.writable() {
            c.max_discard_sectors = MAX_DISCARD_SECTORS;
            c.max_discard_seg = MAX_DISCARD_SEG;
            c.discard_sector_alignment = 1;
        }
        c
    }

    /// Serves one chain; returns the used length, or `None` when the chain has no status
    /// byte the device can write (it is completed with length 0).
    pub fn handle_chain(
        &mut self,
        chain: DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> Option<u32> {
        let reader = chain.clone().reader(mem).ok();
        let mut writer = chain.clone().writer(mem).ok()?;
        let writable = writer.available_bytes();
        if writable == 0 {
            return None;
        }
        let mut status_writer = writer.split_at(writable - 1).ok()?;
        let (status, written) = match reader {
            Some(mut r) => self.execute(&mut r, &mut writer, &chain, mem),
            None => (VIRTIO_BLK_S_IOERR, 0),
        };
        if status != VIRTIO_BLK_S_OK {
            self.counters.errors += 1;
        }
        status_writer.write_all(&[status as u8]).ok()?;
        u32::try_from(written + 1).ok()
    }

    /// Runs the request; returns its status and the bytes it wrote into the chain's data.
    fn execute(
        &mut self,
        reader: &mut virtio_queue::Reader<'_>,
        data: &mut virtio_queue::Writer<'_>,
        chain: &DescriptorChain<&GuestMemoryMmap>,
        mem: &GuestMemoryMmap,
    ) -> (u32, usize) {
        let Ok(Header(hdr)) = reader.read_obj::<Header>() else {
            return (VIRTIO_BLK_S_IOERR, 0);
        };
        let sector = u64::from_le(hdr.sector);
        if u32::from_le(hdr.type_) == VIRTIO_BLK_T_IN {
            let len = data.available_bytes();
            return match writable_slices(chain, mem, len) {
                Some(slices) => match self.read_into(sector, len, &slices) {
                    VIRTIO_BLK_S_OK => (VIRTIO_BLK_S_OK, len),
                    status => (status, 0),
                },
                None => (self.read(sector, data), data.bytes_written()),
            };
        }
        let status = self.execute_other(u32::from_le(hdr.type_), sector, reader, data);
        (status, data.bytes_written())
    }

    fn execute_other(
        &mut self,
        type_: u32,
        sector: u64,
        reader: &mut virtio_queue::Reader<'_>,
        data: &mut virtio_queue::Writer<'_>,
    ) -> u32 {
        match type_ {
            VIRTIO_BLK_T_OUT => self.write(sector, reader),
            VIRTIO_BLK_T_FLUSH => match self.disk.flush() {
                Ok(()) => {
                    self.counters.flushes += 1;
                    VIRTIO_BLK_S_OK
                }
                Err(e) => io_error("flush", &e),
            },
            VIRTIO_BLK_T_GET_ID => {
                let n = data.available_bytes().min(self.id.len());
                match data.write_all(&self.id[..n]) {
                    Ok(()) => VIRTIO_BLK_S_OK,
                    Err(_) => VIRTIO_BLK_S_IOERR,
                }
            }
            VIRTIO_BLK_T_DISCARD if self.writable() => self.discard(reader),
            _ => VIRTIO_BLK_S_UNSUPP,
        }
    }

    /// The byte offset of `sector` if `len` bytes from there are whole sectors on the disk.
    fn checked_range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        (len.is_multiple_of(SECTOR_SIZE) && self.disk.check_range(offset, len).is_ok())
            .then_some(offset)
    }

    /// A read straight into the guest's buffers (`len` bytes over `slices`).
    fn read_into(&mut self, sector: u64, len: usize, slices: &[VolatileSlice<'_, ()>]) -> u32 {
        let Some(mut offset) = self.checked_range(sector, len as u64) else {
            return VIRTIO_BLK_S_IOERR;
        };
        for slice in slices {
            if let Err(e) = self.disk.read_into(offset, slice) {
                return io_error("read", &e);
            }
            offset += slice.len() as u64;
        }
        self.counters.reads += 1;
        VIRTIO_BLK_S_OK
    }

    /// A read through the host buffer, for data buffers that are not each inside one region
    /// of guest memory.
    fn read(&mut self, sector: u64, data: &mut virtio_queue::Writer<'_>) -> u32 {
        let len = data.available_bytes();
        let Some(offset) = self.checked_range(sector, len as u64) else {
            return VIRTIO_BLK_S_IOERR;
        };
        let mut buf = vec![0u8; len.min(IO_CHUNK)];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(IO_CHUNK);
            if let Err(e) = self.disk.read_at(offset + done as u64, &mut buf[..n]) {
                return io_error("read", &e);
            }
            if data.write_all(&buf[..n]).is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
            done += n;
        }
        self.counters.reads += 1;
        VIRTIO_BLK_S_OK
    }

    fn write(&mut self, sector: u64, reader: &mut virtio_queue::Reader<'_>) -> u32 {
        if !self.writable() {
            return VIRTIO_BLK_S_IOERR;
        }
        let len = reader.available_bytes();
        let Some(offset) = self.checked_range(sector, len as u64) else {
            return VIRTIO_BLK_S_IOERR;
        };
        let mut buf = vec![0u8; len.min(IO_CHUNK)];
        let mut done = 0usize;
        while done < len {
            let n = (len - done).min(IO_CHUNK);
            if reader.read_exact(&mut buf[..n]).is_err() {
                return VIRTIO_BLK_S_IOERR;
            }
            if let Err(e) = self.disk.write_at(offset + done as u64, &buf[..n]) {
                return io_error("write", &e);
            }
            done += n;
        }
        self.counters.writes += 1;
        VIRTIO_BLK_S_OK
    }

    fn discard(&mut self, reader: &mut virtio_queue::Reader<'_>) -> u32 {
        let size = std::mem::size_of::<DiscardSegment>();
        let segments = reader.available_bytes() / size;
        if segments == 0
            || segments > MAX_DISCARD_SEG as usize
            || !reader.available_bytes().is_multiple_of(size)
        {
            return VIRTIO_BLK_S_IOERR;
        }
        for _ in 0..segments {
            let Ok(seg) = reader.read_obj::<DiscardSegment>() else {
                return VIRTIO_BLK_S_IOERR;
            };
            // Discard defines no flags (UNMAP belongs to write-zeroes): 5.2.6.2.
            if u32::from_le(seg.flags) != 0 {
                return VIRTIO_BLK_S_UNSUPP;
            }
            let sectors = u32::from_le(seg.num_sectors);
            if sectors > MAX_DISCARD_SECTORS {
                return VIRTIO_BLK_S_IOERR;
            }
            let len = u64::from(sectors) * SECTOR_SIZE;
            let Some(offset) = self.checked_range(u64::from_le(seg.sector), len) else {
                return VIRTIO_BLK_S_IOERR;
            };
            if let Err(e) = self.disk.discard(offset, len) {
                return io_error("discard", &e);
            }
        }
        VIRTIO_BLK_S_OK
    }
}

/// The first `len` bytes of `chain`'s device-writable buffers as guest memory slices, or
/// `None` when one of them does not lie inside one memory region.
fn writable_slices<'m>(
    chain: &DescriptorChain<&'m GuestMemoryMmap>,
    mem: &'m GuestMemoryMmap,
    len: usize,
) -> Option<Vec<VolatileSlice<'m, ()>>> {
    let mut slices = Vec::new();
    let mut left = len;
    for desc in chain.clone().filter(|d| d.is_write_only()) {
        if left == 0 {
            break;
        }
        let n = (desc.len() as usize).min(left);
        slices.push(mem.get_slice(desc.addr(), n).ok()?);
        left -= n;
    }
    (left == 0).then_some(slices)
}

fn io_error(what: &str, e: &DiskError) -> u32 {
    tracing::debug!("virtio-blk {what}: {e}");
    VIRTIO_BLK_S_IOERR
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let mut f =
            1u64 << VIRTIO_BLK_F_FLUSH | 1 << VIRTIO_BLK_F_BLK_SIZE | 1 << VIRTIO_BLK_F_SEG_MAX;
        if self.writable() {
            f |= 1 << VIRTIO_BLK_F_DISCARD;
        } else {
            f |= 1 << VIRTIO_BLK_F_RO;
        }
        f
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn pci_class(&self) -> (u8, u8, u8) {
        // Mass storage, SCSI: what QEMU's virtio-blk-pci reports.
        (0x01, 0x00, 0x00)
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config();
        // SAFETY: `virtio_blk_config` is a packed plain-data struct; viewing it as bytes reads
        // only initialised integers.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&config as *const virtio_blk_config).cast::<u8>(),
                std::mem::size_of::<virtio_blk_config>(),
            )
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| bytes.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn process_queue(
        &mut self,
        _index: usize,
        queue: &mut Queue,
        mem: &GuestMemoryMmap,
    ) -> Result<bool, QueueBroken> {
        let mut used = false;
        // Bounded per notify so a driver that keeps refilling cannot hold the vCPU forever;
        // what is left is served at its next notify.
        for _ in 0..4 * u32::from(QUEUE_SIZE) {
            // An impossible available index (more new entries than the queue has) is an error
            // of `iter`; the device then needs a reset.
            let Some(chain) = queue.iter(mem).map_err(|_| QueueBroken)?.next() else {
                break;
            };
            let head = chain.head_index();
            let len = self.handle_chain(chain, mem).unwrap_or_else(|| {
                self.counters.dropped += 1;
                0
            });
            if queue.add_used(mem, head, len).is_err() {
                return Err(QueueBroken);
            }
            used = true;
        }
        Ok(used)
    }
}

/// The block device on the PCI bus.
pub type BlockPci = VirtioPci<Block>;

/// Errors adding a disk.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The PCI bus.
    #[error("cannot put the disk on the PCI bus")]
    Pci(#[from] PciError),
}

/// Opens `spec`'s image and puts a virtio-blk function on `bus` (INTA through the DSDT's
/// `_PRT`, driven with `KVM_IRQ_LINE` on `vm_fd`). Call before the vCPUs start.
pub fn attach(
    bus: &PciBus,
    vm_fd: Arc<VmFd>,
    mem: GuestMemoryMmap,
    spec: &DiskSpec,
    index: usize,
) -> Result<Arc<Mutex<BlockPci>>, BlockError> {
    let slot = bus.next_free_slot().ok_or(PciError::BusFull)?;
    let disk = DiskImage::open(&spec.path, spec.mode, spec.overlay_cap)?;
    tracing::info!(
        path = %spec.path.display(),
        sectors = disk.sectors(),
        mode = ?spec.mode,
        slot,
        "virtio-blk disk attached"
    );
    let intx = Arc::new(Intx::new(
        Box::new(KvmIrq(vm_fd)),
        acpi::pci_intx_gsi(slot, 0),
    ));
    let block = Block::new(disk, &format!("vgpu-disk{index}"));
    let function = Arc::new(Mutex::new(VirtioPci::new(block, mem, intx)?));
    bus.add_function(function.clone())?;
    Ok(function)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::split::Descriptor;
    use virtio_queue::desc::RawDescriptor;
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const HDR: u64 = 0x10_0000;
    const DATA: u64 = 0x20_0000;
    const STATUS: u64 = 0x30_0000;
    const W: u16 = VRING_DESC_F_WRITE as u16;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    /// A 16-sector image whose byte i is i % 251, and a device over it.
    fn block(mode: DiskMode, overlay_cap: u64) -> (Block, tempfile::NamedTempFile) {
        let f = tempfile::NamedTempFile::new().unwrap();
        let data: Vec<u8> = (0..16 * 512).map(|i| (i % 251) as u8).collect();
        std::fs::write(f.path(), data).unwrap();
        let disk = DiskImage::open(f.path(), mode, overlay_cap).unwrap();
        (Block::new(disk, "serial-0123456789-abcdef"), f)
    }

    fn header(mem: &GuestMemoryMmap, kind: u32, sector: u64) {
        mem.write_obj(
            Header(virtio_blk_outhdr {
                type_: kind,
                ioprio: 0,
                sector,
            }),
            GuestAddress(HDR),
        )
        .unwrap();
    }

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(Descriptor::new(addr, len, flags, 0))
    }

    /// Runs one chain of `descs` and returns (used length, status byte).
    fn run(b: &mut Block, mem: &GuestMemoryMmap, descs: &[RawDescriptor]) -> (Option<u32>, u8) {
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let q = MockSplitQueue::new(mem, 16);
        let chain = q.build_desc_chain(descs).unwrap();
        let used = b.handle_chain(chain, mem);
        (used, mem.read_obj(GuestAddress(STATUS)).unwrap())
    }

    fn io(
        b: &mut Block,
        mem: &GuestMemoryMmap,
        kind: u32,
        sector: u64,
        len: u32,
    ) -> (Option<u32>, u8) {
        header(mem, kind, sector);
        let data_flags = if matches!(kind, VIRTIO_BLK_T_IN | VIRTIO_BLK_T_GET_ID) {
            W
        } else {
            0
        };
        run(
            b,
            mem,
            &[
                desc(HDR, 16, 0),
                desc(DATA, len, data_flags),
                desc(STATUS, 1, W),
            ],
        )
    }

    fn ok() -> u8 {
        VIRTIO_BLK_S_OK as u8
    }
    fn ioerr() -> u8 {
        VIRTIO_BLK_S_IOERR as u8
    }

    #[test]
    fn reads_the_last_sector_and_not_past_it() {
        let mem = memory();
        let (mut b, f) = block(DiskMode::ReadOnly, 0);
        let file = std::fs::read(f.path()).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, 15, 512),
            (Some(513), ok())
        );
        let mut got = vec![0u8; 512];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, file[15 * 512..]);
        // One sector past the end, two sectors from the last, and a sector number whose byte
        // offset overflows.
        mem.write_slice(&[0xaa; 1024], GuestAddress(DATA)).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, 16, 512),
            (Some(1), ioerr())
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, 15, 1024),
            (Some(1), ioerr())
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, u64::MAX / 256, 512),
            (Some(1), ioerr())
        );
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, [0xaa; 512], "nothing was read into the guest");
        assert_eq!(b.counters().reads, 1);
        assert_eq!(b.counters().errors, 3);
    }

    #[test]
    fn zero_length_and_unaligned_requests() {
        let mem = memory();
        let (mut b, _f) = block(DiskMode::Snapshot, 1 << 20);
        // A read with no data buffer: the only writable byte is the status.
        header(&mem, VIRTIO_BLK_T_IN, 3);
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]),
            (Some(1), ok())
        );
        header(&mem, VIRTIO_BLK_T_IN, 17);
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]),
            (Some(1), ioerr()),
            "a zero-length read past the end"
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, 0, 100),
            (Some(1), ioerr())
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_OUT, 0, 513),
            (Some(1), ioerr())
        );
        // A header shorter than 16 bytes.
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 8, 0), desc(STATUS, 1, W)]),
            (Some(1), ioerr())
        );
    }

    #[test]
    fn writes_at_the_last_sector_go_to_the_snapshot_only() {
        let mem = memory();
        let (mut b, f) = block(DiskMode::Snapshot, 1 << 20);
        let before = std::fs::read(f.path()).unwrap();
        mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(io(&mut b, &mem, VIRTIO_BLK_T_OUT, 15, 512), (Some(1), ok()));
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_OUT, 16, 512),
            (Some(1), ioerr())
        );
        mem.write_slice(&[0; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_IN, 15, 512),
            (Some(513), ok())
        );
        let mut got = vec![0u8; 512];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        assert_eq!(got, [0x5a; 512]);
        assert_eq!(std::fs::read(f.path()).unwrap(), before);
        assert_eq!(b.counters().writes, 1);
    }

    #[test]
    fn a_read_over_several_buffers_sees_the_file_and_the_snapshot_writes() {
        let mem = memory();
        let (mut b, f) = block(DiskMode::Snapshot, 1 << 20);
        let mut model = std::fs::read(f.path()).unwrap();
        mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(io(&mut b, &mem, VIRTIO_BLK_T_OUT, 9, 512), (Some(1), ok()));
        model[9 * 512..10 * 512].fill(0x5a);
        // Sectors 8-11 into three buffers of odd sizes, in reverse address order.
        header(&mem, VIRTIO_BLK_T_IN, 8);
        let bufs = [(DATA + 0x3000, 700u32), (DATA + 0x2000, 1000), (DATA, 348)];
        let mut descs = vec![desc(HDR, 16, 0)];
        descs.extend(bufs.iter().map(|&(a, n)| desc(a, n, W)));
        descs.push(desc(STATUS, 1, W));
        assert_eq!(run(&mut b, &mem, &descs), (Some(2049), ok()));
        let mut got = Vec::new();
        for (a, n) in bufs {
            let mut part = vec![0u8; n as usize];
            mem.read_slice(&mut part, GuestAddress(a)).unwrap();
            got.extend(part);
        }
        assert!(
            got == model[8 * 512..12 * 512],
            "the guest got the disk's bytes"
        );
    }

    #[test]
    fn snapshot_writes_past_the_overlay_cap_fail() {
        let mem = memory();
        let (mut b, _f) = block(DiskMode::Snapshot, 4096);
        assert_eq!(io(&mut b, &mem, VIRTIO_BLK_T_OUT, 0, 4096), (Some(1), ok()));
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_OUT, 8, 512),
            (Some(1), ioerr())
        );
        assert_eq!(b.disk().overlay_bytes(), 4096);
    }

    #[test]
    fn read_only_disks_refuse_writes_and_discards() {
        let mem = memory();
        let (mut b, f) = block(DiskMode::ReadOnly, 0);
        let before = std::fs::read(f.path()).unwrap();
        assert_ne!(b.features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(b.features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_OUT, 0, 512),
            (Some(1), ioerr())
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_DISCARD, 0, 16),
            (Some(1), VIRTIO_BLK_S_UNSUPP as u8)
        );
        assert_eq!(std::fs::read(f.path()).unwrap(), before);
    }

    #[test]
    fn chains_without_a_status_byte_are_dropped() {
        let mem = memory();
        let (mut b, _f) = block(DiskMode::ReadWrite, 0);
        header(&mem, VIRTIO_BLK_T_OUT, 0);
        // Only readable descriptors.
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(DATA, 512, 0)]).0,
            None
        );
        // A writable descriptor of length 0.
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(STATUS, 0, W)]).0,
            None
        );
        // A status descriptor outside guest memory.
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(0x1_0000_0000, 1, W)]).0,
            None
        );
        // A header outside guest memory, status fine: IOERR.
        assert_eq!(
            run(
                &mut b,
                &mem,
                &[desc(0x1_0000_0000, 16, 0), desc(STATUS, 1, W)]
            ),
            (Some(1), ioerr())
        );
    }

    #[test]
    fn flush_get_id_discard_and_unknown_types() {
        let mem = memory();
        let (mut b, _f) = block(DiskMode::ReadWrite, 0);
        header(&mem, VIRTIO_BLK_T_FLUSH, 0);
        assert_eq!(
            run(&mut b, &mem, &[desc(HDR, 16, 0), desc(STATUS, 1, W)]),
            (Some(1), ok())
        );
        assert_eq!(b.counters().flushes, 1);
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_GET_ID, 0, 20),
            (Some(21), ok())
        );
        let mut id = [0u8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"serial-0123456789-ab");
        // A short ID buffer gets what fits.
        assert_eq!(io(&mut b, &mem, VIRTIO_BLK_T_GET_ID, 0, 4), (Some(5), ok()));
        // Discard: one segment inside the disk, then one past it, then flags.
        let seg = |sector: u64, n: u32, flags: u32| DiscardSegment {
            sector,
            num_sectors: n,
            flags,
        };
        mem.write_obj(seg(8, 8, 0), GuestAddress(DATA)).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_DISCARD, 0, 16),
            (Some(1), ok())
        );
        mem.write_obj(seg(8, 9, 0), GuestAddress(DATA)).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_DISCARD, 0, 16),
            (Some(1), ioerr())
        );
        mem.write_obj(seg(0, 1, 1), GuestAddress(DATA)).unwrap();
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_DISCARD, 0, 16),
            (Some(1), VIRTIO_BLK_S_UNSUPP as u8)
        );
        assert_eq!(
            io(&mut b, &mem, VIRTIO_BLK_T_DISCARD, 0, 15),
            (Some(1), ioerr())
        );
        assert_eq!(
            io(&mut b, &mem, 0x7777, 0, 512),
            (Some(1), VIRTIO_BLK_S_UNSUPP as u8)
        );
    }

    #[test]
    fn the_queue_completes_every_chain_and_config_reads_capacity() {
        let mem = memory();
        let (mut b, _f) = block(DiskMode::ReadOnly, 0);
        let q = MockSplitQueue::new(&mem, 16);
        header(&mem, VIRTIO_BLK_T_IN, 0);
        // Chain 1: a read; chain 2: no status byte.
        q.add_desc_chains(
            &[
                RawDescriptor::from(Descriptor::new(HDR, 16, VRING_DESC_F_NEXT as u16, 1)),
                RawDescriptor::from(Descriptor::new(
                    DATA,
                    512,
                    (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16,
                    2,
                )),
                desc(STATUS, 1, W),
                desc(HDR, 16, 0),
            ],
            0,
        )
        .unwrap();
        let mut queue: Queue = q.create_queue().unwrap();
        assert_eq!(b.process_queue(0, &mut queue, &mem), Ok(true));
        assert_eq!(q.used().idx().load(), 2);
        assert_eq!(b.counters().dropped, 1);
        let mut cap = [0u8; 8];
        b.read_config(offset_of!(virtio_blk_config, capacity) as u64, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 16);
        let mut past = [0xffu8; 4];
        b.read_config(0x1000, &mut past);
        assert_eq!(past, [0; 4]);
    }

    #[test]
    fn disk_specs_parse_and_reject() {
        let s: DiskSpec = "path=/a.img,snapshot,overlay_mib=8".parse().unwrap();
        assert_eq!(
            (s.path.to_str(), s.mode, s.overlay_cap),
            (Some("/a.img"), DiskMode::Snapshot, 8 << 20)
        );
        let s: DiskSpec = "readonly,path=/b".parse().unwrap();
        assert_eq!(s.mode, DiskMode::ReadOnly);
        assert_eq!(
            "path=/c".parse::<DiskSpec>().unwrap().mode,
            DiskMode::ReadWrite
        );
        for bad in [
            "",
            "readonly",
            "path=",
            "path=/a,snapshot,readonly",
            "path=/a,cache=none",
            "path=/a,overlay_mib=x",
        ] {
            assert!(bad.parse::<DiskSpec>().is_err(), "{bad:?} accepted");
        }
    }
}
