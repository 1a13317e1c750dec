//! A scripted guest driver: it does over BAR0 and the window exactly what the guest-tools
//! userspace driver does (virtio-pci setup, split virtqueue in the window, notify, poll the used
//! ring), plus raw access for garbage tests. Its RM calls are `rm-client`'s [`RmClient`] over the
//! same queue ([`Guest::with_rm`]), so a test mixes raw requests and RM calls in one stream.

#![allow(dead_code)]

use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use mdev::rm_service::RmService;
use rm_abi::alloc_params::*;
use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlRegisterFd;
use rm_abi::nvos::*;
use rm_abi::{class, Handle, NvStatus};
use rm_core::testing::rm_client::{
    Buffer, BufferPool, Fd, Mapping, Node, RmClient, Transport, TransportError,
};
use rm_core::testing::{self, RmCalls};
use rm_core::Rm;
use rm_sim::{SimBackend, SimConfig};
use vgpu::protocol::virtio::common;
use vgpu::protocol::{features, node, op, reg, virtio, RequestHeader, ResponseFooter};
use vgpu::{VgpuConfig, VgpuDevice};
use zerocopy::IntoBytes;

/// Descriptor table (window offset).
pub const DESC: u64 = 0x1000;
/// Available ring.
pub const AVAIL: u64 = 0x2000;
/// Used ring.
pub const USED: u64 = 0x3000;
/// Request slots: header at `REQ + 64 * slot`, footer 32 bytes after it.
pub const REQ: u64 = 0x4000;
/// Argument structs.
pub const ARG: u64 = 0x8000;
/// Parameter buffers.
pub const PARAMS: u64 = 0x1_0000;
/// Queue size the guest programs.
pub const QSIZE: u16 = 16;
/// Window size of test devices.
pub const WINDOW: u64 = 1 << 20;
/// The RM client's buffers ([`Guest::with_rm`]): the window above every fixed area below.
pub const HEAP: u64 = 0xA_0000;

pub use guest_tools::driver::queue::{F_NEXT, F_WRITE};

/// The shared RM core over the sim backend.
pub type SimRm = Arc<Mutex<Rm<SimBackend>>>;

/// A new RM core over a sim GPU.
pub fn sim_rm() -> SimRm {
    Arc::new(Mutex::new(Rm::new(SimBackend::new(SimConfig::default()))))
}

/// A vGPU `gfid` on `rm` with a 1 MiB window.
pub fn sim_device(rm: &SimRm, gfid: u32) -> VgpuDevice {
    let svc =
        RmService::attach(rm.clone(), gfid, rm_core::VgpuConfig::with_quota(1 << 30)).unwrap();
    VgpuDevice::new(
        VgpuConfig {
            gfid,
            window_size: WINDOW,
        },
        Box::new(svc),
    )
    .unwrap()
}

/// The guest's side of one vGPU.
pub struct Guest {
    /// The device (the test plays VMM too).
    pub dev: VgpuDevice,
    avail_idx: u16,
    used_seen: u16,
}

