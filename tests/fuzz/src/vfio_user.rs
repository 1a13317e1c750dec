//! vfio-user messages: what a VMM sends an instance's socket, decoded by the `vfio_user`
//! crate's server and served by vgpud's backend ([`InstanceServer`]) over a vGPU on the sim.
//!
//! One server runs per process; each input is one VMM session on it: a version handshake made
//! here (so the input reaches a live session), then the input's messages, then the socket
//! closes. Checked: every reply is framed (a whole header, a size that covers it, the reply
//! flag, the id of a message that was sent); and after the session a new VMM is served (the
//! handshake, BAR0's `MAGIC`, the config space's vendor and device ids), and the departed
//! session's device was reset, so it holds no RM object.
//!
//! Known defects of `vfio_user` 0.1.7 (the newest release) that this target steers around, so
//! that the rest of the decoder is explored (each found by this target, see
//! `docs/fuzzing.md`): a `VERSION` whose size is below its fixed part, or whose capability
//! string is not NUL-terminated or holds a NUL, panics the server thread (an `unwrap` and an
//! unchecked subtraction); a `REGION_READ` or `REGION_WRITE` allocates its `count` (up to
//! 4 GiB) before anything checks it; and a refused message's remaining bytes are read as the
//! next messages (a command that must be answered but says "no reply", a write to a region
//! that does not exist), so any bytes can reach the version decoder that way. The generator
//! keeps version sizes and strings valid, counts at most 1 MiB, and sends only messages whose
//! refusal keeps the stream in step.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use mdev::poller::Poller;
use mdev::vfio_server::InstanceServer;
use vgpu::protocol::{reg, MAGIC, PCI_DEVICE_ID, PCI_VENDOR_ID};

use crate::guest::{self, SimRm, GFID};
use crate::input::Input;

/// vfio-user commands (the protocol's numbering).
mod cmd {
    pub const VERSION: u16 = 1;
    pub const DMA_MAP: u16 = 2;
    pub const DMA_UNMAP: u16 = 3;
    pub const DEVICE_GET_INFO: u16 = 4;
    pub const DEVICE_GET_REGION_INFO: u16 = 5;
    pub const DEVICE_RESET: u16 = 13;
    pub const GET_IRQ_INFO: u16 = 7;
    pub const SET_IRQS: u16 = 8;
    pub const REGION_READ: u16 = 9;
    pub const REGION_WRITE: u16 = 10;
}

/// Header flag: a reply.
const F_REPLY: u32 = 1;
/// Header flag: the sender wants no reply.
const F_NO_REPLY: u32 = 1 << 4;
/// Header bytes.
const HEADER: usize = 16;
/// The config space region of a vfio-pci device.
const CONFIG_REGION: u32 = 7;
/// Regions of a vfio-pci device.
const REGIONS: u32 = 9;
/// Largest access count the generator makes (see the module doc).
const MAX_COUNT: u32 = 1 << 20;
/// Most messages one input sends.
const MAX_MESSAGES: usize = 64;

struct Fixture {
    path: PathBuf,
    rm: SimRm,
    _server: InstanceServer,
}

fn fixture() -> &'static Mutex<Fixture> {
    static F: OnceLock<Mutex<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("fuzz-vfio-user-{}.sock", std::process::id()));
        let rm = guest::sim_rm();
        let device = Arc::new(Mutex::new(guest::device(&rm)));
        let poller = Poller::spawn(None).expect("poller thread");
        poller.register(&device);
        let server = InstanceServer::start("fuzz", &path, device, poller).expect("server");
        Mutex::new(Fixture {
            path,
            rm,
            _server: server,
        })
    })
}

