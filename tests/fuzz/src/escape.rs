//! RM escape frames and their params: what a guest's RM client hands the core as ioctls
//! (`RM_ALLOC`, `RM_CONTROL`, `RM_FREE`, every other escape, and raw request numbers), run
//! by the core's escape entry point ([`Rm::ioctl`]) against the sim backend, with params that
//! reach the handlers because the frames name a live object tree.
//!
//! Two vGPUs share the core: GFID 1 is fuzzed, GFID 2 is its neighbour with its own tree. After
//! every input:
//! * every ioctl returned 0 or `-errno`, and an accepted `RM_CONTROL` or `RM_ALLOC` came back
//!   with the frame the guest sent (only its status changed: no host handle leaks out);
//! * a doorbell with the neighbour's work-submit token was refused;
//! * the core and the sim agree on the number of live objects, and the neighbour's count is
//!   what it was;
//! * both guests are still served (each builds a fresh client, device, subdevice and VA space);
//! * destroying the fuzzed vGPU leaves nothing of it in the core or the sim.

use rm_abi::escape::{ArgSize, Escape};
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::{Nvos00Parameters, Nvos54Parameters, Nvos64Parameters};
use rm_abi::{class, read_struct, Handle, NvStatus};
use rm_core::testing::rm_client::{Node, RmClient, Transport};
use rm_core::testing::transport::{CoreTransport, GUEST_BASE};
use rm_core::testing::{base, full_tree, schedule_and_token, Tree};
use rm_core::{GuestMemory, Rm, VecGuestMemory, VgpuConfig};
use rm_sim::{SimBackend, SimConfig};
use zerocopy::IntoBytes;

use crate::input::{Input, Writer};

/// The fuzzed guest.
const GFID: u32 = 1;
/// Its neighbour.
const NEIGHBOUR: u32 = 2;
/// Where the fuzzed guest's argument structs live.
pub const ARG: u64 = GUEST_BASE;
/// Where its params live.
pub const PARAMS: u64 = GUEST_BASE + 0x1000;
/// Bytes of the fuzzed guest's memory.
const MEMORY: usize = 0x4000;
/// Largest params of a control step.
const MAX_PARAMS: usize = 0x2000;
/// Largest argument of an escape step.
const MAX_ARG: usize = 0xC00;
/// Most steps one input runs.
const MAX_STEPS: usize = 256;

/// Step tags (the first byte of a step, modulo their number).
pub mod tag {
    /// `RM_CONTROL`: client, object, cmd, flags, size mode, params.
    pub const CONTROL: u8 = 0;
    /// `RM_ALLOC`: root, parent, new, class, params.
    pub const ALLOC: u8 = 1;
    /// `RM_FREE`: root, parent, old.
    pub const FREE: u8 = 2;
    /// A known escape: index, size jitter, fd, argument, handle patches.
    pub const ESCAPE: u8 = 3;
    /// A raw request number on an fd, with bytes.
    pub const RAW: u8 = 4;
    /// Open (even) or close (odd) an fd.
    pub const FILE: u8 = 5;
    /// Bytes written among the params.
    pub const SCRIBBLE: u8 = 6;
    /// A doorbell: the neighbour's token, our own, or any.
    pub const DOORBELL: u8 = 7;
    /// Number of tags.
    pub const COUNT: u8 = 8;
}

/// Indexes into the handle list a step picks from (see [`handle_list`]).
pub mod sel {
    /// The fuzzed guest's root client.
    pub const CLIENT: u8 = 0;
    /// Its device.
    pub const DEVICE: u8 = 1;
    /// Its subdevice.
    pub const SUBDEVICE: u8 = 2;
    /// Its VA space.
    pub const VASPACE: u8 = 3;
    /// Its GR TSG.
    pub const TSG: u8 = 4;
    /// Its GR channel.
    pub const CHANNEL: u8 = 7;
    /// A selector byte at or above this reads a raw `u32` handle instead.
    pub const RAW: u8 = 0xf0;
}