impl Guest {
    /// A guest driving `dev` (not yet initialised).
    pub fn new(dev: VgpuDevice) -> Self {
        Self {
            dev,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    /// 32-bit BAR0 read.
    pub fn r32(&mut self, off: u32) -> u32 {
        let mut b = [0u8; 4];
        self.dev.bar_read(0, u64::from(off), &mut b);
        u32::from_le_bytes(b)
    }

    /// 32-bit BAR0 write.
    pub fn w32(&mut self, off: u32, v: u32) {
        self.dev.bar_write(0, u64::from(off), &v.to_le_bytes());
    }

    /// Write into the common configuration.
    pub fn common_write(&mut self, off: u32, data: &[u8]) {
        self.dev
            .bar_write(0, u64::from(virtio::COMMON_CFG + off), data);
    }

    /// Read from the common configuration.
    pub fn common_read(&mut self, off: u32, data: &mut [u8]) {
        self.dev
            .bar_read(0, u64::from(virtio::COMMON_CFG + off), data);
    }

    /// `device_status`.
    pub fn status(&mut self) -> u8 {
        let mut b = [0u8];
        self.common_read(common::DEVICE_STATUS, &mut b);
        b[0]
    }

    /// Window write (the guest's mapping of BAR2).
    pub fn wwrite(&self, addr: u64, data: &[u8]) {
        self.dev.window().write(addr, data).unwrap();
    }

    /// Window read.
    pub fn wread(&self, addr: u64, buf: &mut [u8]) {
        self.dev.window().read(addr, buf).unwrap();
    }

    /// Negotiates features and sets up the queue with the given ring offsets.
    pub fn init_with(&mut self, desc: u64, avail: u64, used: u64) -> bool {
        use virtio::status::*;
        self.common_write(common::DEVICE_STATUS, &[0]);
        self.common_write(common::DEVICE_STATUS, &[ACKNOWLEDGE | DRIVER]);
        self.common_write(common::DRIVER_FEATURE_SELECT, &1u32.to_le_bytes());
        self.common_write(common::DRIVER_FEATURE, &1u32.to_le_bytes());
        self.common_write(common::DEVICE_STATUS, &[ACKNOWLEDGE | DRIVER | FEATURES_OK]);
        assert_ne!(self.status() & FEATURES_OK, 0);
        for a in [DESC, AVAIL, USED] {
            self.wwrite(a, &[0u8; 0x1000]);
        }
        self.common_write(common::QUEUE_SELECT, &0u16.to_le_bytes());
        self.common_write(common::QUEUE_SIZE, &QSIZE.to_le_bytes());
        self.common_write(common::QUEUE_DESC, &(desc as u32).to_le_bytes());
        self.common_write(common::QUEUE_DESC + 4, &((desc >> 32) as u32).to_le_bytes());
        self.common_write(common::QUEUE_DRIVER, &avail.to_le_bytes());
        self.common_write(common::QUEUE_DEVICE, &used.to_le_bytes());
        self.common_write(common::QUEUE_ENABLE, &1u16.to_le_bytes());
        let mut en = [0u8; 2];
        self.common_read(common::QUEUE_ENABLE, &mut en);
        self.common_write(
            common::DEVICE_STATUS,
            &[ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK],
        );
        self.avail_idx = 0;
        self.used_seen = 0;
        u16::from_le_bytes(en) == 1
    }

    /// Standard setup; panics if the device refuses it.
    pub fn init(&mut self) {
        assert!(self.init_with(DESC, AVAIL, USED), "queue_enable refused");
    }

    /// Writes descriptor `i`.
    pub fn put_desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.wwrite(DESC + 16 * u64::from(i), &d);
    }

    /// Makes `head` available (no notify).
    pub fn push_avail(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.wwrite(AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.wwrite(AVAIL + 2, &self.avail_idx.to_le_bytes());
    }

    /// Sets the available index directly (garbage tests).
    pub fn set_avail_idx(&mut self, idx: u16) {
        self.wwrite(AVAIL + 2, &idx.to_le_bytes());
    }

    /// Queue notify (a 16-bit write of queue index 0).
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

    /// Takes the next used element, if the device produced one: (id, len).
    pub fn take_used(&mut self) -> Option<(u32, u32)> {
        if self.used_idx() == self.used_seen {
            return None;
        }
        let slot = u64::from(self.used_seen % QSIZE);
        let mut b = [0u8; 8];
        self.wread(USED + 4 + 8 * slot, &mut b);
        self.used_seen = self.used_seen.wrapping_add(1);
        Some((
            u32::from_le_bytes(b[0..4].try_into().unwrap()),
            u32::from_le_bytes(b[4..8].try_into().unwrap()),
        ))
    }

    /// Request slot for the next submission: (header desc, header addr, footer addr).
    fn slot(&self) -> (u16, u64, u64) {
        let slot = self.avail_idx % (QSIZE / 2);
        let hdr = REQ + 64 * u64::from(slot);
        (2 * slot, hdr, hdr + 32)
    }

    /// Posts a well-formed request without notifying; returns the footer address.
    pub fn post(&mut self, h: &RequestHeader) -> u64 {
        let (d, hdr, ftr) = self.slot();
        self.wwrite(hdr, &h.to_bytes());
        self.wwrite(ftr, &[0xee; 16]);
        self.put_desc(d, hdr, 32, F_NEXT, d + 1);
        self.put_desc(d + 1, ftr, 16, F_WRITE, 0);
        self.push_avail(d);
        ftr
    }

    /// Reads a footer.
    pub fn footer(&self, at: u64) -> ResponseFooter {
        let mut b = [0u8; 16];
        self.wread(at, &mut b);
        ResponseFooter::from_bytes(&b)
    }

    /// Posts, notifies and polls one request.
    pub fn submit(&mut self, h: &RequestHeader) -> ResponseFooter {
        let ftr = self.post(h);
        self.notify();
        let (_, len) = self.take_used().expect("no used entry");
        assert_eq!(len, 16);
        self.footer(ftr)
    }

    /// Opens `/dev/nvidiactl`.
    pub fn open_ctl(&mut self) -> i32 {
        let r = self.submit(&RequestHeader {
            op: op::OPEN,
            request: node::CTL,
            ..Default::default()
        });
        assert_eq!(r.ret, 0);
        r.file
    }

    /// Opens `/dev/nvidia<minor>`.
    pub fn open_dev(&mut self, minor: u64) -> i32 {
        let r = self.submit(&RequestHeader {
            op: op::OPEN,
            request: node::DEVICE,
            arg: minor,
            ..Default::default()
        });
        assert_eq!(r.ret, 0);
        r.file
    }

    /// Runs `f` with an [`RmClient`] on the ctl file `ctl` over this guest's queue: each RM call
    /// is one request (no version check, no file opened), its argument and parameters in
    /// buffers at [`HEAP`] that live as long as the client (`f` keeps none past its return).
    pub fn with_rm<R>(&mut self, ctl: i32, f: impl FnOnce(&mut RmClient<'_>) -> R) -> R {
        let t = QueueTransport {
            g: Mutex::new(self),
            next: Mutex::new(HEAP),
        };
        let mut c = RmClient::on_fd(&t, ctl).expect("client buffers in the window");
        f(&mut c)
    }

    /// A BAR0 doorbell write.
    pub fn ring(&mut self, token: u32) {
        self.w32(reg::DOORBELL, token);
    }
}

/// Bump allocation of [`HEAP`]: one [`Guest::with_rm`]'s client takes its few buffers once and
/// gives them back all together when it ends.
struct Bump;

impl BufferPool for Bump {
    fn release(&self, _addr: u64, _len: usize) {}
}

/// The guest's own queue as an `rm-client` [`Transport`] (what guest-tools' `VgpuTransport` is
/// over the driver), for the length of one [`Guest::with_rm`].
struct QueueTransport<'g> {
    g: Mutex<&'g mut Guest>,
    /// Next free window offset of [`HEAP`].
    next: Mutex<u64>,
}

impl<'g> QueueTransport<'g> {
    fn guest(&self) -> MutexGuard<'_, &'g mut Guest> {
        self.g.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One request; fails on a negative return unless it is an ioctl's (the caller's to read).
    fn call(
        &self,
        call: &'static str,
        h: &RequestHeader,
    ) -> Result<ResponseFooter, TransportError> {
        let f = self.guest().submit(h);
        if f.ret < 0 && h.op != op::IOCTL {
            return Err(TransportError::Errno {
                call,
                errno: -f.ret,
            });
        }
        Ok(f)
    }
}

impl Transport for QueueTransport<'_> {
    fn open(&self, which: Node) -> Result<Fd, TransportError> {
        let (request, arg) = match which {
            Node::Ctl => (node::CTL, 0),
            Node::Device(minor) => (node::DEVICE, u64::from(minor)),
        };
        let h = RequestHeader {
            op: op::OPEN,
            request,
            arg,
            ..Default::default()
        };
        Ok(self.call("open", &h)?.file)
    }

    fn close(&self, fd: Fd) -> Result<(), TransportError> {
        let h = RequestHeader {
            op: op::CLOSE,
            file: fd,
            ..Default::default()
        };
        self.call("close", &h).map(drop)
    }

    fn ioctl(&self, fd: Fd, request: u32, arg: &Buffer) -> Result<i32, TransportError> {
        let h = RequestHeader {
            op: op::IOCTL,
            file: fd,
            request,
            arg: arg.addr(),
            ..Default::default()
        };
        Ok(self.call("ioctl", &h)?.ret)
    }

    fn buffer(&self, len: usize, align: usize) -> Result<Buffer, TransportError> {
        let g = self.guest();
        let window = g.dev.window();
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let at = next.next_multiple_of(align.max(1) as u64);
        let end = at + len as u64;
        if end > window.size() {
            return Err(TransportError::OutOfMemory(len));
        }
        *next = end;
        let ptr = NonNull::new(window.host_ptr().wrapping_add(at as usize))
            .ok_or(TransportError::OutOfMemory(len))?;
        // SAFETY: `at..at + len` is inside the window and handed out once (bump allocation,
        // above every area the tests write); the window stays mapped while the guest, which
        // this transport borrows for the client's whole life, owns the device.
        Ok(unsafe { Buffer::new(ptr, len, at, Arc::new(Bump)) })
    }

    fn os_descriptors(&self) -> bool {
        self.guest().r32(reg::FEATURES) & features::WINDOW_MEMORY != 0
    }

    /// Not offered: the tests copy mapped memory with their own `MAPPING_READ` and
    /// `MAPPING_WRITE` requests.
    fn map(&self, _fd: Fd, _length: u64) -> Result<Box<dyn Mapping + '_>, TransportError> {
        Err(TransportError::Errno {
            call: "mmap",
            errno: libc::ENODEV,
        })
    }
}

