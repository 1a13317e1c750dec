//! Tests of the forwarder without a GPU: the shared traces of real programs (vecadd, spin,
//! `nvidia-smi`, `nvidia-smi -q`) replayed through it against a driver that answers what the real
//! driver answered, and scripted cases for each refusal and sanitising rule.

use super::driver::{NvDriver, EFAULT, EINVAL};
use super::forward::{ChannelRef, Forwarder, HostNode};
use rm_abi::alloc_params::{
    NvChannelAllocParams, NvChannelGroupAllocationParameters, NVOS04_FLAGS_PRIVILEGED_CHANNEL,
};
use rm_abi::class;
use rm_abi::ctrl::{Nv2080CtrlFifoDisableChannelsParams, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS};
use rm_abi::escape::Escape;
use rm_abi::frontend::NvIoctlXfer;
use rm_abi::ioctl::IoctlRequest;
use rm_abi::nvos::{Nvos00Parameters, Nvos54Parameters, Nvos64Parameters};
use rm_abi::{read_struct, Handle, NvStatus};
use rm_core::{GuestMemory, GuestMemoryFault};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use zerocopy::IntoBytes;

/// Sparse tenant memory: bytes never written read as zero (the traces do not capture alloc params).
#[derive(Default)]
struct SparseMemory {
    bytes: HashMap<u64, u8>,
    /// Accesses at or above this address fault.
    limit: Option<u64>,
}

impl SparseMemory {
    /// Faults an access reaching `limit` or past the end of the address space.
    fn check(&self, addr: u64, len: usize) -> Result<(), GuestMemoryFault> {
        match addr.checked_add(len as u64) {
            Some(end) if self.limit.is_none_or(|l| end <= l) => Ok(()),
            _ => Err(GuestMemoryFault { addr, len }),
        }
    }

    fn put(&mut self, addr: u64, data: &[u8]) {
        for (i, &b) in data.iter().enumerate() {
            self.bytes.insert(addr + i as u64, b);
        }
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        (0..len as u64)
            .map(|i| self.bytes.get(&(addr + i)).copied().unwrap_or(0))
            .collect()
    }
}