/// One message: header and body.
pub fn message(id: u16, command: u16, flags: u32, size: Option<u32>, body: &[u8]) -> Vec<u8> {
    let size = size.unwrap_or((HEADER + body.len()) as u32);
    let mut m = Vec::with_capacity(HEADER + body.len());
    m.extend_from_slice(&id.to_le_bytes());
    m.extend_from_slice(&command.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A `VERSION` command with capability string `caps` (NUL added).
pub fn version(id: u16, major: u16, minor: u16, caps: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&major.to_le_bytes());
    body.extend_from_slice(&minor.to_le_bytes());
    body.extend_from_slice(caps);
    body.push(0);
    message(id, cmd::VERSION, 0, None, &body)
}

/// A `REGION_READ` of `count` bytes at `offset` of `region`.
fn region_read(id: u16, region: u32, offset: u64, count: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&region.to_le_bytes());
    body.extend_from_slice(&count.to_le_bytes());
    message(id, cmd::REGION_READ, 0, None, &body)
}

const CAPS: &[u8] = br#"{"capabilities":{}}"#;

/// Decodes the input into messages; returns them and the ids that expect replies.
fn messages(data: &[u8]) -> (Vec<u8>, Vec<u16>) {
    let mut i = Input::new(data);
    let mut out = Vec::new();
    let mut ids = Vec::new();
    let mut n = 0;
    while !i.is_empty() && n < MAX_MESSAGES {
        n += 1;
        let id = i.u16();
        let command = u16::from(i.u8() % 16);
        // Only commands that may go unanswered say so (see the module doc).
        let may_skip_reply = matches!(
            command,
            cmd::DMA_MAP | cmd::DMA_UNMAP | cmd::SET_IRQS | cmd::REGION_WRITE | cmd::DEVICE_RESET
        );
        let flags = match i.u8() % 8 {
            0 if may_skip_reply => F_NO_REPLY,
            1 => F_REPLY,
            2 => 1 << 5,
            3 => i.u32(),
            _ => 0,
        };
        let flags = if may_skip_reply {
            flags
        } else {
            flags & !F_NO_REPLY
        };
        let size = if i.u8().is_multiple_of(8) {
            Some(i.u32())
        } else {
            None
        };
        let body: Vec<u8> = match command {
            cmd::VERSION => {
                let major = i.u16();
                let minor = i.u16();
                let caps: Vec<u8> = if i.u8() & 1 == 0 {
                    CAPS.to_vec()
                } else {
                    i.blob(512).iter().copied().filter(|&b| b != 0).collect()
                };
                out.extend(version(id, major, minor, &caps));
                ids.push(id);
                continue;
            }
            cmd::DMA_MAP => i.bytes(32).to_vec(),
            cmd::DMA_UNMAP => i.bytes(24).to_vec(),
            cmd::DEVICE_GET_INFO | cmd::GET_IRQ_INFO => {
                let mut b = i.bytes(8).to_vec();
                b.resize(8, 0);
                let index = if i.u8() & 1 == 0 {
                    u32::from(i.u8() % 12)
                } else {
                    i.u32()
                };
                b.extend_from_slice(&index.to_le_bytes());
                b.extend_from_slice(&i.u32().to_le_bytes());
                b
            }
            cmd::DEVICE_GET_REGION_INFO => {
                let mut b = i.bytes(8).to_vec();
                b.resize(8, 0);
                let index = if i.u8() & 1 == 0 {
                    u32::from(i.u8() % 12)
                } else {
                    i.u32()
                };
                b.extend_from_slice(&index.to_le_bytes());
                b.extend_from_slice(i.bytes(20));
                b
            }
            cmd::SET_IRQS => i.bytes(20).to_vec(),
            cmd::REGION_READ | cmd::REGION_WRITE => {
                let offset = match i.u8() % 4 {
                    0 => i.u64(),
                    1 => u64::from(i.u16()),
                    _ => u64::from(i.pick(&[
                        reg::MAGIC,
                        reg::DOORBELL,
                        reg::DOORBELL_MAILBOX,
                        0x1014,
                        0x1300,
                        0x1ffc,
                        0x2000,
                    ])),
                };
                let region = if i.u8() & 3 == 0 {
                    i.u32()
                } else {
                    u32::from(i.u8() % 10)
                };
                let count = match i.u8() % 4 {
                    0 => u32::from(i.u16()) % 8193,
                    1 => i.u32() % (MAX_COUNT + 1),
                    _ => i.pick(&[0, 1, 2, 4, 8]),
                };
                let mut b = Vec::new();
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(&region.to_le_bytes());
                b.extend_from_slice(&count.to_le_bytes());
                // A write to a region that does not exist is refused before its data is
                // read (see the module doc), so none is sent.
                if command == cmd::REGION_WRITE && region < REGIONS {
                    let mut data = i.bytes(count as usize).to_vec();
                    data.resize(count as usize, 0);
                    b.extend(data);
                }
                b
            }
            _ => Vec::new(),
        };
        // An error is answered even to a message that asked for no reply.
        ids.push(id);
        out.extend(message(id, command, flags, size, &body));
    }
    (out, ids)
}

