//! Everything the guest sees, as constants and `#[repr(C)]` types: PCI identity, BAR layout,
//! BAR0 register offsets and bits, the virtio-pci structure offsets, and the escape-queue request
//! format. `PROTOCOL.md` describes the same protocol in prose; this module is its source of truth.

/// PCI vendor id: NVIDIA. The class code below keeps every guest driver off the function.
pub const PCI_VENDOR_ID: u16 = 0x10de;
/// PCI device id. Not a real NVIDIA product id (none of nouveau's, nvidiafb's, snd-hda's,
/// i2c-nvidia-gpu's or nvgrace-gpu-vfio's tables names it), so nothing binds even by id.
pub const PCI_DEVICE_ID: u16 = 0x7f61;
/// PCI subsystem vendor id.
pub const PCI_SUBSYSTEM_VENDOR_ID: u16 = 0x10de;
/// PCI subsystem id: the protocol's major version, so a guest driver can filter by it.
pub const PCI_SUBSYSTEM_ID: u16 = PROTOCOL_VERSION_MAJOR;
/// PCI class: processing accelerator (0x12). nouveau and nvidiafb bind NVIDIA functions by
/// display class (0x03), so class 0x12 leaves the function to userspace.
pub const PCI_CLASS: u8 = 0x12;
/// PCI subclass (0x00: processing accelerator).
pub const PCI_SUBCLASS: u8 = 0x00;
/// PCI programming interface.
pub const PCI_PROG_IF: u8 = 0x00;
/// PCI revision: the protocol's minor version.
pub const PCI_REVISION: u8 = PROTOCOL_VERSION_MINOR as u8;

/// Protocol major version: incompatible changes bump it.
pub const PROTOCOL_VERSION_MAJOR: u16 = 1;
/// Protocol minor version: compatible additions bump it.
pub const PROTOCOL_VERSION_MINOR: u16 = 2;
/// `VERSION` register value: major << 16 | minor.
pub const PROTOCOL_VERSION: u32 =
    (PROTOCOL_VERSION_MAJOR as u32) << 16 | PROTOCOL_VERSION_MINOR as u32;
/// `MAGIC` register value: the bytes "VGPU" in memory order.
pub const MAGIC: u32 = u32::from_le_bytes(*b"VGPU");

/// BAR index of the trapped register file (also holds the virtio-pci structures).
pub const BAR0: u8 = 0;
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x2000;
/// BAR index of the host-visible window (64-bit, prefetchable, RAM-backed).
pub const BAR2: u8 = 2;
/// Default window size: 64 MiB.
pub const DEFAULT_WINDOW_SIZE: u64 = 64 << 20;
/// Smallest window: 64 KiB.
pub const MIN_WINDOW_SIZE: u64 = 64 << 10;
/// Largest window: 16 GiB.
pub const MAX_WINDOW_SIZE: u64 = 16 << 30;

/// BAR0 register offsets (all 32-bit registers, 4-byte aligned).
pub mod reg {
    /// RO: [`super::MAGIC`].
    pub const MAGIC: u32 = 0x000;
    /// RO: [`super::PROTOCOL_VERSION`].
    pub const VERSION: u32 = 0x004;
    /// RO: this vGPU's GFID.
    pub const GFID: u32 = 0x008;
    /// RO: feature bits ([`super::features`]).
    pub const FEATURES: u32 = 0x00c;
    /// RO: window size in bytes, low half.
    pub const WINDOW_SIZE_LO: u32 = 0x010;
    /// RO: window size in bytes, high half.
    pub const WINDOW_SIZE_HI: u32 = 0x014;
    /// W1C: pending interrupt causes ([`super::intr`]); writing 1s acknowledges them.
    pub const INTR_STATUS: u32 = 0x020;
    /// RW: which causes assert the interrupt line (reset 0: the guest polls).
    pub const INTR_ENABLE: u32 = 0x024;
    /// W1C: sticky error causes ([`super::error`]); writing 1s clears them.
    pub const ERROR_STATUS: u32 = 0x030;
    /// RO: the last doorbell token refused (not a channel of this vGPU).
    pub const LAST_REJECTED_TOKEN: u32 = 0x034;
    /// RO: why the last request chain was malformed ([`super::QueueFault`] as u32).
    pub const LAST_QUEUE_FAULT: u32 = 0x038;
    /// RO: accepted doorbell writes, low half (high half at +4).
    pub const DOORBELLS_LO: u32 = 0x040;
    /// RO: refused doorbell writes, low half (high half at +4).
    pub const DOORBELLS_REJECTED_LO: u32 = 0x048;
    /// RO: queue notifications, low half (high half at +4).
    pub const QUEUE_NOTIFIES_LO: u32 = 0x050;
    /// RO: requests completed (any result), low half (high half at +4).
    pub const REQUESTS_LO: u32 = 0x058;
    /// RO: malformed request chains, low half (high half at +4).
    pub const REQUEST_ERRORS_LO: u32 = 0x060;
    /// WO: usermode doorbell, `NVC361_NOTIFY_CHANNEL_PENDING`: write a work-submit token.
    pub const DOORBELL: u32 = 0x090;
    /// RW: window offset of the driver's doorbell mailbox, 0 for none (since 1.2).
    pub const DOORBELL_MAILBOX: u32 = 0x098;
    /// End of the register file; the virtio structures follow.
    pub const END: u32 = 0x1000;
}

