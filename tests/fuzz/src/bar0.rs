//! BAR0 accesses: what a guest (or a VMM forwarding its traps) writes to and reads from the
//! vGPU's trapped register BAR, plus the window and nonexistent BARs, at any offset and width,
//! interleaved with the poller's service.
//!
//! Checked: every read fills exactly its buffer and the identity registers never change
//! (`MAGIC`, `VERSION`, `GFID`, the device configuration's magic); a BAR that does not exist
//! reads as all-ones; afterwards a correct driver still brings the device up and is served;
//! dropping the device leaves no RM or sim object.

use vgpu::protocol::virtio::common;
use vgpu::protocol::{mailbox, reg, virtio, MAGIC, PROTOCOL_VERSION};

use crate::guest::{self, Guest, GFID, MAILBOX, WINDOW};
use crate::input::Input;

/// Offsets where BAR0 does something.
const OFFSETS: &[u32] = &[
    reg::MAGIC,
    reg::VERSION,
    reg::GFID,
    reg::FEATURES,
    reg::WINDOW_SIZE_LO,
    reg::INTR_STATUS,
    reg::INTR_ENABLE,
    reg::ERROR_STATUS,
    reg::LAST_QUEUE_FAULT,
    reg::DOORBELL,
    reg::DOORBELL_MAILBOX,
    reg::END - 4,
    virtio::COMMON_CFG + common::DEVICE_FEATURE_SELECT,
    virtio::COMMON_CFG + common::DRIVER_FEATURE,
    virtio::COMMON_CFG + common::DEVICE_STATUS,
    virtio::COMMON_CFG + common::QUEUE_SELECT,
    virtio::COMMON_CFG + common::QUEUE_SIZE,
    virtio::COMMON_CFG + common::QUEUE_ENABLE,
    virtio::COMMON_CFG + common::QUEUE_DESC,
    virtio::COMMON_CFG + common::QUEUE_DRIVER,
    virtio::COMMON_CFG + common::QUEUE_DEVICE,
    virtio::COMMON_CFG + common::QUEUE_RESET,
    virtio::COMMON_CFG + 0x3e,
    virtio::ISR,
    virtio::DEVICE_CFG,
    virtio::DEVICE_CFG + 28,
    virtio::NOTIFY,
    virtio::NOTIFY + 2,
    0x1ffc,
    0x2000,
];

/// Decodes an offset: usually one of [`OFFSETS`] nudged a little, sometimes anything.
fn offset(i: &mut Input<'_>) -> u64 {
    match i.u8() % 8 {
        0 => i.u64(),
        1 => u64::from(i.u16() % 0x2100),
        _ => {
            let base = i.pick(OFFSETS);
            let nudge = i.u8();
            u64::from(
                base.wrapping_add(u32::from(nudge % 8))
                    .wrapping_sub(nudge.is_multiple_of(16) as u32),
            )
        }
    }
}

/// Decodes an access width.
fn width(i: &mut Input<'_>) -> usize {
    match i.u8() % 8 {
        0 => usize::from(i.u8() % 17),
        1 => 1,
        2 => 2,
        3..=5 => 4,
        _ => 8,
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let rm = guest::sim_rm();
    let mut g = Guest::new(guest::device(&rm));
    let mut i = Input::new(data);
    let mut steps = 0;
    while !i.is_empty() && steps < 512 {
        steps += 1;
        step(&mut g, &mut i);
    }
    assert_eq!(g.r32(reg::MAGIC), MAGIC);
    assert_eq!(g.r32(reg::VERSION), PROTOCOL_VERSION);
    assert_eq!(g.r32(reg::GFID), GFID);
    g.assert_serves_a_correct_driver();
    drop(g);
    guest::assert_torn_down(&rm);
}

fn step(g: &mut Guest, i: &mut Input<'_>) {
    match i.u8() % 10 {
        0..=3 => {
            let off = offset(i);
            let n = width(i);
            let data = i.bytes(n).to_vec();
            g.dev.bar_write(0, off, &data);
        }
        4 | 5 => {
            let off = offset(i);
            let mut buf = vec![0x5a; width(i)];
            g.dev.bar_read(0, off, &mut buf);
            if off == u64::from(reg::MAGIC) && buf.len() == 4 {
                assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), MAGIC);
            }
            if off == u64::from(virtio::DEVICE_CFG) && buf.len() == 4 {
                assert_eq!(u32::from_le_bytes(buf[..4].try_into().unwrap()), MAGIC);
            }
            if off == u64::from(virtio::ISR) && !buf.is_empty() {
                assert!(buf[0] <= 3, "ISR shows causes it has not: {:#x}", buf[0]);
            }
        }
        6 => {
            let bar = i.pick(&[1u8, 2, 3, 4, 5, 6, 255]);
            let off = if i.u8() & 1 == 0 {
                i.u64()
            } else {
                i.u64() % WINDOW
            };
            let n = width(i);
            if i.u8() & 1 == 0 {
                let mut buf = vec![0u8; n];
                g.dev.bar_read(bar, off, &mut buf);
                if bar != 2 {
                    assert!(buf.iter().all(|&b| b == 0xff), "BAR{bar} has contents");
                }
            } else {
                let data = i.bytes(n).to_vec();
                g.dev.bar_write(bar, off, &data);
            }
        }
        7 => {
            g.dev.poll();
        }
        8 => {
            // Mailbox contents and a registration at (or near) its place.
            let at = MAILBOX + u64::from(i.u8() % 4) * 4;
            let head = i.u32();
            let token = i.u32();
            g.wwrite(MAILBOX + mailbox::HEAD, &head.to_le_bytes());
            g.wwrite(MAILBOX + mailbox::TOKENS, &token.to_le_bytes());
            g.dev.bar_write(
                0,
                u64::from(reg::DOORBELL_MAILBOX),
                &(at as u32).to_le_bytes(),
            );
        }
        _ => {
            let polled = i.u8() & 1 == 0;
            g.dev.set_polled(polled);
        }
    }
}