/// Handles of a guest's object tree down to a channel.
#[derive(Debug, Clone, Copy)]
pub struct Tree {
    pub client: Handle,
    pub device: Handle,
    pub channel: Handle,
}

/// Allocates client, device, subdevice, VA space, TSG, context share, USERD and a channel
/// through the escape queue (the shared [`testing::channel_tree`]).
pub fn build_channel(g: &mut Guest, ctl: i32) -> Tree {
    let t = g.with_rm(ctl, |c| testing::channel_tree(c));
    Tree {
        client: t.base.client,
        device: t.base.device,
        channel: t.channel,
    }
}

// ---- GPU memory in the window (OS descriptors) ------------------------------------------

/// Window layout of the GPU memory (the queue and request areas of `common` sit below).
pub const GPU_MEM: u64 = 0x4_0000;
pub const GPU_MEM_SIZE: u64 = 0x4_0000;
/// Offsets inside GPU_MEM.
pub const RING: u64 = 0;
pub const PUSHBUF: u64 = 0x1_0000;
pub const SEMAPHORE: u64 = 0x2_0000;
/// USERD: its own OS descriptor.
pub const USERD_MEM: u64 = 0x9_0000;

pub fn ok((s, h): (NvStatus, Handle)) -> Handle {
    assert_eq!(s, NvStatus::OK);
    h
}

