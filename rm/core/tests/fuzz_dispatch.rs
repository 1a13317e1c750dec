//! Property test: random bytes and random escape sequences from two guests never panic the
//! core (or trip the fake backend's contract checks), and tearing the vGPUs down leaves no
//! object behind, in the core or in the backend.

use proptest::prelude::*;
use rm_abi::escape::{ArgSize, Escape};
use rm_abi::ioctl::IoctlRequest;
use rm_abi::Handle;
use rm_client::{RmClient, Transport};
use rm_core::testing::fixtures::FakeBackend;
use rm_core::testing::transport::{CoreTransport, GUEST_BASE};
use rm_core::testing::{full_tree, Tree};
use rm_core::{GuestMemory, Node, Rm, VecGuestMemory, VgpuConfig};

/// One step a fuzzed guest takes.
#[derive(Debug, Clone)]
enum Op {
    Open(u8, bool),
    /// A valid object tree built on fresh fds, so later random calls name live objects.
    Tree(u8),
    Close(u8, u8),
    /// A known escape with its right size (mostly), the argument built from `words`, which are
    /// drawn from handles, classes and guest addresses that reach deep paths.
    Escape {
        gfid: u8,
        fd: u8,
        esc: usize,
        size_jitter: i8,
        words: Vec<u32>,
    },
    /// A fully random request number and argument.
    Raw {
        gfid: u8,
        fd: u8,
        request: u32,
        bytes: Vec<u8>,
    },
    /// Random bytes written where params live.
    Scribble {
        gfid: u8,
        offset: u16,
        bytes: Vec<u8>,
    },
}

const ARG: u64 = GUEST_BASE;
const PARAMS: u64 = GUEST_BASE + 0x1000;

fn interesting_word() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => (0u32..8).prop_map(|i| 0xC1D0_0000 + i),
        3 => (0u32..24).prop_map(|i| 0x5C00_0000 + i),
        2 => prop::sample::select(rm_core::objects::MODELED_CLASSES.to_vec()),
        2 => prop::sample::select(rm_core::controls::CONTROLS.iter().map(|c| c.cmd).collect::<Vec<_>>()),
        1 => Just(PARAMS as u32),
        1 => Just((PARAMS >> 32) as u32),
        1 => 0u32..0x2000,
        1 => any::<u32>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u8..2, any::<bool>()).prop_map(|(g, ctl)| Op::Open(g, ctl)),
        1 => (0u8..2, 0u8..8).prop_map(|(g, fd)| Op::Close(g, fd)),
        1 => (0u8..2).prop_map(Op::Tree),
        8 => (0u8..2, 0u8..8, 0..Escape::ALL.len(), -2i8..3, prop::collection::vec(interesting_word(), 0..40))
            .prop_map(|(gfid, fd, esc, size_jitter, words)| Op::Escape { gfid, fd, esc, size_jitter, words }),
        2 => (0u8..2, 0u8..8, any::<u32>(), prop::collection::vec(any::<u8>(), 0..128))
            .prop_map(|(gfid, fd, request, bytes)| Op::Raw { gfid, fd, request, bytes }),
        2 => (0u8..2, 0u16..0x800, prop::collection::vec(interesting_word(), 0..64).prop_map(|w| w.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .prop_map(|(gfid, offset, bytes)| Op::Scribble { gfid, offset, bytes }),
    ]
}