/// Connects and makes the version handshake; retries while the server is between sessions.
fn connect(path: &PathBuf) -> UnixStream {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(mut s) = UnixStream::connect(path) {
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            if s.write_all(&version(0xffff, 0, 1, CAPS)).is_ok() {
                if let Some(reply) = read_reply(&mut s) {
                    assert_eq!(reply.1, cmd::VERSION, "the handshake's reply");
                    return s;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "the instance no longer serves VMMs"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One reply: (id, command, flags, body); `None` at end of file.
fn read_reply(s: &mut UnixStream) -> Option<(u16, u16, u32, Vec<u8>)> {
    let mut h = [0u8; HEADER];
    s.read_exact(&mut h).ok()?;
    let id = u16::from_le_bytes([h[0], h[1]]);
    let command = u16::from_le_bytes([h[2], h[3]]);
    let size = u32::from_le_bytes(h[4..8].try_into().unwrap()) as usize;
    let flags = u32::from_le_bytes(h[8..12].try_into().unwrap());
    assert!(size >= HEADER, "a reply of {size} bytes");
    assert!(
        size <= HEADER + 24 + MAX_COUNT as usize + 4096,
        "a reply of {size} bytes"
    );
    assert_ne!(
        flags & F_REPLY,
        0,
        "a message from the server that is no reply"
    );
    let mut body = vec![0u8; size - HEADER];
    s.read_exact(&mut body).ok()?;
    Some((id, command, flags, body))
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (bytes, ids) = messages(data);
    session(bytes, ids.len());
}

/// One VMM session that sends `bytes` (`sent` messages) after the handshake, then the checks
/// of [`run`]; public for the regression tests of what this target found.
pub fn session(bytes: Vec<u8>, sent: usize) {
    let f = fixture().lock().unwrap_or_else(|p| p.into_inner());
    let bytes_len = bytes.len();
    let mut s = connect(&f.path);
    let mut writer = s.try_clone().expect("socket clone");
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&bytes);
        let _ = writer.shutdown(std::net::Shutdown::Write);
    });
    // Replies are only checked for framing: after an error the crate reads the rest of the
    // refused message as new messages, so a reply may carry an id taken from message bytes.
    let mut replies = 0;
    while read_reply(&mut s).is_some() {
        replies += 1;
    }
    assert!(
        replies <= 2 * sent + bytes_len / HEADER + 1,
        "{replies} replies to {sent} messages"
    );
    sender.join().expect("sender thread");
    drop(s);

    // The next VMM is served, and the last one's device was reset.
    let mut s = connect(&f.path);
    assert_eq!(
        guest::lock(&f.rm).object_count(GFID),
        0,
        "a departed VMM's guest still holds RM objects"
    );
    s.write_all(&region_read(1, 0, u64::from(reg::MAGIC), 4))
        .expect("send");
    let (_, _, _, body) = read_reply(&mut s).expect("BAR0 read answered");
    assert_eq!(body.len(), 16 + 4);
    assert_eq!(u32::from_le_bytes(body[16..20].try_into().unwrap()), MAGIC);
    s.write_all(&region_read(2, CONFIG_REGION, 0, 4))
        .expect("send");
    let (_, _, _, body) = read_reply(&mut s).expect("config read answered");
    assert_eq!(u16::from_le_bytes([body[16], body[17]]), PCI_VENDOR_ID);
    assert_eq!(u16::from_le_bytes([body[18], body[19]]), PCI_DEVICE_ID);
}
