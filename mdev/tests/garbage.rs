//! A hostile guest: malformed chains, out-of-window addresses, descriptor loops, bad queue
//! setup, impossible ring indexes and random register writes. Every case gets an error (or no
//! answer where none can be written) and the device keeps serving the next good request.

mod common;

use common::*;
use proptest::prelude::*;
use rm_abi::class;
use rm_abi::NvStatus;
use rm_core::testing::RmCalls;
use vgpu::protocol::virtio::common as cc;
use vgpu::protocol::{self, error, node, op, reg, virtio, QueueFault, RequestHeader};
use vgpu::Counter;

fn ready_guest() -> (SimRm, Guest, i32) {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    g.init();
    let ctl = g.open_ctl();
    (rm, g, ctl)
}

/// The device still answers a good request correctly.
fn still_serves(g: &mut Guest, ctl: i32) {
    let (s, client) = g.with_rm(ctl, |c| {
        RmCalls::alloc(c, 0, 0, 0, class::NV01_ROOT_CLIENT, &[])
    });
    assert_eq!(s, NvStatus::OK);
    assert_ne!(client, 0);
}

fn open_header() -> RequestHeader {
    RequestHeader {
        op: op::OPEN,
        request: node::CTL,
        ..Default::default()
    }
}

/// A hand-made descriptor: (addr, len, flags, next).
type RawDesc = (u64, u32, u16, u16);

/// Posts a hand-made chain starting at descriptor 8 and notifies; returns the used entry, if any.
fn raw_chain(g: &mut Guest, descs: &[RawDesc]) -> Option<(u32, u32)> {
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        g.put_desc(i as u16 + 8, addr, len, flags, next);
    }
    g.push_avail(8);
    g.notify();
    g.take_used()
}

#[test]
fn wrong_lengths_and_layouts_get_einval_footers() {
    let (_rm, mut g, ctl) = ready_guest();
    g.wwrite(REQ + 0x200, &open_header().to_bytes());
    let ftr = REQ + 0x240;
    // Header too short, footer too long, header write-only, three descriptors, footer only.
    let cases: [(&[RawDesc], QueueFault); 5] = [
        (
            &[(REQ + 0x200, 31, F_NEXT, 9), (ftr, 16, F_WRITE, 0)],
            QueueFault::BadLength,
        ),
        (
            &[(REQ + 0x200, 32, F_NEXT, 9), (ftr, 17, F_WRITE, 0)],
            QueueFault::BadLength,
        ),
        (
            &[
                (REQ + 0x200, 32, F_NEXT | F_WRITE, 9),
                (ftr, 16, F_WRITE, 0),
            ],
            QueueFault::BadLayout,
        ),
        (
            &[
                (REQ + 0x200, 32, F_NEXT, 9),
                (REQ + 0x280, 8, F_NEXT, 10),
                (ftr, 16, F_WRITE, 0),
            ],
            QueueFault::BadLayout,
        ),
        (&[(ftr, 16, F_WRITE, 0)], QueueFault::BadLayout),
    ];
    for (descs, fault) in cases {
        let files = g.dev.open_files();
        let used = raw_chain(&mut g, descs);
        let f = g.footer(ftr);
        if descs.last().unwrap().1 == 16 {
            assert_eq!(used, Some((8, 16)), "{fault:?}");
            assert_eq!((f.ret, f.fault), (-22, fault as u32));
        } else {
            assert_eq!(used, Some((8, 0)), "{fault:?}: no footer to write");
        }
        assert_eq!(g.r32(reg::LAST_QUEUE_FAULT), fault as u32);
        assert_eq!(g.dev.open_files(), files, "the request did not run");
    }
    assert_ne!(g.r32(reg::ERROR_STATUS) & error::MALFORMED_REQUEST, 0);
    assert_eq!(g.dev.stats().get(Counter::RequestErrors), 5);
    still_serves(&mut g, ctl);
}