fn handle_list(t: &Tree, n: &Tree) -> Vec<Handle> {
    vec![
        t.client,
        t.device,
        t.subdevice,
        t.vaspace,
        t.tsg,
        t.ctxshare,
        t.userd,
        t.channel,
        t.compute,
        t.copy_tsg,
        t.copy_channel,
        t.copy,
        n.client,
        n.device,
        n.channel,
        0,
        u32::MAX,
        0x5c00_0100,
        0x5c00_0101,
        0xc1d0_0000,
    ]
}

struct World<'a> {
    t1: &'a CoreTransport<SimBackend>,
    mem: VecGuestMemory,
    fds: Vec<i32>,
    handles: Vec<Handle>,
    own_token: u32,
    foreign_token: u32,
}

impl World<'_> {
    fn handle(&self, i: &mut Input<'_>) -> Handle {
        let s = i.u8();
        if s >= sel::RAW {
            i.u32()
        } else {
            self.handles[usize::from(s) % self.handles.len()]
        }
    }

    fn fd(&self, i: &mut Input<'_>) -> i32 {
        let s = usize::from(i.u8());
        self.fds
            .get(s % (self.fds.len() + 1))
            .copied()
            .unwrap_or(4097)
    }

    fn ioctl(&mut self, fd: i32, request: u32) -> i32 {
        let ret = self.t1.rm().ioctl(GFID, fd, request, ARG, &mut self.mem);
        assert!(ret <= 0, "ioctl {request:#x} returned {ret}");
        ret
    }

    fn write(&mut self, at: u64, bytes: &[u8]) {
        let _ = self.mem.write(at, bytes);
    }

    fn read_arg<T: zerocopy::FromBytes>(&self, len: usize) -> Option<T> {
        let mut b = vec![0u8; len];
        self.mem.read(ARG, &mut b).ok()?;
        read_struct(&b)
    }

    fn step(&mut self, i: &mut Input<'_>) {
        let ctl = self.fds[0];
        match i.u8() % tag::COUNT {
            tag::CONTROL => {
                let sent = Nvos54Parameters {
                    hClient: self.handle(i),
                    hObject: self.handle(i),
                    cmd: i.u32(),
                    flags: u32::from(i.u8() % 4),
                    params: PARAMS,
                    ..Default::default()
                };
                let mode = i.u8();
                let params = i.blob(MAX_PARAMS);
                let sent = Nvos54Parameters {
                    paramsSize: match mode % 8 {
                        0 => u32::from(i.u16()),
                        1 => 0,
                        _ => params.len() as u32,
                    },
                    params: if mode % 16 == 15 {
                        u64::from(i.u32())
                    } else {
                        PARAMS
                    },
                    ..sent
                };
                self.write(PARAMS, params);
                self.write(ARG, sent.as_bytes());
                let req = IoctlRequest::encode(
                    Escape::RM_CONTROL as u8,
                    size_of::<Nvos54Parameters>() as u32,
                );
                if self.ioctl(ctl, req.expect("RM_CONTROL encodes")) == 0 {
                    let got: Nvos54Parameters =
                        self.read_arg(size_of::<Nvos54Parameters>()).expect("arg");
                    assert_eq!(
                        Nvos54Parameters { status: 0, ..got },
                        sent,
                        "RM_CONTROL changed more than its status"
                    );
                }
            }
            tag::ALLOC => {
                let sent = Nvos64Parameters {
                    hRoot: self.handle(i),
                    hObjectParent: self.handle(i),
                    hObjectNew: self.handle(i),
                    hClass: i.u32(),
                    pAllocParms: PARAMS,
                    ..Default::default()
                };
                let params = i.blob(0x1000);
                let sent = Nvos64Parameters {
                    paramsSize: params.len() as u32,
                    pAllocParms: if params.is_empty() { 0 } else { PARAMS },
                    ..sent
                };
                self.write(PARAMS, params);
                self.write(ARG, sent.as_bytes());
                let req = IoctlRequest::encode(
                    Escape::RM_ALLOC as u8,
                    size_of::<Nvos64Parameters>() as u32,
                );
                if self.ioctl(ctl, req.expect("RM_ALLOC encodes")) == 0 {
                    let got: Nvos64Parameters =
                        self.read_arg(size_of::<Nvos64Parameters>()).expect("arg");
                    // A root client's class comes back as NV01_ROOT_CLIENT, as the driver
                    // rewrites it; no other class changes.
                    let root = [
                        class::NV01_ROOT,
                        class::NV01_ROOT_NON_PRIV,
                        class::NV01_ROOT_CLIENT,
                    ];
                    if root.contains(&sent.hClass) {
                        assert!(
                            root.contains(&got.hClass),
                            "RM_ALLOC made a client {:#x}",
                            got.hClass
                        );
                    } else {
                        assert_eq!(got.hClass, sent.hClass, "RM_ALLOC changed the class");
                    }
                    assert_eq!(
                        got.hObjectParent, sent.hObjectParent,
                        "RM_ALLOC changed the parent"
                    );
                    // RM picks a root client's handle itself.
                    if NvStatus(got.status) == NvStatus::OK
                        && sent.hObjectNew != 0
                        && !root.contains(&sent.hClass)
                    {
                        assert_eq!(
                            got.hObjectNew, sent.hObjectNew,
                            "RM_ALLOC renamed the object"
                        );
                    }
                }
            }
            tag::FREE => {
                let p = Nvos00Parameters {
                    hRoot: self.handle(i),
                    hObjectParent: self.handle(i),
                    hObjectOld: self.handle(i),
                    status: 0,
                };
                self.write(ARG, p.as_bytes());
                let req = IoctlRequest::encode(
                    Escape::RM_FREE as u8,
                    size_of::<Nvos00Parameters>() as u32,
                );
                self.ioctl(ctl, req.expect("RM_FREE encodes"));
            }
            tag::ESCAPE => {
                let esc = i.pick(Escape::ALL);
                let jitter = i.u8();
                let fd = self.fd(i);
                let size = match esc.arg_size() {
                    ArgSize::Exact(n) | ArgSize::AtLeast(n) | ArgSize::ArrayOf(n) => n,
                    ArgSize::EitherOf(a, b) => {
                        if jitter & 1 == 0 {
                            a
                        } else {
                            b
                        }
                    }
                };
                let size = match jitter % 8 {
                    6 => size + 1,
                    7 => size.saturating_sub(1),
                    _ => size,
                }
                .min(MAX_ARG as u32);
                let mut arg = i.blob(MAX_ARG).to_vec();
                arg.resize(size as usize, 0);
                for _ in 0..i.u8() % 4 {
                    let word = usize::from(i.u8()) * 4;
                    let v = if i.u8() & 1 == 0 {
                        self.handle(i)
                    } else {
                        PARAMS as u32
                    };
                    if word + 4 <= arg.len() {
                        arg[word..word + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                self.write(ARG, &arg);
                if let Some(req) = IoctlRequest::encode(esc as u8, size) {
                    self.ioctl(fd, req);
                }
            }
            tag::RAW => {
                let request = i.u32();
                let fd = self.fd(i);
                let bytes = i.blob(0x1000);
                self.write(ARG, bytes);
                self.ioctl(fd, request);
            }
            tag::FILE => {
                let v = i.u8();
                if v & 1 == 0 {
                    let node = if v & 2 == 0 {
                        Node::Ctl
                    } else {
                        Node::Device(u32::from(v >> 6))
                    };
                    let node = match node {
                        Node::Ctl => rm_core::Node::Ctl,
                        Node::Device(m) => rm_core::Node::Device(m),
                    };
                    if let Ok(fd) = self.t1.rm().open(GFID, node) {
                        self.fds.push(fd);
                    }
                } else if self.fds.len() > 1 {
                    let at = 1 + usize::from(v >> 1) % (self.fds.len() - 1);
                    let fd = self.fds.remove(at);
                    self.t1.rm().close(GFID, fd).expect("an open fd closes");
                }
            }
            tag::SCRIBBLE => {
                let off = u64::from(i.u16()) % 0x3000;
                let bytes = i.blob(0x400);
                self.write(PARAMS + off, bytes);
            }
            _ => {
                let token = match i.u8() % 3 {
                    0 => self.foreign_token,
                    1 => self.own_token,
                    _ => i.u32(),
                };
                let s = self.t1.rm().doorbell(GFID, token);
                if token == self.foreign_token && token != self.own_token {
                    assert_ne!(s, NvStatus::OK, "a guest rang its neighbour's channel");
                }
            }
        }
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let config = VgpuConfig::with_quota(1 << 30);
    let rm = Rm::new(SimBackend::new(SimConfig::default()));
    let t1 = CoreTransport::new(rm, GFID, config.clone()).expect("GFID 1");
    let t2 = t1.another(NEIGHBOUR, config).expect("GFID 2");
    let mut c1 = RmClient::open(&t1).expect("ctl");
    let dev1 = t1.open(Node::Device(0)).expect("device node");
    let tree = full_tree(&mut c1);
    let own_token = schedule_and_token(&mut c1, tree.client, tree.tsg, tree.channel);
    let mut c2 = RmClient::open(&t2).expect("ctl");
    let _dev2 = t2.open(Node::Device(0)).expect("device node");
    let ntree = full_tree(&mut c2);
    let foreign_token = schedule_and_token(&mut c2, ntree.client, ntree.tsg, ntree.channel);
    let neighbour_objects = t1.rm().object_count(NEIGHBOUR);

    let mut w = World {
        t1: &t1,
        mem: VecGuestMemory::new(GUEST_BASE, MEMORY),
        fds: vec![c1.ctl(), dev1],
        handles: handle_list(&tree, &ntree),
        own_token,
        foreign_token,
    };
    let mut i = Input::new(data);
    let mut steps = 0;
    while !i.is_empty() && steps < MAX_STEPS {
        steps += 1;
        w.step(&mut i);
    }
    drop(w);

    {
        let rm = t1.rm();
        assert_eq!(
            rm.backend().object_count(),
            rm.total_objects(),
            "core and sim disagree on live objects"
        );
        assert_eq!(
            rm.object_count(NEIGHBOUR),
            neighbour_objects,
            "the fuzzed guest changed its neighbour's objects"
        );
    }
    // Both guests are still served.
    let _ = base(&mut c2);
    let mut again = RmClient::open(&t1).expect("the fuzzed guest opens a new ctl fd");
    let _ = base(&mut again);
    drop(again);

    let mut rm = t1.rm();
    rm.destroy_vgpu(GFID).expect("the fuzzed vGPU exists");
    assert_eq!(rm.object_count(GFID), 0);
    assert_eq!(
        rm.backend().object_count(),
        rm.total_objects(),
        "the fuzzed vGPU left sim objects behind"
    );
    assert_eq!(rm.total_objects(), rm.object_count(NEIGHBOUR));
}

/// A seed step: `RM_CONTROL` of `cmd` on the object `obj` (a [`sel`] index) with `params`.
pub fn control_step(w: &mut Writer, obj: u8, cmd: u32, params: &[u8]) {
    w.u8(tag::CONTROL)
        .u8(sel::CLIENT)
        .u8(obj)
        .u32(cmd)
        .u8(0)
        .u8(2)
        .blob(&params[..params.len().min(MAX_PARAMS)]);
}

/// A seed step: `RM_ALLOC` of `class` under `parent` (a [`sel`] index) as a fresh handle.
pub fn alloc_step(w: &mut Writer, parent: u8, class: u32, params: &[u8]) {
    w.u8(tag::ALLOC)
        .u8(sel::CLIENT)
        .u8(parent)
        .u8(17)
        .u32(class)
        .blob(params);
}

/// A seed step: escape `esc` with its argument bytes `arg`, on the ctl fd (`fd` 0) or the
/// device fd (1).
pub fn escape_step(w: &mut Writer, esc: Escape, fd: u8, arg: &[u8]) {
    let index = Escape::ALL.iter().position(|e| *e == esc).unwrap_or(0) as u8;
    let jitter = match esc.arg_size() {
        ArgSize::EitherOf(a, _) if a as usize == arg.len() => 0,
        ArgSize::EitherOf(..) => 1,
        _ => 0,
    };
    w.u8(tag::ESCAPE)
        .u8(index)
        .u8(jitter)
        .u8(fd)
        .blob(arg)
        .u8(0);
}