/// `RM_ALLOC_MEMORY` of an OS descriptor over window bytes `offset..offset + size`.
pub fn os_descriptor(
    c: &mut RmClient<'_>,
    dev_fd: i32,
    client: Handle,
    device: Handle,
    new: Handle,
    offset: u64,
    size: u64,
) -> (i32, NvStatus, Handle) {
    let p = Nvos02ParametersWithFd {
        params: Nvos02Parameters {
            hRoot: client,
            hObjectParent: device,
            hObjectNew: new,
            hClass: class::NV01_MEMORY_SYSTEM_OS_DESCRIPTOR,
            pMemory: offset,
            limit: size.wrapping_sub(1),
            ..Default::default()
        },
        fd: -1,
        ..Default::default()
    };
    let (ret, out) = c.ioctl_raw(dev_fd, Escape::RM_ALLOC_MEMORY, &p).unwrap();
    (ret, NvStatus(out.params.status), out.params.hObjectNew)
}

/// A channel whose GPFIFO ring, pushbuffer, semaphore (one OS descriptor at [`GPU_MEM`],
/// mapped at `va`) and USERD (one at [`USERD_MEM`]) are window pages.
#[derive(Debug, Clone, Copy)]
pub struct WindowChannel {
    pub ctl: i32,
    pub dev_fd: i32,
    pub client: Handle,
    pub device: Handle,
    pub channel: Handle,
    pub mem: Handle,
    pub userd_mem: Handle,
    /// GPU VA of [`GPU_MEM`].
    pub va: u64,
    /// The channel's work-submit token.
    pub token: u32,
}

