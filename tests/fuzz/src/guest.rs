//! A scripted guest driver for the device-model targets: virtio-pci bring-up over BAR0, a split
//! virtqueue in the window, and well-formed requests, written here from the protocol
//! (`vgpu/PROTOCOL.md`) so the targets can check that a device a fuzzed guest abused still
//! serves a correct driver afterwards.

use std::sync::{Arc, Mutex, MutexGuard};

use mdev::rm_service::RmService;
use rm_core::Rm;
use rm_sim::{SimBackend, SimConfig};
use vgpu::protocol::virtio::{common, status};
use vgpu::protocol::{node, op, virtio, RequestHeader, ResponseFooter};
use vgpu::{VgpuConfig, VgpuDevice};

/// The shared RM core over a sim GPU.
pub type SimRm = Arc<Mutex<Rm<SimBackend>>>;

/// Window size of the targets' devices (small: one is built per input).
pub const WINDOW: u64 = 256 << 10;
/// Descriptor table (window offset).
pub const DESC: u64 = 0x1000;
/// Available ring.
pub const AVAIL: u64 = 0x2000;
/// Used ring.
pub const USED: u64 = 0x3000;
/// Request slots: header at `REQ + 64 * slot`, footer 32 bytes after it.
pub const REQ: u64 = 0x4000;
/// Argument structs of ioctls.
pub const ARG: u64 = 0x8000;
/// Parameter buffers.
pub const PARAMS: u64 = 0x1_0000;
/// A place for the doorbell mailbox.
pub const MAILBOX: u64 = 0x3_0000;
/// Queue size the driver programs.
pub const QSIZE: u16 = 16;
/// Descriptor flag: the chain continues at `next`.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer.
pub const F_WRITE: u16 = 2;
/// The GFID of the device under test.
pub const GFID: u32 = 7;

/// Locks the core, through a poisoned lock too (a target reports the first panic itself).
pub fn lock(rm: &Mutex<Rm<SimBackend>>) -> MutexGuard<'_, Rm<SimBackend>> {
    rm.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh RM core over a sim GPU on its virtual clock.
pub fn sim_rm() -> SimRm {
    Arc::new(Mutex::new(Rm::new(SimBackend::new(SimConfig::default()))))
}

/// A vGPU [`GFID`] on `rm`, as vgpud builds one.
pub fn device(rm: &SimRm) -> VgpuDevice {
    let svc = RmService::attach(rm.clone(), GFID, rm_core::VgpuConfig::with_quota(1 << 30))
        .expect("a fresh core takes the GFID");
    VgpuDevice::new(
        VgpuConfig {
            gfid: GFID,
            window_size: WINDOW,
        },
        Box::new(svc),
    )
    .expect("window")
}

/// Asserts that dropping a device left nothing behind: the vGPU is gone from the core and the
/// sim holds no object.
pub fn assert_torn_down(rm: &SimRm) {
    let rm = lock(rm);
    assert_eq!(rm.object_count(GFID), 0, "RM objects left after teardown");
    assert_eq!(rm.total_objects(), 0);
    assert_eq!(
        rm.backend().object_count(),
        0,
        "sim objects left after teardown"
    );
}

/// The driver's side of one device.
#[derive(Debug)]
pub struct Guest {
    /// The device (the target plays the VMM too).
    pub dev: VgpuDevice,
    avail_idx: u16,
    used_seen: u16,
}