fn arg_size(esc: Escape, jitter: i8) -> u32 {
    let base = match esc.arg_size() {
        ArgSize::Exact(n) | ArgSize::AtLeast(n) | ArgSize::ArrayOf(n) => n,
        ArgSize::EitherOf(a, b) => {
            if jitter % 2 == 0 {
                a
            } else {
                b
            }
        }
    };
    if jitter.unsigned_abs() == 2 {
        base.saturating_add_signed(i32::from(jitter))
    } else {
        base
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_escapes_never_panic_and_teardown_frees_everything(ops in prop::collection::vec(op(), 1..80)) {
        // The two vGPUs as transports of one core, for the valid trees their clients build; the
        // random escapes reach the core's frontend directly, with arguments in memories of
        // their own.
        let config = VgpuConfig::with_quota(64 << 20);
        let t1 = CoreTransport::new(Rm::new(FakeBackend::default()), 1, config.clone()).unwrap();
        let t2 = t1.another(2, config).unwrap();
        let ts = [&t1, &t2];
        let mut mem = [VecGuestMemory::new(GUEST_BASE, 0x4000), VecGuestMemory::new(GUEST_BASE, 0x4000)];
        let mut fds: [Vec<i32>; 2] = [Vec::new(), Vec::new()];
        for g in 0..2u32 {
            let mut rm = t1.rm();
            fds[g as usize].push(rm.open(g + 1, Node::Ctl).unwrap());
            fds[g as usize].push(rm.open(g + 1, Node::Device(0)).unwrap());
        }
        let pick = |fds: &Vec<i32>, i: u8| -> i32 { fds.get(i as usize % fds.len().max(1)).copied().unwrap_or(99) };
        for op in ops {
            match op {
                Op::Open(g, ctl) => {
                    let node = if ctl { Node::Ctl } else { Node::Device(0) };
                    if let Ok(fd) = t1.rm().open(u32::from(g) + 1, node) { fds[g as usize].push(fd); }
                }
                Op::Tree(g) => {
                    let t = ts[g as usize];
                    let mut guest = RmClient::open(t).unwrap();
                    let dev = t.open(rm_client::Node::Device(0)).unwrap();
                    let tree = full_tree(&mut guest);
                    prop_assert!(tree.copy != 0);
                    fds[g as usize].extend([guest.ctl(), dev]);
                }
                Op::Close(g, i) => {
                    let list = &mut fds[g as usize];
                    if !list.is_empty() {
                        let fd = list.remove(i as usize % list.len());
                        t1.rm().close(u32::from(g) + 1, fd).unwrap();
                    }
                }
                Op::Escape { gfid, fd, esc, size_jitter, words } => {
                    let esc = Escape::ALL[esc];
                    let size = arg_size(esc, size_jitter).min(0xC00);
                    let mut arg: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                    arg.resize(size as usize, 0);
                    let m = &mut mem[gfid as usize];
                    m.write(ARG, &arg).unwrap();
                    let Some(req) = IoctlRequest::encode(esc as u8, size) else { continue };
                    let ret = t1.rm().ioctl(u32::from(gfid) + 1, pick(&fds[gfid as usize], fd), req, ARG, m);
                    prop_assert!(ret <= 0);
                }
                Op::Raw { gfid, fd, request, bytes } => {
                    let m = &mut mem[gfid as usize];
                    m.write(ARG, &bytes).unwrap();
                    let ret = t1.rm().ioctl(u32::from(gfid) + 1, pick(&fds[gfid as usize], fd), request, ARG, m);
                    prop_assert!(ret <= 0);
                }
                Op::Scribble { gfid, offset, bytes } => {
                    let _ = mem[gfid as usize].write(PARAMS + u64::from(offset), &bytes);
                }
            }
            let rm = t1.rm();
            let live: usize = rm.backend().live_count();
            prop_assert_eq!(live, rm.total_objects(), "core and backend disagree on live objects");
        }
        let mut rm = t1.rm();
        rm.destroy_vgpu(1).unwrap();
        rm.destroy_vgpu(2).unwrap();
        prop_assert_eq!(rm.total_objects(), 0);
        prop_assert_eq!(rm.backend().live_count(), 0);
    }
}

/// A fixed sequence that reaches deep paths: the same teardown property on a full tree built
/// with valid calls, then closed by fd.
#[test]
fn closing_the_fd_frees_the_whole_tree() {
    let core = CoreTransport::new(
        Rm::new(FakeBackend::default()),
        5,
        VgpuConfig::with_quota(1 << 30),
    )
    .unwrap();
    let mut g = RmClient::open(&core).unwrap();
    let _dev = core.open(rm_client::Node::Device(0)).unwrap();
    let t: Tree = full_tree(&mut g);
    let _: Handle = t.copy;
    assert!(core.rm().object_count(5) >= 10);
    core.rm().close(5, g.ctl()).unwrap();
    let rm = core.rm();
    assert_eq!(rm.object_count(5), 0);
    assert_eq!(rm.backend().live_count(), 0);
}
