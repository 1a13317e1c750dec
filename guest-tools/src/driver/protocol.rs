//! The guest-visible vGPU protocol (`vgpu/PROTOCOL.md`), as the guest driver's own constants.
//!
//! The guest side keeps its own copy instead of linking the device model: a guest driver is
//! written against the published protocol, not the host's code. The host tests of this crate
//! compare every value here with `vgpu::protocol`, so the two cannot drift apart silently.

/// PCI vendor id of the vGPU function.
pub const PCI_VENDOR_ID: u16 = 0x10de;
/// PCI device id of the vGPU function.
pub const PCI_DEVICE_ID: u16 = 0x7f61;
/// Protocol major version this driver speaks (`VERSION >> 16` must equal it).
pub const VERSION_MAJOR: u32 = 1;
/// `MAGIC` register value: "VGPU".
pub const MAGIC: u32 = u32::from_le_bytes(*b"VGPU");
/// BAR index of the trapped register file.
pub const BAR0: u8 = 0;
/// BAR index of the host-visible window.
pub const BAR2: u8 = 2;
/// Size of BAR0.
pub const BAR0_SIZE: u64 = 0x2000;

/// BAR0 register offsets.
pub mod reg {
    /// RO: "VGPU".
    pub const MAGIC: u32 = 0x000;
    /// RO: major << 16 | minor.
    pub const VERSION: u32 = 0x004;
    /// RO: this vGPU's GFID.
    pub const GFID: u32 = 0x008;
    /// RO: feature bits.
    pub const FEATURES: u32 = 0x00c;
    /// RO: window size, low half.
    pub const WINDOW_SIZE_LO: u32 = 0x010;
    /// RO: window size, high half.
    pub const WINDOW_SIZE_HI: u32 = 0x014;
    /// W1C: pending interrupt causes.
    pub const INTR_STATUS: u32 = 0x020;
    /// RW: causes that assert the line.
    pub const INTR_ENABLE: u32 = 0x024;
    /// W1C: sticky error causes.
    pub const ERROR_STATUS: u32 = 0x030;
    /// RO: last refused doorbell token.
    pub const LAST_REJECTED_TOKEN: u32 = 0x034;
    /// RO: fault code of the last malformed chain.
    pub const LAST_QUEUE_FAULT: u32 = 0x038;
    /// RO: accepted doorbells (64-bit, LO then HI).
    pub const DOORBELLS_LO: u32 = 0x040;
    /// RO: refused doorbells.
    pub const DOORBELLS_REJECTED_LO: u32 = 0x048;
    /// RO: queue notifies.
    pub const QUEUE_NOTIFIES_LO: u32 = 0x050;
    /// RO: completed request chains.
    pub const REQUESTS_LO: u32 = 0x058;
    /// RO: malformed request chains.
    pub const REQUEST_ERRORS_LO: u32 = 0x060;
    /// WO: usermode doorbell (`NVC361_NOTIFY_CHANNEL_PENDING`).
    pub const DOORBELL: u32 = 0x090;
}

/// `FEATURES` bits.
pub mod features {
    /// The escape queue is present.
    pub const ESCAPE_QUEUE: u32 = 1 << 0;
    /// `MAPPING_READ` / `MAPPING_WRITE` are served.
    pub const MAPPING_COPY: u32 = 1 << 1;
    /// Window pages can be wrapped as OS-descriptor memory the GPU uses in place (1.1).
    pub const WINDOW_MEMORY: u32 = 1 << 2;
}

/// `INTR_STATUS` / `INTR_ENABLE` bits.
pub mod intr {
    /// The device put entries in the used ring.
    pub const QUEUE: u32 = 1 << 0;
    /// The device needs a reset.
    pub const CONFIG: u32 = 1 << 1;
    /// An `ERROR_STATUS` bit was set.
    pub const ERROR: u32 = 1 << 2;
    /// All defined causes.
    pub const ALL: u32 = QUEUE | CONFIG | ERROR;
}

/// `ERROR_STATUS` bits.
pub mod error {
    /// A doorbell named a token that is not this vGPU's.
    pub const DOORBELL_REJECTED: u32 = 1 << 0;
    /// A request chain was malformed.
    pub const MALFORMED_REQUEST: u32 = 1 << 1;
    /// `queue_enable` was refused.
    pub const QUEUE_CONFIG: u32 = 1 << 2;
    /// An unsupported BAR0 access.
    pub const BAD_ACCESS: u32 = 1 << 3;
    /// The available index was impossible; the device needs a reset.
    pub const QUEUE_BROKEN: u32 = 1 << 4;
}

/// Offsets of the virtio-pci modern structures in BAR0.
pub mod virtio {
    /// `virtio_pci_common_cfg`.
    pub const COMMON_CFG: u32 = 0x1000;
    /// ISR byte.
    pub const ISR: u32 = 0x1100;
    /// Device configuration.
    pub const DEVICE_CFG: u32 = 0x1200;
    /// Queue notify area (write the queue index).
    pub const NOTIFY: u32 = 0x1300;
    /// Largest queue size the device accepts.
    pub const QUEUE_MAX_SIZE: u16 = 256;
    /// `VIRTIO_F_VERSION_1` as bit 0 of the high feature word.
    pub const F_VERSION_1_HI: u32 = 1;