impl GuestMemory for SparseMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), GuestMemoryFault> {
        self.check(addr, buf.len())?;
        buf.copy_from_slice(&self.get(addr, buf.len()));
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), GuestMemoryFault> {
        self.check(addr, data.len())?;
        self.put(addr, data);
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Record {
    seq: u64,
    op: String,
    fd: i32,
    dev: String,
    req: Option<String>,
    nr: Option<u32>,
    ret: Option<i32>,
    errno: Option<i32>,
    #[serde(rename = "in")]
    input: Option<String>,
    out: Option<String>,
    p_in: Option<String>,
    p_out: Option<String>,
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Byte ranges of the escape struct that hold pointers the forwarder redirects to its copies.
fn redirected(nr: u32) -> Option<std::ops::Range<usize>> {
    matches!(nr, 0x2A | 0x2B).then_some(16..24)
}

/// A driver that checks each call against the current trace record and answers its recorded result.
#[derive(Default)]
struct ReplayDriver {
    current: Mutex<Option<Record>>,
    calls: Mutex<Vec<String>>,
}

impl NvDriver for ReplayDriver {
    unsafe fn ioctl(&self, fd: i32, request: u64, arg: *mut u8) -> Result<i32, i32> {
        let rec = self
            .current
            .lock()
            .unwrap()
            .clone()
            .expect("driver called with no record");
        let mut calls = self.calls.lock().unwrap();
        assert_eq!(fd, rec.fd, "seq {}", rec.seq);
        assert_eq!(
            format!("{request:#x}"),
            rec.req.clone().unwrap(),
            "seq {}",
            rec.seq
        );
        calls.push(format!("{}", rec.seq));
        let (Some(input), Some(out)) = (&rec.input, &rec.out) else {
            return if rec.ret.unwrap_or(0) < 0 {
                Err(rec.errno.unwrap_or(EINVAL))
            } else {
                Ok(rec.ret.unwrap_or(0))
            };
        };
        let (input, mut out) = (unhex(input), unhex(out));
        // SAFETY: the forwarder passes a buffer of exactly the request's size.
        let arg = unsafe { std::slice::from_raw_parts_mut(arg, input.len()) };
        let nr = rec.nr.unwrap();
        let skip = redirected(nr);
        for (i, (&a, &b)) in arg.iter().zip(&input).enumerate() {
            if skip.as_ref().is_some_and(|r| r.contains(&i)) {
                continue;
            }
            assert_eq!(
                a, b,
                "seq {}: byte {i} of the escape struct differs",
                rec.seq
            );
        }
        if let Some(r) = skip {
            out[r.clone()].copy_from_slice(&arg[r]);
        }
        if nr == 0x2A {
            let p: Nvos54Parameters = read_struct(arg).unwrap();
            if let (Some(pi), Some(po)) = (&rec.p_in, &rec.p_out) {
                let (pi, po) = (unhex(pi), unhex(po));
                // SAFETY: the forwarder's bounce buffer holds paramsSize bytes.
                let params = unsafe {
                    std::slice::from_raw_parts_mut(p.params as *mut u8, p.paramsSize as usize)
                };
                assert_eq!(
                    &params[..pi.len()],
                    &pi[..],
                    "seq {}: embedded params differ",
                    rec.seq
                );
                params[..po.len()].copy_from_slice(&po);
            }
        }
        arg.copy_from_slice(&out);
        if rec.ret.unwrap_or(0) < 0 {
            Err(rec.errno.unwrap_or(EINVAL))
        } else {
            Ok(rec.ret.unwrap_or(0))
        }
    }
}

fn load(name: &str) -> Option<Vec<Record>> {
    let f = std::fs::File::open(rm_core::testing::traces::trace(name)?).ok()?;
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    Some(
        r.lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect(),
    )
}

const ARG: u64 = 0x7000_0000_0000;

/// Replays one trace; returns the most channels the tenant held at once.
fn replay(name: &str) -> Option<usize> {
    let records = load(name)?;
    let fwd = Forwarder::new(ReplayDriver::default());
    let mut nodes: HashMap<i32, HostNode> = HashMap::new();
    let mut most_channels = 0;
    let mut ioctls = 0;
    for rec in records {
        match rec.op.as_str() {
            "open" => {
                nodes.insert(
                    rec.fd,
                    HostNode::from_path(&format!("/dev/{}", rec.dev)).unwrap(),
                );
            }
            "close" => {
                fwd.on_close(rec.fd);
                nodes.remove(&rec.fd);
            }
            "ioctl" => {
                ioctls += 1;
                let node = nodes[&rec.fd];
                let mut mem = SparseMemory::default();
                if let Some(i) = &rec.input {
                    mem.put(ARG, &unhex(i));
                    if let (Some(p), Some(range)) = (&rec.p_in, redirected(rec.nr.unwrap())) {
                        let ptr = u64::from_le_bytes(unhex(i)[range].try_into().unwrap());
                        mem.put(ptr, &unhex(p));
                    }
                }
                *fwd.driver().current.lock().unwrap() = Some(rec.clone());
                let request =
                    u64::from_str_radix(rec.req.as_ref().unwrap().trim_start_matches("0x"), 16)
                        .unwrap();
                let r = fwd.ioctl(rec.fd, node, request, ARG, &mut mem);
                let want = if rec.ret.unwrap_or(0) < 0 {
                    Err(rec.errno.unwrap())
                } else {
                    Ok(rec.ret.unwrap_or(0))
                };
                assert_eq!(r, want, "{name} seq {}", rec.seq);
                if let Some(o) = &rec.out {
                    let o = unhex(o);
                    assert_eq!(
                        mem.get(ARG, o.len()),
                        o,
                        "{name} seq {}: struct returned to the tenant",
                        rec.seq
                    );
                    if let (Some(p), Some(range)) = (&rec.p_out, redirected(rec.nr.unwrap())) {
                        let ptr = u64::from_le_bytes(o[range].try_into().unwrap());
                        let p = unhex(p);
                        assert_eq!(
                            mem.get(ptr, p.len()),
                            p,
                            "{name} seq {}: params returned to the tenant",
                            rec.seq
                        );
                    }
                }
                most_channels = most_channels.max(fwd.channels().len());
            }
            _ => {}
        }
    }
    let stats = fwd.stats();
    assert_eq!(
        stats.refused, 0,
        "{name}: the forwarder refused a call the driver accepted"
    );
    assert_eq!(
        fwd.driver().calls.lock().unwrap().len(),
        ioctls,
        "{name}: every ioctl reaches the driver once"
    );
    // The process exits: the kernel closes what it left open.
    for fd in nodes.keys() {
        fwd.on_close(*fd);
    }
    assert!(
        fwd.channels().is_empty(),
        "{name}: all clients are gone once every fd is closed"
    );
    Some(most_channels)
}

#[test]
fn real_programs_replay_unchanged_through_the_forwarder() {
    let mut ran = 0;
    for (name, channels) in [("vecadd", 20), ("spin", 20), ("smi", 0), ("smiq", 0)] {
        if let Some(n) = replay(name) {
            assert_eq!(n, channels, "{name}: channels tracked");
            ran += 1;
        }
    }
    if ran == 0 {
        eprintln!("skipping: no trace fixtures");
    }
}

/// One recorded call: fd, request, escape struct, embedded params as the driver saw them.
type Call = (i32, u64, Vec<u8>, Vec<u8>);

/// A driver that records calls and answers every RM escape with `NV_OK` and new handles.
#[derive(Default)]
struct ScriptedDriver {
    calls: Mutex<Vec<Call>>,
    next: Mutex<Handle>,
}

impl NvDriver for ScriptedDriver {
    unsafe fn ioctl(&self, fd: i32, request: u64, arg: *mut u8) -> Result<i32, i32> {
        let req = IoctlRequest::decode(request as u32);
        // SAFETY: the forwarder passes a buffer of the request's size.
        let arg = unsafe { std::slice::from_raw_parts_mut(arg, req.size as usize) };
        let mut embedded = Vec::new();
        if req.nr == Escape::RM_CONTROL as u8 || req.nr == Escape::RM_ALLOC as u8 {
            let ptr = u64::from_le_bytes(arg[16..24].try_into().unwrap());
            let size = if req.nr == Escape::RM_CONTROL as u8 {
                u32::from_le_bytes(arg[24..28].try_into().unwrap()) as usize
            } else if req.size == 48 {
                match u32::from_le_bytes(arg[12..16].try_into().unwrap()) {
                    class::KEPLER_CHANNEL_GROUP_A => 20,
                    c if super::sanitize::is_known_channel_class(c) => 368,
                    _ => 0,
                }
            } else {
                0
            };
            if ptr != 0 && size != 0 {
                // SAFETY: the forwarder's bounce buffer has the control's or class's size.
                embedded = unsafe { std::slice::from_raw_parts(ptr as *const u8, size) }.to_vec();
            }
        }
        if req.nr == Escape::RM_ALLOC as u8 && u32_of(arg, 8) == 0 {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            let h = if matches!(u32_of(arg, 12), 0 | 1 | 0x41) {
                0xC1D0_0000 + *n
            } else {
                0x5C00_0000 + *n
            };
            arg[8..12].copy_from_slice(&h.to_le_bytes());
        }
        self.calls
            .lock()
            .unwrap()
            .push((fd, request, arg.to_vec(), embedded));
        Ok(0)
    }
}

fn u32_of(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn req(esc: Escape, size: usize) -> u64 {
    u64::from(IoctlRequest::encode(esc as u8, size as u32).unwrap())
}

/// Allocates through the forwarder: returns (new handle, status).
fn alloc(
    fwd: &Forwarder<ScriptedDriver>,
    mem: &mut SparseMemory,
    root: Handle,
    parent: Handle,
    class_id: u32,
    params: &[u8],
) -> (Handle, u32) {
    const P: u64 = 0x9000;
    mem.put(P, params);
    let a = Nvos64Parameters {
        hRoot: root,
        hObjectParent: parent,
        hClass: class_id,
        pAllocParms: if params.is_empty() { 0 } else { P },
        ..Default::default()
    };
    mem.put(ARG, a.as_bytes());
    assert_eq!(
        fwd.ioctl(3, HostNode::Ctl, req(Escape::RM_ALLOC, 48), ARG, mem),
        Ok(0)
    );
    let out: Nvos64Parameters = read_struct(&mem.get(ARG, 48)).unwrap();
    assert_eq!(
        out.pAllocParms, a.pAllocParms,
        "the tenant's pointer is restored"
    );
    (out.hObjectNew, out.status)
}

/// Issues RM_CONTROL with `c` at `at`; returns the ioctl's value (it must succeed) and the
/// structure as the forwarder left it.
fn control_at(
    fwd: &Forwarder<ScriptedDriver>,
    mem: &mut SparseMemory,
    at: u64,
    c: &Nvos54Parameters,
) -> (i32, Nvos54Parameters) {
    mem.put(at, c.as_bytes());
    let r = fwd
        .ioctl(3, HostNode::Ctl, req(Escape::RM_CONTROL, 32), at, mem)
        .unwrap();
    (r, read_struct(&mem.get(at, 32)).unwrap())
}

fn control(
    fwd: &Forwarder<ScriptedDriver>,
    mem: &mut SparseMemory,
    client: Handle,
    object: Handle,
    cmd: u32,
    params: &[u8],
) -> u32 {
    const P: u64 = 0xA000;
    mem.put(P, params);
    let c = Nvos54Parameters {
        hClient: client,
        hObject: object,
        cmd,
        params: P,
        paramsSize: params.len() as u32,
        ..Default::default()
    };
    let (r, out) = control_at(fwd, mem, ARG, &c);
    assert_eq!(r, 0);
    out.status
}

/// Issues RM_FREE of `object`; returns the ioctl's value (it must succeed) and the status.
fn free(
    fwd: &Forwarder<ScriptedDriver>,
    mem: &mut SparseMemory,
    client: Handle,
    parent: Handle,
    object: Handle,
) -> (i32, u32) {
    let free = Nvos00Parameters {
        hRoot: client,
        hObjectParent: parent,
        hObjectOld: object,
        status: 0,
    };
    mem.put(ARG, free.as_bytes());
    let r = fwd
        .ioctl(3, HostNode::Ctl, req(Escape::RM_FREE, 16), ARG, mem)
        .unwrap();
    let out: Nvos00Parameters = read_struct(&mem.get(ARG, 16)).unwrap();
    (r, out.status)
}

/// A tenant with a client, device, subdevice, a TSG and two channels; returns the handles.
fn tenant(
    fwd: &Forwarder<ScriptedDriver>,
    mem: &mut SparseMemory,
) -> (Handle, Handle, Handle, [Handle; 2]) {
    let (client, s) = alloc(fwd, mem, 0, 0, 0, &[]);
    assert_eq!(s, 0);
    let (dev, _) = alloc(fwd, mem, client, client, class::NV01_DEVICE_0, &[0; 56]);
    let (sub, _) = alloc(fwd, mem, client, dev, class::NV20_SUBDEVICE_0, &[0; 4]);
    let tsg_params = NvChannelGroupAllocationParameters {
        engineType: 1,
        bIsCallingContextVgpuPlugin: 1,
        ..Default::default()
    };
    let (tsg, _) = alloc(
        fwd,
        mem,
        client,
        dev,
        class::KEPLER_CHANNEL_GROUP_A,
        tsg_params.as_bytes(),
    );
    let ch = NvChannelAllocParams {
        flags: NVOS04_FLAGS_PRIVILEGED_CHANNEL | 1,
        ..Default::default()
    };
    let (c0, _) = alloc(
        fwd,
        mem,
        client,
        tsg,
        class::HOPPER_CHANNEL_GPFIFO_A,
        ch.as_bytes(),
    );
    let (c1, _) = alloc(
        fwd,
        mem,
        client,
        tsg,
        class::HOPPER_CHANNEL_GPFIFO_A,
        ch.as_bytes(),
    );
    (client, sub, tsg, [c0, c1])
}

#[test]
fn sanitised_params_reach_the_driver_and_channels_are_tracked() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    let (client, _, tsg, [c0, c1]) = tenant(&fwd, &mut mem);
    let calls = fwd.driver().calls.lock().unwrap();
    let tsg_call = calls
        .iter()
        .find(|c| u32_of(&c.2, 12) == class::KEPLER_CHANNEL_GROUP_A)
        .unwrap();
    let p: NvChannelGroupAllocationParameters = read_struct(&tsg_call.3).unwrap();
    assert_eq!((p.bIsCallingContextVgpuPlugin, p.engineType), (0, 1));
    let ch_call = calls
        .iter()
        .find(|c| u32_of(&c.2, 12) == class::HOPPER_CHANNEL_GPFIFO_A)
        .unwrap();
    let p: NvChannelAllocParams = read_struct(&ch_call.3).unwrap();
    assert_eq!(p.flags, 1, "privileged flag cleared, others kept");
    drop(calls);
    assert_eq!(
        fwd.channels(),
        vec![
            ChannelRef {
                client,
                channel: c0
            },
            ChannelRef {
                client,
                channel: c1
            }
        ]
    );
    assert_eq!(fwd.channel_groups(), vec![(client, tsg, 1)]);
}

#[test]
fn foreign_clients_are_refused_before_the_driver() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    let (client, sub, _, [c0, _]) = tenant(&fwd, &mut mem);
    let before = fwd.driver().calls.lock().unwrap().len();
    let foreign = 0xC1D0_0999;
    assert_eq!(
        control(&fwd, &mut mem, foreign, foreign, 0x201, &[0; 128]),
        NvStatus::ERR_INVALID_CLIENT.0
    );
    assert_eq!(
        alloc(
            &fwd,
            &mut mem,
            foreign,
            foreign,
            class::NV01_DEVICE_0,
            &[0; 56]
        )
        .1,
        NvStatus::ERR_INVALID_CLIENT.0
    );
    let mut d = Nv2080CtrlFifoDisableChannelsParams {
        bDisable: 1,
        numChannels: 2,
        ..Default::default()
    };
    d.hClientList[..2].copy_from_slice(&[client, foreign]);
    d.hChannelList[..2].copy_from_slice(&[c0, 0x5C00_0001]);
    let disable = |mem: &mut SparseMemory, d: &Nv2080CtrlFifoDisableChannelsParams| {
        control(
            &fwd,
            mem,
            client,
            sub,
            NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS,
            d.as_bytes(),
        )
    };
    assert_eq!(
        disable(&mut mem, &d),
        NvStatus::ERR_INSUFFICIENT_PERMISSIONS.0
    );
    d.numChannels = 1;
    d.pRunlistPreemptEvent = 0x1234;
    assert_eq!(
        disable(&mut mem, &d),
        NvStatus::ERR_INSUFFICIENT_PERMISSIONS.0
    );
    assert_eq!(
        free(&fwd, &mut mem, foreign, foreign, foreign),
        (0, NvStatus::ERR_INVALID_CLIENT.0)
    );
    assert_eq!(
        fwd.driver().calls.lock().unwrap().len(),
        before,
        "nothing refused reached the driver"
    );
    assert_eq!(fwd.stats().refused, 5);
    d.pRunlistPreemptEvent = 0;
    assert_eq!(disable(&mut mem, &d), 0);
}

#[test]
fn bad_sizes_and_pointers_get_the_drivers_answers() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    let (client, _, _, _) = tenant(&fwd, &mut mem);
    // Over 1 MiB of params, and a NULL pointer with a size.
    assert_eq!(
        control(
            &fwd,
            &mut mem,
            client,
            client,
            0x201,
            &vec![0; (1 << 20) + 4]
        ),
        NvStatus::ERR_INVALID_ARGUMENT.0
    );
    let mut c = Nvos54Parameters {
        hClient: client,
        hObject: client,
        cmd: 0x201,
        params: 0,
        paramsSize: 128,
        ..Default::default()
    };
    assert_eq!(
        control_at(&fwd, &mut mem, ARG, &c).1.status,
        NvStatus::ERR_INVALID_ARGUMENT.0
    );
    // A wrong struct size is -EINVAL, an unreadable struct -EFAULT.
    assert_eq!(
        fwd.ioctl(3, HostNode::Ctl, req(Escape::RM_CONTROL, 36), ARG, &mut mem),
        Err(EINVAL)
    );
    mem.limit = Some(ARG);
    assert_eq!(
        fwd.ioctl(3, HostNode::Ctl, req(Escape::RM_CONTROL, 32), ARG, &mut mem),
        Err(EFAULT)
    );
    // Params behind a faulting pointer.
    mem.limit = Some(0xF000_0000);
    c.params = 0xFFFF_0000;
    let (_, out) = control_at(&fwd, &mut mem, 0x100, &c);
    assert_eq!(
        (out.status, out.params),
        (NvStatus::ERR_INVALID_ADDRESS.0, 0xFFFF_0000)
    );
}