impl Guest {
    /// A driver for `dev` (not yet set up).
    pub fn new(dev: VgpuDevice) -> Self {
        Self {
            dev,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// A 32-bit BAR0 read.
    pub fn r32(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }

    /// A write into the common configuration.
    pub fn common_write(&mut self, off: u32, data: &[u8]) {
        self.dev
            .bar_write(0, u64::from(virtio::COMMON_CFG + off), data);
    }

    /// `device_status`.
    pub fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.dev.bar_read(
            0,
            u64::from(virtio::COMMON_CFG + common::DEVICE_STATUS),
            &mut b,
        );
        b[0]
    }

    /// A window write that must succeed.
    pub fn wwrite(&self, at: u64, data: &[u8]) {
        self.dev
            .window()
            .write(at, data)
            .expect("inside the window");
    }

    /// A window read that must succeed.
    pub fn wread(&self, at: u64, buf: &mut [u8]) {
        self.dev.window().read(at, buf).expect("inside the window");
    }

    /// Resets the device and brings it up as the guest driver does: features, the queue at
    /// [`DESC`] / [`AVAIL`] / [`USED`], `DRIVER_OK`. Returns whether the device took the queue.
    pub fn init(&mut self) -> bool {
        self.common_write(common::DEVICE_STATUS, &[0]);
        let s = status::ACKNOWLEDGE | status::DRIVER;
        self.common_write(common::DEVICE_STATUS, &[s]);
        self.common_write(common::DRIVER_FEATURE_SELECT, &1u32.to_le_bytes());
        self.common_write(common::DRIVER_FEATURE, &1u32.to_le_bytes());
        self.common_write(common::DEVICE_STATUS, &[s | status::FEATURES_OK]);
        for a in [DESC, AVAIL, USED] {
            self.wwrite(a, &[0u8; 0x1000]);
        }
        self.common_write(common::QUEUE_SELECT, &0u16.to_le_bytes());
        self.common_write(common::QUEUE_SIZE, &QSIZE.to_le_bytes());
        self.common_write(common::QUEUE_DESC, &DESC.to_le_bytes());
        self.common_write(common::QUEUE_DRIVER, &AVAIL.to_le_bytes());
        self.common_write(common::QUEUE_DEVICE, &USED.to_le_bytes());
        self.common_write(common::QUEUE_ENABLE, &1u16.to_le_bytes());
        self.common_write(
            common::DEVICE_STATUS,
            &[s | status::FEATURES_OK | status::DRIVER_OK],
        );
        self.avail_idx = 0;
        self.used_seen = 0;
        self.dev.queue_live()
    }

    /// Writes descriptor `i`.
    pub fn put_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.wwrite(DESC + 16 * u64::from(i % QSIZE), &d);
    }

    /// Makes `head` available (no notify).
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.wwrite(AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.wwrite(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }

    /// Overwrites the available index (a lying driver).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.avail_idx = idx;
        self.wwrite(AVAIL + 2, &idx.to_le_bytes());
    }

    /// A queue notify.
    pub fn notify(&mut self) {
        self.dev
            .bar_write(0, u64::from(virtio::NOTIFY), &0u16.to_le_bytes());
    }

    /// The used ring's index.
    pub fn used_idx(&self) -> u16 {
        let mut b = [0u8; 2];
        self.wread(USED + 2, &mut b);
        u16::from_le_bytes(b)
    }

    /// Used entries the device added since the driver last looked, each (id, len); the driver
    /// catches up with them.
    pub fn take_used(&mut self) -> Vec<(u32, u32)> {
        let idx = self.used_idx();
        let mut out = Vec::new();
        while self.used_seen != idx && out.len() <= usize::from(QSIZE) {
            let mut b = [0u8; 8];
            self.wread(USED + 4 + 8 * u64::from(self.used_seen % QSIZE), &mut b);
            out.push((
                u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// Posts `h` as a well-formed chain in request slot `slot % 8` (descriptors `2 * slot` and
    /// `2 * slot + 1`); returns the footer's window offset.
    pub fn post(&mut self, slot: u16, h: &RequestHeader) -> u64 {
        let slot = slot % (QSIZE / 2);
        let hdr = REQ + 64 * u64::from(slot);
        let ftr = hdr + 32;
        self.wwrite(hdr, &h.to_bytes());
        self.wwrite(ftr, &[0xee; 16]);
        self.put_desc(2 * slot, hdr, 32, F_NEXT, 2 * slot + 1);
        self.put_desc(2 * slot + 1, ftr, 16, F_WRITE, 0);
        self.push_avail(2 * slot);
        ftr
    }

    /// Reads a footer.
    pub fn footer(&self, at: u64) -> ResponseFooter {
        let mut b = [0u8; 16];
        self.wread(at, &mut b);
        ResponseFooter::from_bytes(&b)
    }

    /// Posts `h`, notifies, and returns the footer of its answer; panics if the device did not
    /// answer it (a correct driver's request is always answered).
    pub fn submit(&mut self, h: &RequestHeader) -> ResponseFooter {
        let ftr = self.post(0, h);
        self.notify();
        let used = self.take_used();
        assert_eq!(used.len(), 1, "a well-formed request got {used:?}");
        assert_eq!(used[0], (0, 16), "the used entry of a well-formed request");
        self.footer(ftr)
    }

    /// Checks that the device serves a correct driver: it brings the device up, opens
    /// `/dev/nvidiactl` and `/dev/nvidia0` and closes them.
    pub fn assert_serves_a_correct_driver(&mut self) {
        assert!(self.init(), "the device refused a correct queue set-up");
        for (request, arg) in [(node::CTL, 0), (node::DEVICE, 0)] {
            let f = self.submit(&RequestHeader {
                op: op::OPEN,
                request,
                arg,
                ..Default::default()
            });
            assert_eq!(f.ret, 0, "OPEN of node {request} refused");
            let c = self.submit(&RequestHeader {
                op: op::CLOSE,
                file: f.file,
                ..Default::default()
            });
            assert_eq!(c.ret, 0, "CLOSE refused");
        }
    }
}
