//! Seed corpora, made from real inputs: the H200 driver traces (`tests/fixtures/traces`) for
//! escapes, a correct driver's bring-up and requests for the device model and vfio-user, what
//! the shim sends for the tenant protocol, and the repository's example policy files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use rm_abi::escape::Escape;
use rm_abi::ioctl::IoctlRequest;
use rm_core::objects::MODELED_CLASSES;
use rm_core::testing::traces;
use vgpu::protocol::virtio::common;
use vgpu::protocol::{reg, virtio};

use crate::escape::{self, sel};
use crate::input::Writer;

/// Steps per escape seed (a trace is cut into inputs of this many calls).
const STEPS_PER_SEED: usize = 24;

/// The seeds of `target` (one of [`crate::TARGETS`]); empty for an unknown name.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "escape" => escape_seeds(),
        "virtqueue" => virtqueue_seeds(),
        "bar0" => bar0_seeds(),
        "vfio_user" => vfio_user_seeds(),
        "tenant" => tenant_seeds(),
        "policy" => policy_seeds(),
        _ => Vec::new(),
    }
}

/// The inputs a long run of `target` stopped on, kept in `tests/fuzz/regressions/TARGET/`.
pub fn regressions(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The object a control of `cmd` is issued on, by its class (the high half of the command).
fn control_target(cmd: u32) -> u8 {
    match cmd >> 16 {
        0x0000 => sel::CLIENT,
        0x0080 => sel::DEVICE,
        0x2080 => sel::SUBDEVICE,
        0x90f1 => sel::VASPACE,
        0xa06c => sel::TSG,
        0x906f | 0xa06f | 0xc36f | 0xc86f => sel::CHANNEL,
        _ => sel::SUBDEVICE,
    }
}

/// Every ioctl of every trace as escape steps, [`STEPS_PER_SEED`] to a seed; plus one seed
/// that allocates every modelled class under the device.
fn escape_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for path in traces::all_traces() {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        let mut w = Writer::default();
        let mut steps = 0;
        for line in BufReader::new(flate2::read::GzDecoder::new(file)).lines() {
            let Ok(line) = line else { break };
            let Ok(r) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if r["op"] != "ioctl" || r["dev"] == "nvidia-uvm" {
                continue;
            }
            let Some(req) = r["req"]
                .as_str()
                .and_then(|t| u32::from_str_radix(t.trim_start_matches("0x"), 16).ok())
            else {
                continue;
            };
            let Some(esc) = Escape::from_nr(IoctlRequest::decode(req).nr) else {
                continue;
            };
            let input = hex(r["in"].as_str().unwrap_or(""));
            match (esc, r["p_in"].as_str()) {
                (Escape::RM_CONTROL, Some(p)) if input.len() >= 12 => {
                    let cmd = u32::from_le_bytes(input[8..12].try_into().unwrap());
                    escape::control_step(&mut w, control_target(cmd), cmd, &hex(p));
                }
                _ => {
                    let fd = u8::from(r["dev"] != "nvidiactl");
                    escape::escape_step(&mut w, esc, fd, &input);
                }
            }
            steps += 1;
            if steps == STEPS_PER_SEED {
                seeds.push(std::mem::take(&mut w.0));
                steps = 0;
            }
        }
        if steps > 0 {
            seeds.push(w.0);
        }
    }
    let mut w = Writer::default();
    for &class in MODELED_CLASSES {
        escape::alloc_step(&mut w, sel::DEVICE, class, &[]);
    }
    seeds.push(w.0);
    seeds
}

fn virtqueue_seeds() -> Vec<Vec<u8>> {
    // Step 0 posts a header: op, file, request kind, escape, size, length, arg kind, offset,
    // arg blob, params blob, slot.
    let post = |w: &mut Writer, op: u8, esc: u8, arg: &[u8]| {
        w.u8(0)
            .u8(op)
            .u8(0)
            .u8(1)
            .u8(esc)
            .u8(0)
            .u8(0)
            .u8(0)
            .u8(0)
            .u8(0);
        w.blob(arg).blob(&[]).u8(0);
    };
    let mut a = Writer::default();
    post(&mut a, 0, 0, &[]);
    post(&mut a, 2, 0, &[0; 72]);
    post(&mut a, 1, 0, &[]);
    let mut b = Writer::default();
    b.u8(3).u8(0).u8(2).u8(0).u8(0).u8(0).u8(1);
    b.u8(4).u8(0).u8(0);
    b.u8(5).u16(40);
    b.u8(8);
    post(&mut b, 0, 0, &[]);
    let mut c = Writer::default();
    c.u8(6)
        .u16(0x1000)
        .blob(&[0xff; 64])
        .u8(7)
        .u8(0)
        .u8(4)
        .u8(1)
        .u8(3);
    vec![a.0, b.0, c.0]
}