#[test]
fn xfer_is_unwrapped_checked_and_rewrapped() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    let (client, _, _, _) = tenant(&fwd, &mut mem);
    let inner = Nvos54Parameters {
        hClient: 0xC1D0_0999,
        hObject: 1,
        cmd: 0x201,
        ..Default::default()
    };
    mem.put(0x5000, inner.as_bytes());
    let x = NvIoctlXfer {
        cmd: Escape::RM_CONTROL as u32,
        size: 32,
        ptr: 0x5000,
    };
    mem.put(ARG, x.as_bytes());
    let xreq = req(Escape::IOCTL_XFER_CMD, 16);
    assert_eq!(fwd.ioctl(3, HostNode::Ctl, xreq, ARG, &mut mem), Ok(0));
    assert_eq!(
        read_struct::<Nvos54Parameters>(&mem.get(0x5000, 32))
            .unwrap()
            .status,
        NvStatus::ERR_INVALID_CLIENT.0
    );
    let inner = Nvos54Parameters {
        hClient: client,
        hObject: client,
        cmd: 0x201,
        ..Default::default()
    };
    mem.put(0x5000, inner.as_bytes());
    assert_eq!(fwd.ioctl(3, HostNode::Ctl, xreq, ARG, &mut mem), Ok(0));
    let last = fwd.driver().calls.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, xreq);
    let sent: NvIoctlXfer = read_struct(&last.2).unwrap();
    assert_eq!((sent.cmd, sent.size), (Escape::RM_CONTROL as u32, 32));
    assert_ne!(sent.ptr, 0x5000, "the driver reads the forwarder's copy");
    // Too big, and nested.
    for (cmd, size) in [(Escape::RM_CONTROL, 16385), (Escape::IOCTL_XFER_CMD, 16)] {
        let bad = NvIoctlXfer {
            cmd: cmd as u32,
            size,
            ptr: 0x5000,
        };
        mem.put(ARG, bad.as_bytes());
        assert_eq!(
            fwd.ioctl(3, HostNode::Ctl, xreq, ARG, &mut mem),
            Err(EINVAL)
        );
    }
    // Behind a faulting pointer: a command above a byte and a nested XFER are refused before the
    // copy-in (-EINVAL), a forwardable one faults in it (-EFAULT).
    mem.limit = Some(ARG + 0x1000);
    for (cmd, size, want) in [
        (0x1_0000 + Escape::RM_CONTROL as u32, 32, EINVAL),
        (Escape::IOCTL_XFER_CMD as u32, 16, EINVAL),
        (Escape::RM_CONTROL as u32, 32, EFAULT),
    ] {
        let bad = NvIoctlXfer {
            cmd,
            size,
            ptr: ARG + 0x10_0000,
        };
        mem.put(ARG, bad.as_bytes());
        assert_eq!(
            fwd.ioctl(3, HostNode::Ctl, xreq, ARG, &mut mem),
            Err(want),
            "cmd {cmd:#x}"
        );
    }
}