/// `FEATURES` register bits.
pub mod features {
    /// The escape virtqueue is present.
    pub const ESCAPE_QUEUE: u32 = 1 << 0;
    /// `MAPPING_READ` / `MAPPING_WRITE` requests are served.
    pub const MAPPING_COPY: u32 = 1 << 1;
    /// `NV_ESC_RM_ALLOC_MEMORY` with `NV01_MEMORY_SYSTEM_OS_DESCRIPTOR` wraps window pages
    /// (`pMemory` = window offset) as a memory object the GPU uses in place (since 1.1).
    pub const WINDOW_MEMORY: u32 = 1 << 2;
    /// Doorbells posted in a mailbox in the window, drained by the device while it polls
    /// (since 1.2, see [`super::mailbox`]).
    pub const DOORBELL_MAILBOX: u32 = 1 << 3;
    /// All features of this protocol version.
    pub const ALL: u32 = ESCAPE_QUEUE | MAPPING_COPY | WINDOW_MEMORY | DOORBELL_MAILBOX;
}

/// `INTR_STATUS` / `INTR_ENABLE` bits.
pub mod intr {
    /// The device put buffers in the used ring (virtio ISR bit 0).
    pub const QUEUE: u32 = 1 << 0;
    /// Device configuration changed (virtio ISR bit 1; never raised by this version).
    pub const CONFIG: u32 = 1 << 1;
    /// A new `ERROR_STATUS` bit was set.
    pub const ERROR: u32 = 1 << 2;
    /// All defined bits.
    pub const ALL: u32 = QUEUE | CONFIG | ERROR;
}

/// `ERROR_STATUS` bits (sticky until written back as 1).
pub mod error {
    /// A doorbell named a token that is not a channel of this vGPU.
    pub const DOORBELL_REJECTED: u32 = 1 << 0;
    /// A request chain was malformed (see `LAST_QUEUE_FAULT`).
    pub const MALFORMED_REQUEST: u32 = 1 << 1;
    /// `queue_enable` was refused: bad size, alignment, or rings outside the window.
    pub const QUEUE_CONFIG: u32 = 1 << 2;
    /// An access BAR0 does not support (width, alignment, read-only or unmapped offset).
    pub const BAD_ACCESS: u32 = 1 << 3;
    /// The available ring index was impossible; the device set `NEEDS_RESET`.
    pub const QUEUE_BROKEN: u32 = 1 << 4;
    /// `DOORBELL_MAILBOX` was refused (misaligned or outside the window), or the driver
    /// published more tokens than the mailbox holds (they were dropped).
    pub const MAILBOX: u32 = 1 << 5;
    /// All defined bits.
    pub const ALL: u32 =
        DOORBELL_REJECTED | MALFORMED_REQUEST | QUEUE_CONFIG | BAD_ACCESS | QUEUE_BROKEN | MAILBOX;
}