fn bar0_seeds() -> Vec<Vec<u8>> {
    // Step 0 writes: offset kind 2 (a listed offset, index, nudge), width kind, bytes.
    let write = |w: &mut Writer, index: u8, width: u8, bytes: &[u8]| {
        w.u8(0).u8(2).u8(index).u8(0).u8(width).bytes(bytes);
    };
    let mut a = Writer::default();
    write(&mut a, 14, 1, &[0]);
    write(&mut a, 14, 1, &[3]);
    write(&mut a, 14, 1, &[0xb]);
    write(&mut a, 16, 2, &16u16.to_le_bytes());
    write(&mut a, 18, 7, &0x1000u64.to_le_bytes());
    write(&mut a, 19, 7, &0x2000u64.to_le_bytes());
    write(&mut a, 20, 7, &0x3000u64.to_le_bytes());
    write(&mut a, 17, 2, &1u16.to_le_bytes());
    write(&mut a, 14, 1, &[0xf]);
    write(&mut a, 26, 2, &0u16.to_le_bytes());
    a.u8(7);
    let mut b = Writer::default();
    write(&mut b, 6, 3, &7u32.to_le_bytes());
    write(&mut b, 9, 3, &0x5c00_0001u32.to_le_bytes());
    b.u8(8).u8(0).u32(3).u32(0x1234);
    b.u8(4).u8(2).u8(24).u8(0).u8(3);
    b.u8(4).u8(2).u8(23).u8(0).u8(1);
    b.u8(6).u8(1).u8(0).u64(0).u8(3).u8(0);
    let offsets = [
        u64::from(virtio::COMMON_CFG + common::QUEUE_ENABLE),
        u64::from(reg::END),
    ];
    let mut c = Writer::default();
    for off in offsets {
        c.u8(0).u8(0).u64(off).u8(3).u32(1);
    }
    vec![a.0, b.0, c.0]
}

fn vfio_user_seeds() -> Vec<Vec<u8>> {
    // Each message: id, flags pick, command, size kind, body fields.
    let mut a = Writer::default();
    a.u16(1).u8(7).u8(4).u8(1).bytes(&[0; 8]).u8(0).u8(0).u32(0);
    for index in [0u8, 2, 7, 9] {
        a.u16(2)
            .u8(7)
            .u8(5)
            .u8(1)
            .bytes(&[32, 0, 0, 0, 0, 0, 0, 0])
            .u8(0)
            .u8(index)
            .bytes(&[0; 20]);
    }
    a.u16(3).u8(7).u8(7).u8(1).bytes(&[0; 8]).u8(0).u8(0).u32(0);
    a.u16(4)
        .u8(7)
        .u8(9)
        .u8(1)
        .u8(2)
        .u8(0)
        .u8(1)
        .u8(0)
        .u8(2)
        .u8(3);
    let mut b = Writer::default();
    b.u16(5)
        .u8(7)
        .u8(10)
        .u8(1)
        .u8(2)
        .u8(3)
        .u8(1)
        .u8(0)
        .u8(2)
        .u8(1)
        .u8(0xb);
    b.u16(6).u8(7).u8(13).u8(1);
    b.u16(7).u8(7).u8(8).u8(1).bytes(&[
        20, 0, 0, 0, 0x21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    ]);
    b.u16(8).u8(7).u8(1).u8(1).u16(0).u16(1).u8(0);
    vec![a.0, b.0]
}

fn tenant_seeds() -> Vec<Vec<u8>> {
    [
        "HELLO prod 4242\nCLIENT c1d00001\nCHANNELS c1d00001:5c000010 c1d00001:5c00000f\n",
        "HELLO batch.a-1 1\nCHANNELS\nCHANNELS c1d00019:5c000010\nCLIENT c1d00003\n",
        "HELLO a 1\r\nBYE\n\nHELLO a/b 1\nCHANNELS 1:zz\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

fn policy_seeds() -> Vec<Vec<u8>> {
    let dir = workspace().join("examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p: &PathBuf| std::fs::read(Path::new(p)).ok())
        .collect()
}