    /// Field offsets inside the common configuration (virtio 1.2, 4.1.4.3).
    pub mod common {
        /// u32 `device_feature_select`.
        pub const DEVICE_FEATURE_SELECT: u32 = 0x00;
        /// u32 `device_feature`.
        pub const DEVICE_FEATURE: u32 = 0x04;
        /// u32 `driver_feature_select`.
        pub const DRIVER_FEATURE_SELECT: u32 = 0x08;
        /// u32 `driver_feature`.
        pub const DRIVER_FEATURE: u32 = 0x0c;
        /// u16 `num_queues`.
        pub const NUM_QUEUES: u32 = 0x12;
        /// u8 `device_status`.
        pub const DEVICE_STATUS: u32 = 0x14;
        /// u16 `queue_select`.
        pub const QUEUE_SELECT: u32 = 0x16;
        /// u16 `queue_size`.
        pub const QUEUE_SIZE: u32 = 0x18;
        /// u16 `queue_enable`.
        pub const QUEUE_ENABLE: u32 = 0x1c;
        /// u64 `queue_desc` (window offset).
        pub const QUEUE_DESC: u32 = 0x20;
        /// u64 `queue_driver` (available ring, window offset).
        pub const QUEUE_DRIVER: u32 = 0x28;
        /// u64 `queue_device` (used ring, window offset).
        pub const QUEUE_DEVICE: u32 = 0x30;
    }

    /// `device_status` bits.
    pub mod status {
        /// The guest found the device.
        pub const ACKNOWLEDGE: u8 = 1;
        /// The guest has a driver for it.
        pub const DRIVER: u8 = 2;
        /// The queue is live.
        pub const DRIVER_OK: u8 = 4;
        /// Features negotiated.
        pub const FEATURES_OK: u8 = 8;
        /// The device needs a reset.
        pub const NEEDS_RESET: u8 = 0x40;
    }
}

/// Request operations.
pub mod op {
    /// Open a guest file.
    pub const OPEN: u32 = 1;
    /// Close a guest file.
    pub const CLOSE: u32 = 2;
    /// `ioctl(file, request, arg)`.
    pub const IOCTL: u32 = 3;
    /// Copy from a file's mapping into the window.
    pub const MAPPING_READ: u32 = 4;
    /// Copy from the window into a file's mapping.
    pub const MAPPING_WRITE: u32 = 5;
}

/// Node kinds of `OPEN`.
pub mod node {
    /// `/dev/nvidiactl`.
    pub const CTL: u32 = 0;
    /// `/dev/nvidia<arg>`.
    pub const DEVICE: u32 = 1;
}

/// Most bytes one `MAPPING_READ` / `MAPPING_WRITE` moves.
pub const MAX_MAPPING_COPY: usize = 1 << 20;

/// The device-readable request header (32 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestHeader {
    /// Operation ([`op`]).
    pub op: u32,
    /// Guest file id.
    pub file: i32,
    /// ioctl request number, or node kind for `OPEN`.
    pub request: u32,
    /// Byte count of `MAPPING_*`.
    pub length: u32,
    /// Window offset of the argument / buffer, or the minor for `OPEN`.
    pub arg: u64,
    /// Offset inside the file's mapping.
    pub offset: u64,
}

impl RequestHeader {
    /// Encoded size.
    pub const SIZE: usize = 32;

    /// Little-endian bytes.
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

/// The device-writable response footer (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseFooter {
    /// 0 or `-errno`.
    pub ret: i32,
    /// `OPEN`: the new file id.
    pub file: i32,
    /// Nonzero when the device refused the chain (see [`QueueFault`]).
    pub fault: u32,
}

impl ResponseFooter {
    /// Encoded size.
    pub const SIZE: usize = 16;

    /// Decodes little-endian bytes.
    pub fn from_bytes(b: &[u8; Self::SIZE]) -> Self {
        let at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            ret: at(0) as i32,
            file: at(4) as i32,
            fault: at(8),
        }
    }
}

/// Why the device refused a chain (`LAST_QUEUE_FAULT`, footer `fault`).
pub mod fault {
    /// Head index outside the descriptor table.
    pub const BAD_HEAD_INDEX: u32 = 1;
    /// Loop, too many descriptors, or `next` outside the table.
    pub const CHAIN_TOO_LONG: u32 = 2;
    /// Not exactly readable header + writable footer.
    pub const BAD_LAYOUT: u32 = 3;
    /// Header not 32 bytes or footer not 16 bytes.
    pub const BAD_LENGTH: u32 = 4;
    /// Header or footer outside the window.
    pub const OUT_OF_WINDOW: u32 = 5;
}