/// The doorbell mailbox (feature bit 3): a ring of work-submit tokens the driver keeps in its
/// window. While the device polls the escape queue it sets [`mailbox::POLLED`] and drains the
/// ring, checking every token exactly as a `DOORBELL` write; a doorbell then costs the guest no
/// exit. Without the flag, or with the ring full, the driver writes `DOORBELL` as before.
pub mod mailbox {
    /// `u32` flags the device writes ([`POLLED`]).
    pub const FLAGS: u64 = 0;
    /// `u32` free-running count of tokens the driver published.
    pub const HEAD: u64 = 4;
    /// `u32` free-running count of tokens the device consumed.
    pub const TAIL: u64 = 8;
    /// First token slot (`u32` each).
    pub const TOKENS: u64 = 16;
    /// Token slots; token `n` lives in slot `n % SLOTS`.
    pub const SLOTS: u32 = 256;
    /// Bytes of a mailbox.
    pub const SIZE: u64 = TOKENS + 4 * SLOTS as u64;
    /// Alignment of the mailbox in the window.
    pub const ALIGN: u64 = 16;
    /// `FLAGS` bit: the device drains the mailbox now.
    pub const POLLED: u32 = 1 << 0;
}

/// Offsets of the virtio-pci modern structures inside BAR0.
pub mod virtio {
    /// `virtio_pci_common_cfg` (64 bytes, virtio 1.2 layout).
    pub const COMMON_CFG: u32 = 0x1000;
    /// Length of the common configuration structure.
    pub const COMMON_CFG_LEN: u32 = 0x40;
    /// ISR status byte (read clears it).
    pub const ISR: u32 = 0x1100;
    /// Length of the ISR structure.
    pub const ISR_LEN: u32 = 4;
    /// Device-specific configuration ([`super::DeviceConfig`]).
    pub const DEVICE_CFG: u32 = 0x1200;
    /// Queue notify area: the driver writes the queue index (16 bits) here.
    pub const NOTIFY: u32 = 0x1300;
    /// Length of the notify area.
    pub const NOTIFY_LEN: u32 = 4;
    /// `notify_off_multiplier` of the notify capability.
    pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;
    /// Shared-memory id of the window in the `VIRTIO_PCI_CAP_SHARED_MEMORY_CFG` capability.
    pub const WINDOW_SHMID: u8 = 0;

    /// `VIRTIO_F_VERSION_1`: the only feature offered.
    pub const F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
    /// Features the device offers.
    pub const DEVICE_FEATURES: u64 = F_VERSION_1;

    /// Number of virtqueues: one, the escape queue (index 0).
    pub const NUM_QUEUES: u16 = 1;
    /// Largest queue size the device accepts (the driver may pick any power of two below).
    pub const QUEUE_MAX_SIZE: u16 = 256;

    /// Byte offsets inside `virtio_pci_common_cfg` (virtio 1.2, 4.1.4.3).
    pub mod common {
        /// le32, RW.
        pub const DEVICE_FEATURE_SELECT: u32 = 0x00;
        /// le32, RO.
        pub const DEVICE_FEATURE: u32 = 0x04;
        /// le32, RW.
        pub const DRIVER_FEATURE_SELECT: u32 = 0x08;
        /// le32, RW.
        pub const DRIVER_FEATURE: u32 = 0x0c;
        /// le16, RW (no MSI-X: reads back 0xffff).
        pub const CONFIG_MSIX_VECTOR: u32 = 0x10;
        /// le16, RO.
        pub const NUM_QUEUES: u32 = 0x12;
        /// u8, RW.
        pub const DEVICE_STATUS: u32 = 0x14;
        /// u8, RO.
        pub const CONFIG_GENERATION: u32 = 0x15;
        /// le16, RW.
        pub const QUEUE_SELECT: u32 = 0x16;
        /// le16, RW.
        pub const QUEUE_SIZE: u32 = 0x18;
        /// le16, RW (no MSI-X: reads back 0xffff).
        pub const QUEUE_MSIX_VECTOR: u32 = 0x1a;
        /// le16, RW.
        pub const QUEUE_ENABLE: u32 = 0x1c;
        /// le16, RO.
        pub const QUEUE_NOTIFY_OFF: u32 = 0x1e;
        /// le64, RW: descriptor table (window offset).
        pub const QUEUE_DESC: u32 = 0x20;
        /// le64, RW: available ring (window offset).
        pub const QUEUE_DRIVER: u32 = 0x28;
        /// le64, RW: used ring (window offset).
        pub const QUEUE_DEVICE: u32 = 0x30;
        /// le16, RO.
        pub const QUEUE_NOTIFY_DATA: u32 = 0x38;
        /// le16, RW (`VIRTIO_F_RING_RESET` is not offered: reads 0, writes ignored).
        pub const QUEUE_RESET: u32 = 0x3a;
    }