#[test]
fn descriptors_outside_the_window_get_efault_or_no_answer() {
    let (_rm, mut g, ctl) = ready_guest();
    let ftr = REQ + 0x240;
    let used = raw_chain(
        &mut g,
        &[(WINDOW - 16, 32, F_NEXT, 9), (ftr, 16, F_WRITE, 0)],
    );
    assert_eq!(used, Some((8, 16)));
    let f = g.footer(ftr);
    assert_eq!((f.ret, f.fault), (-14, QueueFault::OutOfWindow as u32));
    // Footer outside the window: nothing can be written back.
    g.wwrite(REQ + 0x200, &open_header().to_bytes());
    let used = raw_chain(
        &mut g,
        &[(REQ + 0x200, 32, F_NEXT, 9), (u64::MAX - 8, 16, F_WRITE, 0)],
    );
    assert_eq!(used, Some((8, 0)));
    still_serves(&mut g, ctl);
}

#[test]
fn descriptor_loops_and_long_chains_are_cut() {
    let (_rm, mut g, ctl) = ready_guest();
    // 8 -> 9 -> 8 ...
    let used = raw_chain(
        &mut g,
        &[(REQ, 32, F_NEXT, 9), (REQ + 32, 16, F_NEXT | F_WRITE, 8)],
    );
    assert_eq!(used, Some((8, 0)));
    assert_eq!(
        g.r32(reg::LAST_QUEUE_FAULT),
        QueueFault::ChainTooLong as u32
    );
    // A chain whose `next` leaves the table.
    let used = raw_chain(&mut g, &[(REQ, 32, F_NEXT, 900)]);
    assert_eq!(used, Some((8, 0)));
    // A straight chain through all 8 free descriptors and beyond the cap.
    let descs: Vec<_> = (0..8).map(|i| (REQ, 16, F_NEXT, 9 + i as u16)).collect();
    let mut descs = descs;
    descs[7].3 = 8;
    let used = raw_chain(&mut g, &descs);
    assert_eq!(used, Some((8, 0)));
    still_serves(&mut g, ctl);
}

/// `VIRTQ_DESC_F_INDIRECT` (virtio 1.2, 2.7.5.3).
const F_INDIRECT: u16 = 4;

#[test]
fn indirect_descriptors_are_refused_as_the_feature_is_not_offered() {
    let (_rm, mut g, ctl) = ready_guest();
    // A well-formed OPEN, but behind an indirect table of two descriptors at REQ + 0x300.
    g.wwrite(REQ + 0x200, &open_header().to_bytes());
    let ftr = REQ + 0x240;
    let table = REQ + 0x300;
    for (i, (addr, len, flags, next)) in [(REQ + 0x200, 32u32, F_NEXT, 1u16), (ftr, 16, F_WRITE, 0)]
        .into_iter()
        .enumerate()
    {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        g.wwrite(table + 16 * i as u64, &d);
    }
    g.wwrite(ftr, &[0u8; 16]);
    let files = g.dev.open_files();
    for descs in [
        // The head is the indirect one; then an indirect one behind a direct head.
        &[(table, 32, F_INDIRECT, 0)][..],
        &[(REQ + 0x200, 32, F_NEXT, 9), (table, 32, F_INDIRECT, 0)],
    ] {
        let used = raw_chain(&mut g, descs);
        assert_eq!(used, Some((8, 0)), "a used entry, nothing written");
        assert_eq!(g.r32(reg::LAST_QUEUE_FAULT), QueueFault::Indirect as u32);
        assert_eq!(g.dev.open_files(), files, "the OPEN inside did not run");
        assert_eq!(g.footer(ftr).ret, 0, "the table's footer is left alone");
    }
    still_serves(&mut g, ctl);
}

#[test]
fn a_header_length_that_overflows_the_chain_gets_the_length_fault() {
    let (_rm, mut g, ctl) = ready_guest();
    g.wwrite(REQ + 0x200, &open_header().to_bytes());
    let ftr = REQ + 0x240;
    let used = raw_chain(
        &mut g,
        &[(REQ + 0x200, u32::MAX, F_NEXT, 9), (ftr, 16, F_WRITE, 0)],
    );
    assert_eq!(used, Some((8, 16)), "the footer is answered");
    let f = g.footer(ftr);
    assert_eq!((f.ret, f.fault), (-22, QueueFault::BadLength as u32));
    still_serves(&mut g, ctl);
}

