//! Escape-virtqueue chains: what a guest driver puts in its split virtqueue in the window
//! (descriptors, available ring, request headers, argument structs) and how it notifies,
//! served by the device model into the RM core over the sim.
//!
//! Checked: every used entry has length 0 or a footer's; every footer the device wrote says 0
//! or `-errno`; a queue the device marked `NEEDS_RESET` serves nothing until the driver resets
//! it; afterwards a correct driver is served; dropping the device leaves no RM or sim object.

use rm_abi::escape::{ArgSize, Escape};
use rm_abi::ioctl::IoctlRequest;
use vgpu::protocol::virtio::status;
use vgpu::protocol::{op, RequestHeader, ResponseFooter};

use crate::guest::{self, Guest, ARG, DESC, F_NEXT, F_WRITE, PARAMS, REQ, USED, WINDOW};
use crate::input::Input;

/// Runs one input.
pub fn run(data: &[u8]) {
    let rm = guest::sim_rm();
    let mut g = Guest::new(guest::device(&rm));
    assert!(g.init(), "a correct queue set-up was refused");
    let mut i = Input::new(data);
    let mut steps = 0;
    while !i.is_empty() && steps < 256 {
        steps += 1;
        step(&mut g, &mut i);
    }
    g.assert_serves_a_correct_driver();
    drop(g);
    guest::assert_torn_down(&rm);
}

/// A request number: a known escape with a plausible size, or anything.
fn request(i: &mut Input<'_>) -> u32 {
    if i.u8().is_multiple_of(4) {
        return i.u32();
    }
    let esc = i.pick(Escape::ALL);
    let size = match esc.arg_size() {
        ArgSize::Exact(n) | ArgSize::AtLeast(n) | ArgSize::ArrayOf(n) => n,
        ArgSize::EitherOf(a, b) => {
            if i.u8() & 1 == 0 {
                a
            } else {
                b
            }
        }
    };
    let size = size.saturating_add_signed(i32::from(i.u8() as i8 % 3));
    IoctlRequest::encode(esc as u8, size).unwrap_or(0)
}

/// A window address: one of the driver's areas, or anything.
fn address(i: &mut Input<'_>) -> u64 {
    match i.u8() % 6 {
        0 => ARG,
        1 => PARAMS + u64::from(i.u16()),
        2 => REQ + 32 * u64::from(i.u8() % 16),
        3 => WINDOW - u64::from(i.u8()),
        4 => u64::from(i.u32()),
        _ => i.u64(),
    }
}

fn step(g: &mut Guest, i: &mut Input<'_>) {
    match i.u8() % 9 {
        0..=2 => {
            let h = RequestHeader {
                op: i.pick(&[
                    op::OPEN,
                    op::CLOSE,
                    op::IOCTL,
                    op::IOCTL,
                    op::MAPPING_READ,
                    op::MAPPING_WRITE,
                    0,
                    99,
                ]),
                file: i.pick(&[0, 1, 2, 3, -1, i32::MAX]),
                request: request(i),
                length: i.pick(&[0, 16, 4096, 1 << 20, (1 << 20) + 1, u32::MAX]),
                arg: address(i),
                offset: i.pick(&[0, 4096, u64::MAX]),
            };
            let arg = i.blob(1024);
            g.wwrite(ARG, arg);
            let params = i.blob(1024);
            g.wwrite(PARAMS, params);
            let slot = u16::from(i.u8());
            let ftr = g.post(slot, &h);
            g.notify();
            check_used(g);
            let mut raw = [0u8; ResponseFooter::SIZE];
            g.wread(ftr, &mut raw);
            if raw != [0xee; ResponseFooter::SIZE] {
                let f = ResponseFooter::from_bytes(&raw);
                assert!(f.ret <= 0, "a footer says {} for {h:?}", f.ret);
            }
        }
        3 => {
            let idx = u16::from(i.u8());
            let addr = address(i);
            let len = i.pick(&[32, 16, 0, 8, 33, u32::MAX]);
            let flags = match i.u8() % 8 {
                0 => F_NEXT,
                1 => F_WRITE,
                2 => 0,
                3 => F_NEXT | F_WRITE,
                4 => 4,
                5 => 4 | F_NEXT,
                _ => i.u16(),
            };
            let next = u16::from(i.u8());
            g.put_desc(idx, addr, len, flags, next);
        }
        4 => {
            let head = if i.u8() & 1 == 0 {
                u16::from(i.u8() % 16)
            } else {
                i.u16()
            };
            g.push_avail(head);
            g.notify();
            check_used(g);
        }
        5 => {
            let idx = i.u16();
            g.set_avail_idx(idx);
            g.notify();
            check_used(g);
        }
        6 => {
            // Garbage anywhere the driver keeps queue state, except the used ring: that one
            // is the device's to write, and a driver that scribbles on it only misleads itself.
            let mut at = DESC + u64::from(i.u16()) % (PARAMS + 0x1000 - DESC - 0x1000);
            if at >= USED {
                at += 0x1000;
            }
            let bytes = i.blob(64);
            let room = if at < USED {
                (USED - at) as usize
            } else {
                bytes.len()
            };
            let _ = g.dev.window().write(at, &bytes[..bytes.len().min(room)]);
            g.dev.poll();
            check_used(g);
        }
        7 => {
            g.dev.set_polled(i.u8() & 1 == 0);
            g.dev.poll();
            check_used(g);
        }
        _ => {
            assert!(g.init(), "a correct queue set-up was refused after a reset");
        }
    }
}

/// Reads the used entries the device just added and checks them; a broken queue must then
/// stay silent.
fn check_used(g: &mut Guest) {
    for (_, len) in g.take_used() {
        assert!(
            len == 0 || len == ResponseFooter::SIZE as u32,
            "used length {len}"
        );
    }
    if g.status() & status::NEEDS_RESET != 0 {
        let before = g.used_idx();
        g.notify();
        g.dev.poll();
        assert_eq!(
            g.used_idx(),
            before,
            "a queue that needs a reset served chains"
        );
    }
}