    /// `device_status` bits (virtio 1.2, 2.1), as `u8` (the register's width).
    pub mod status {
        use virtio_bindings::virtio_config as cfg;
        /// The guest found the device.
        pub const ACKNOWLEDGE: u8 = cfg::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
        /// The guest has a driver for it.
        pub const DRIVER: u8 = cfg::VIRTIO_CONFIG_S_DRIVER as u8;
        /// The driver is ready; the queue is live.
        pub const DRIVER_OK: u8 = cfg::VIRTIO_CONFIG_S_DRIVER_OK as u8;
        /// Feature negotiation is done.
        pub const FEATURES_OK: u8 = cfg::VIRTIO_CONFIG_S_FEATURES_OK as u8;
        /// The device hit an error it cannot recover from without a reset.
        pub const NEEDS_RESET: u8 = cfg::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
        /// The driver gave up.
        pub const FAILED: u8 = cfg::VIRTIO_CONFIG_S_FAILED as u8;
    }
}

/// Device-specific configuration (read-only), at [`virtio::DEVICE_CFG`].
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    /// [`MAGIC`].
    pub magic: u32,
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Window size in bytes.
    pub window_size: u64,
    /// GFID.
    pub gfid: u32,
    /// Most descriptors in one request chain.
    pub max_chain_descriptors: u32,
    /// Most bytes one `MAPPING_READ` / `MAPPING_WRITE` copies.
    pub max_mapping_copy: u32,
    /// Reserved, 0.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<DeviceConfig>() == 32);

impl DeviceConfig {
    /// The little-endian bytes the guest reads.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.version.to_le_bytes());
        b[8..16].copy_from_slice(&self.window_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.gfid.to_le_bytes());
        b[20..24].copy_from_slice(&self.max_chain_descriptors.to_le_bytes());
        b[24..28].copy_from_slice(&self.max_mapping_copy.to_le_bytes());
        b[28..32].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }
}

/// Most descriptors a request chain may have (it needs exactly two; a few more are tolerated so
/// a longer chain is answered with `-EINVAL` instead of being walked without end).
pub const MAX_CHAIN_DESCRIPTORS: usize = 8;
/// Most bytes one `MAPPING_READ` / `MAPPING_WRITE` request copies.
pub const MAX_MAPPING_COPY: u32 = 1 << 20;

/// Request operations ([`RequestHeader::op`]).
pub mod op {
    /// Open a guest file: `request` = node kind ([`super::node`]), `arg` = minor for a device
    /// node. The response's `file` is the new file id.
    pub const OPEN: u32 = 1;
    /// Close the guest file `file` (frees the RM clients allocated through it).
    pub const CLOSE: u32 = 2;
    /// `ioctl(file, request, arg)`: `request` is the full NVIDIA ioctl request number, `arg`
    /// the window offset of the argument struct.
    pub const IOCTL: u32 = 3;
    /// Copy `length` bytes at `offset` of the file's mapping (set up by `RM_MAP_MEMORY` on
    /// that file) into the window at `arg`.
    pub const MAPPING_READ: u32 = 4;
    /// Copy `length` bytes from the window at `arg` to `offset` of the file's mapping.
    pub const MAPPING_WRITE: u32 = 5;
}

/// Node kinds for [`op::OPEN`].
pub mod node {
    /// `/dev/nvidiactl`.
    pub const CTL: u32 = 0;
    /// `/dev/nvidiaN`, N = the request's `arg`.
    pub const DEVICE: u32 = 1;
}