#[test]
fn a_device_minor_with_no_gpu_is_enodev() {
    let (_rm, mut g, ctl) = ready_guest();
    for minor in [1, 7, 254] {
        let r = g.submit(&RequestHeader {
            op: op::OPEN,
            request: node::DEVICE,
            arg: minor,
            ..Default::default()
        });
        assert_eq!(r.ret, -19, "minor {minor}");
    }
    g.open_dev(0);
    still_serves(&mut g, ctl);
}

#[test]
fn head_index_outside_the_table_gets_no_used_entry_and_queue_continues() {
    let (_rm, mut g, ctl) = ready_guest();
    g.push_avail(QSIZE + 3);
    g.notify();
    assert_eq!(g.take_used(), None);
    assert_eq!(
        g.r32(reg::LAST_QUEUE_FAULT),
        QueueFault::BadHeadIndex as u32
    );
    still_serves(&mut g, ctl);
}

#[test]
fn bad_ops_and_files_get_errnos() {
    let (_rm, mut g, ctl) = ready_guest();
    let r = g.submit(&RequestHeader {
        op: 99,
        file: ctl,
        ..Default::default()
    });
    assert_eq!(r.ret, -38);
    let r = g.submit(&RequestHeader {
        op: op::IOCTL,
        file: 12345,
        request: 0xC010_4629,
        arg: ARG,
        ..Default::default()
    });
    assert_eq!(r.ret, -9);
    let r = g.submit(&RequestHeader {
        op: op::OPEN,
        request: 7,
        ..Default::default()
    });
    assert_eq!(r.ret, -22);
    let r = g.submit(&RequestHeader {
        op: op::OPEN,
        request: node::DEVICE,
        arg: 1 << 40,
        ..Default::default()
    });
    assert_eq!(r.ret, -22);
    let r = g.submit(&RequestHeader {
        op: op::MAPPING_READ,
        file: ctl,
        length: (1 << 20) + 1,
        arg: 0,
        ..Default::default()
    });
    assert_eq!(r.ret, -22);
    // Wrong ioctl size for the escape: the RM frontend answers EINVAL.
    let r = g.submit(&RequestHeader {
        op: op::IOCTL,
        file: ctl,
        request: 0xC011_4629,
        arg: ARG,
        ..Default::default()
    });
    assert_eq!(r.ret, -22);
    still_serves(&mut g, ctl);
}

#[test]
fn queue_outside_the_window_or_misaligned_is_refused() {
    let rm = sim_rm();
    let mut g = Guest::new(sim_device(&rm, 1));
    for (desc, avail, used) in [
        (WINDOW - 16, AVAIL, USED),
        (DESC, WINDOW + 0x1000, USED),
        (DESC, AVAIL, u64::MAX - 3),
        (DESC + 8, AVAIL, USED),
        (DESC, 0, USED),
    ] {
        assert!(
            !g.init_with(desc, avail, used),
            "{desc:#x} {avail:#x} {used:#x}"
        );
        assert_ne!(g.r32(reg::ERROR_STATUS) & error::QUEUE_CONFIG, 0);
        g.w32(reg::ERROR_STATUS, error::ALL);
        // Notifies on a refused queue do nothing.
        g.notify();
    }
    // Size not a power of two.
    g.common_write(cc::DEVICE_STATUS, &[0]);
    g.common_write(cc::QUEUE_SIZE, &24u16.to_le_bytes());
    g.common_write(cc::QUEUE_DRIVER, &AVAIL.to_le_bytes());
    g.common_write(cc::QUEUE_ENABLE, &1u16.to_le_bytes());
    let mut en = [0u8; 2];
    g.common_read(cc::QUEUE_ENABLE, &mut en);
    assert_eq!(en, [0, 0]);
    g.init();
    let ctl = g.open_ctl();
    still_serves(&mut g, ctl);
}

#[test]
fn impossible_avail_index_sets_needs_reset_and_a_reset_recovers() {
    let (rm, mut g, ctl) = ready_guest();
    g.set_avail_idx(1000);
    g.notify();
    assert_ne!(g.status() & virtio::status::NEEDS_RESET, 0);
    assert_ne!(g.r32(reg::ERROR_STATUS) & error::QUEUE_BROKEN, 0);
    // Further notifies are ignored until reset.
    g.notify();
    g.init();
    assert_eq!(g.status() & virtio::status::NEEDS_RESET, 0);
    assert_eq!(rm.lock().unwrap().object_count(1), 0);
    let _ = ctl;
    let ctl = g.open_ctl();
    still_serves(&mut g, ctl);
}