/// Builds client, device, VA space, TSG (scheduled), context share, the two OS descriptors, the
/// channel (64 GPFIFO entries) and a compute object, all through the escape queue.
pub fn window_channel(g: &mut Guest) -> WindowChannel {
    let ctl = g.open_ctl();
    let dev_fd = g.open_dev(0);
    g.with_rm(ctl, |c| {
        let (ret, _) = c
            .ioctl_raw(
                dev_fd,
                Escape::REGISTER_FD,
                &NvIoctlRegisterFd { ctl_fd: ctl },
            )
            .unwrap();
        assert_eq!(ret, 0);

        let base = testing::base_with(c, false);
        let (client, device, vaspace) = (base.client, base.device, base.vaspace);
        let (tsg, ctxshare) = testing::channel_group(
            c,
            &base,
            NV2080_ENGINE_TYPE_GR0,
            testing::TSG,
            testing::CTXSHARE,
        );

        // The window pages become GPU memory: one descriptor for ring + pushbuffer + semaphore,
        // one for USERD.
        let (ret, s, mem) = os_descriptor(
            c,
            dev_fd,
            client,
            device,
            0x5c00_0010,
            GPU_MEM,
            GPU_MEM_SIZE,
        );
        assert_eq!((ret, s), (0, NvStatus::OK));
        let (_, s, userd_mem) = os_descriptor(c, dev_fd, client, device, 0, USERD_MEM, 0x1000);
        assert_eq!(s, NvStatus::OK);

        let (ret, out) = c
            .ioctl_raw(
                ctl,
                Escape::RM_MAP_MEMORY_DMA,
                &Nvos46Parameters {
                    hClient: client,
                    hDevice: device,
                    hDma: vaspace,
                    hMemory: mem,
                    length: GPU_MEM_SIZE,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!((ret, NvStatus(out.status)), (0, NvStatus::OK));
        let va = out.dmaOffset;

        let channel = testing::channel(
            c,
            &base,
            tsg,
            ctxshare,
            userd_mem,
            testing::CHANNEL,
            va + RING,
            64,
        );
        c.alloc_ok(
            client,
            channel,
            testing::COMPUTE,
            class::HOPPER_COMPUTE_A,
            NvGrAllocationParameters::default().as_bytes(),
        );
        let token = testing::schedule_and_token(c, client, tsg, channel);

        WindowChannel {
            ctl,
            dev_fd,
            client,
            device,
            channel,
            mem,
            userd_mem,
            va,
            token,
        }
    })
}