/// Errno values the device itself returns in [`ResponseFooter::ret`] (negated).
pub mod errno {
    /// Bad file id.
    pub const EBADF: i32 = 9;
    /// Out of resources (too many open files).
    pub const ENOMEM: i32 = 12;
    /// An address outside the window.
    pub const EFAULT: i32 = 14;
    /// Malformed request.
    pub const EINVAL: i32 = 22;
    /// Unknown operation.
    pub const ENOSYS: i32 = 38;
}

/// The device-readable first descriptor of a request chain (32 bytes, little-endian).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeader {
    /// Operation ([`op`]).
    pub op: u32,
    /// Guest file id (from `OPEN`); ignored by `OPEN`.
    pub file: i32,
    /// `IOCTL`: ioctl request number; `OPEN`: node kind; else 0.
    pub request: u32,
    /// `MAPPING_*`: byte count; else 0.
    pub length: u32,
    /// `IOCTL`: window offset of the argument struct; `OPEN`: device minor; `MAPPING_*`:
    /// window offset of the buffer.
    pub arg: u64,
    /// `MAPPING_*`: offset inside the file's mapping; else 0.
    pub offset: u64,
}
const _: () = assert!(core::mem::size_of::<RequestHeader>() == 32);
const _: () = assert!(core::mem::offset_of!(RequestHeader, arg) == 16);
const _: () = assert!(core::mem::offset_of!(RequestHeader, offset) == 24);

impl RequestHeader {
    /// Size in bytes.
    pub const SIZE: usize = 32;

    /// Decodes the little-endian bytes of a header.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
        Self {
            op: u32_at(0),
            file: u32_at(4) as i32,
            request: u32_at(8),
            length: u32_at(12),
            arg: u64_at(16),
            offset: u64_at(24),
        }
    }

    /// The little-endian bytes of this header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.op.to_le_bytes());
        b[4..8].copy_from_slice(&self.file.to_le_bytes());
        b[8..12].copy_from_slice(&self.request.to_le_bytes());
        b[12..16].copy_from_slice(&self.length.to_le_bytes());
        b[16..24].copy_from_slice(&self.arg.to_le_bytes());
        b[24..32].copy_from_slice(&self.offset.to_le_bytes());
        b
    }
}

/// The device-writable last descriptor of a request chain (16 bytes, little-endian).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFooter {
    /// 0 or `-errno`, as `ioctl(2)` would return; RM errors are in the argument's `status`.
    pub ret: i32,
    /// `OPEN`: the new file id; else the request's file id.
    pub file: i32,
    /// [`QueueFault`] as u32 when the device refused the chain itself, else 0.
    pub fault: u32,
    /// Reserved, 0.
    pub reserved: u32,
}
const _: () = assert!(core::mem::size_of::<ResponseFooter>() == 16);

impl ResponseFooter {
    /// Size in bytes.
    pub const SIZE: usize = 16;

    /// The little-endian bytes of this footer.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        b[0..4].copy_from_slice(&self.ret.to_le_bytes());
        b[4..8].copy_from_slice(&self.file.to_le_bytes());
        b[8..12].copy_from_slice(&self.fault.to_le_bytes());
        b[12..16].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    /// Decodes the little-endian bytes of a footer.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            ret: u32_at(0) as i32,
            file: u32_at(4) as i32,
            fault: u32_at(8),
            reserved: u32_at(12),
        }
    }
}

/// Why the device refused a request chain without running it (`LAST_QUEUE_FAULT`, and the
/// footer's `fault` when a footer could be written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum QueueFault {
    /// No fault.
    None = 0,
    /// The chain's head index is outside the descriptor table.
    BadHeadIndex = 1,
    /// The chain loops, is longer than [`MAX_CHAIN_DESCRIPTORS`], or names a descriptor
    /// outside the table.
    ChainTooLong = 2,
    /// Not exactly a readable header followed by a writable footer.
    BadLayout = 3,
    /// The header or footer descriptor has the wrong length.
    BadLength = 4,
    /// A descriptor's buffer is not inside the window.
    OutOfWindow = 5,
    /// A descriptor refers to an indirect table (`VIRTQ_DESC_F_INDIRECT`); the device does not
    /// offer `VIRTIO_F_INDIRECT_DESC`, so the chain is not served.
    Indirect = 6,
}