#[test]
fn register_misuse_is_flagged_and_harmless() {
    let (_rm, mut g, ctl) = ready_guest();
    g.w32(reg::MAGIC, 0);
    assert_eq!(g.r32(reg::MAGIC), protocol::MAGIC);
    g.dev.bar_write(0, 0x21, &[1]);
    g.dev.bar_write(0, 0x1_0000, &[1, 2, 3, 4]);
    g.dev.bar_write(0, u64::MAX, &[1]);
    g.dev.bar_write(0, u64::from(virtio::ISR), &[1]);
    g.dev
        .bar_write(0, u64::from(virtio::DEVICE_CFG), &[1, 2, 3, 4]);
    g.dev.bar_write(7, 0, &[1, 2, 3, 4]);
    let mut b = [0u8; 8];
    g.dev.bar_read(0, u64::MAX - 2, &mut b);
    g.dev
        .bar_read(0, u64::from(virtio::DEVICE_CFG) + 30, &mut b);
    g.dev.bar_read(2, WINDOW - 4, &mut b);
    assert_eq!(b, [0xff; 8], "window read crossing the end");
    assert_ne!(g.r32(reg::ERROR_STATUS) & error::BAD_ACCESS, 0);
    still_serves(&mut g, ctl);
}

/// One random guest action.
#[derive(Debug, Clone)]
enum Action {
    Desc {
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    },
    Avail {
        head: u16,
    },
    AvailIdx {
        idx: u16,
    },
    Header {
        slot: u64,
        bytes: [u8; 32],
    },
    Notify,
    Bar0Write {
        offset: u64,
        value: u64,
        width: usize,
    },
    Doorbell {
        token: u32,
    },
}

fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..WINDOW + 64,
        Just(u64::MAX - 15),
        any::<u64>(),
        (0u64..64).prop_map(|s| REQ + 32 * s)
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (0u16..QSIZE + 2, addr(), prop_oneof![Just(16u32), Just(32), any::<u32>()], 0u16..8, 0u16..QSIZE + 2)
            .prop_map(|(i, addr, len, flags, next)| Action::Desc { i, addr, len, flags, next }),
        3 => (0u16..QSIZE + 4).prop_map(|head| Action::Avail { head }),
        1 => any::<u16>().prop_map(|idx| Action::AvailIdx { idx }),
        2 => (0u64..16, any::<[u8; 32]>()).prop_map(|(slot, mut bytes)| {
            bytes[0] %= 7;
            Action::Header { slot, bytes }
        }),
        3 => Just(Action::Notify),
        2 => (prop_oneof![0u64..0x100, 0x1000u64..0x1040, 0x1100u64..0x1104, 0x1300u64..0x1304, any::<u64>()],
              any::<u64>(), prop_oneof![Just(1usize), Just(2), Just(4), Just(8)])
            .prop_map(|(offset, value, width)| Action::Bar0Write { offset, value, width }),
        1 => any::<u32>().prop_map(|token| Action::Doorbell { token }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Random descriptor tables, ring indexes, headers and register writes: no panic, and after
    /// a reset the device serves a good request and holds no stale objects.
    #[test]
    fn random_guests_never_break_the_device(actions in proptest::collection::vec(action(), 1..40)) {
        let (rm, mut g, _ctl) = ready_guest();
        for a in actions {
            match a {
                Action::Desc { i, addr, len, flags, next } => {
                    if i < QSIZE {
                        g.put_desc(i, addr, len, flags, next);
                    }
                }
                Action::Avail { head } => g.push_avail(head),
                Action::AvailIdx { idx } => g.set_avail_idx(idx),
                Action::Header { slot, bytes } => g.wwrite(REQ + 64 * slot, &bytes),
                Action::Notify => g.notify(),
                Action::Bar0Write { offset, value, width } => g.dev.bar_write(0, offset, &value.to_le_bytes()[..width]),
                Action::Doorbell { token } => g.ring(token),
            }
        }
        g.init();
        prop_assert_eq!(rm.lock().unwrap().object_count(1), 0);
        prop_assert_eq!(g.dev.open_files(), 0);
        let ctl = g.open_ctl();
        still_serves(&mut g, ctl);
    }
}