#[test]
fn free_and_close_forget_channels_and_notify() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let (tx, rx) = std::sync::mpsc::channel();
    fwd.set_channel_listener(tx);
    let mut mem = SparseMemory::default();
    let (client, _, tsg, _) = tenant(&fwd, &mut mem);
    assert_eq!(rx.try_iter().count(), 2);
    free(&fwd, &mut mem, client, client, tsg);
    assert!(
        fwd.channels().is_empty(),
        "freeing the TSG frees its channels"
    );
    assert_eq!(rx.try_iter().count(), 1);
    let (client2, _, _, _) = tenant(&fwd, &mut mem);
    assert_eq!(fwd.channels().len(), 2);
    fwd.on_close(4);
    assert_eq!(fwd.channels().len(), 2, "another fd's close frees nothing");
    fwd.on_close(3);
    assert!(fwd.channels().is_empty() && !fwd.owns_client(client2));
}

#[test]
fn own_channels_are_re_enabled_on_the_tenants_own_subdevice() {
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    let (client, sub, _, [c0, c1]) = tenant(&fwd, &mut mem);
    assert_eq!(fwd.enable_own_channels(), 2);
    let last = fwd.driver().calls.lock().unwrap().last().cloned().unwrap();
    let c: Nvos54Parameters = read_struct(&last.2).unwrap();
    assert_eq!(
        (c.hClient, c.hObject, c.cmd),
        (client, sub, NV2080_CTRL_CMD_FIFO_DISABLE_CHANNELS)
    );
    let p: Nv2080CtrlFifoDisableChannelsParams = read_struct(&last.3).unwrap();
    assert_eq!((p.bDisable, p.numChannels), (0, 2));
    let mut chans = [p.hChannelList[0], p.hChannelList[1]];
    chans.sort();
    assert_eq!(chans, [c0, c1]);
    assert_eq!(&p.hClientList[..2], &[client, client]);
}

#[test]
fn uvm_and_unknown_nodes_pass_through_unchanged() {
    assert_eq!(HostNode::from_path("/dev/nvidiactl"), Some(HostNode::Ctl));
    assert_eq!(
        HostNode::from_path("/dev/nvidia3"),
        Some(HostNode::Device(3))
    );
    assert_eq!(
        HostNode::from_path("/dev/nvidia-uvm-tools"),
        Some(HostNode::Uvm)
    );
    assert_eq!(
        HostNode::from_path("/dev/nvidia-modeset"),
        Some(HostNode::Other)
    );
    assert_eq!(HostNode::from_path("/dev/null"), None);
    let fwd = Forwarder::new(ScriptedDriver::default());
    let mut mem = SparseMemory::default();
    mem.put(ARG, &[0; 8]);
    assert_eq!(fwd.ioctl(5, HostNode::Uvm, 0x4b, ARG, &mut mem), Ok(0));
    assert_eq!(fwd.stats().uvm, 1);
}

#[test]
fn sparse_memory_faults_past_limit_and_address_space_end() {
    let mut m = SparseMemory {
        limit: Some(0x2000),
        ..SparseMemory::default()
    };
    m.write(0x1ffc, &[1, 2, 3, 4]).unwrap();
    let mut b = [0u8; 4];
    m.read(0x1ffc, &mut b).unwrap();
    assert_eq!(b, [1, 2, 3, 4]);
    assert!(m.read(0x1ffd, &mut b).is_err());
    let mut unbounded = SparseMemory::default();
    assert!(unbounded.write(u64::MAX - 1, &[0; 4]).is_err());
    assert!(unbounded.read(u64::MAX, &mut b).is_err());
}
