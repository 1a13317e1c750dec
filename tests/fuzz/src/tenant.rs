//! The vgpud tenant protocol: what a process tenant writes to vgpud's socket (`HELLO`,
//! `CLIENT`, `CHANNELS` lines), framed by [`TenantReader`] over a real Unix socket and parsed by
//! [`protocol::parse`].
//!
//! Checked: the reader returns at most one line per newline sent, none over
//! [`protocol::MAX_LINE`] bytes of input; every line parses to a message or an error; a parsed
//! message holds what the protocol allows (a valid tenant name, at most
//! [`protocol::MAX_CHANNELS`] channels, sorted and without duplicates) and parses back to
//! itself from its canonical form; an error's message stays one short line.

use std::io::Write;
use std::os::unix::net::UnixStream;

use mdev::protocol::{self, Message, ProtocolError, TenantReader};

/// Runs one input: the bytes as a tenant sends them.
pub fn run(data: &[u8]) {
    // Every line straight through the parser, as the reader would hand it over.
    for raw in data.split(|&b| b == b'\n') {
        check_line(String::from_utf8_lossy(raw).trim_end());
    }
    let (mut tenant, daemon) = UnixStream::pair().expect("socket pair");
    let bytes = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = tenant.write_all(&bytes);
    });
    let newlines = data.iter().filter(|&&b| b == b'\n').count();
    let mut reader = TenantReader::new(daemon);
    let mut lines = 0;
    while let Some((line, files)) = reader.read_line() {
        lines += 1;
        assert!(
            files.is_empty(),
            "no file was passed, yet the reader returned one"
        );
        assert!(
            lines <= newlines,
            "the reader returned {lines} lines for {newlines} newlines"
        );
        check_line(&line);
    }
    writer.join().expect("writer thread");
}

fn check_line(line: &str) {
    match protocol::parse(line) {
        Ok(m) => {
            let canonical = render(&m);
            assert_eq!(
                protocol::parse(&canonical).as_ref(),
                Ok(&m),
                "{canonical:?} does not parse back to {m:?}"
            );
            match &m {
                Message::Hello { name, .. } => {
                    assert!((1..=64).contains(&name.len()), "name {name:?}");
                    assert!(
                        name.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                        "name {name:?}"
                    );
                }
                Message::Client(_) => {}
                Message::Channels(pairs) => {
                    assert!(pairs.len() <= protocol::MAX_CHANNELS);
                    assert!(
                        pairs.windows(2).all(|w| w[0] < w[1]),
                        "channels unsorted or duplicated"
                    );
                }
            }
        }
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "a multi-line error: {text:?}");
            assert!(text.len() <= 1024, "an error repeats too much of the line");
            if line.len() > protocol::MAX_LINE {
                assert_eq!(e, ProtocolError::TooLong);
            }
        }
    }
}

/// The canonical line of a message (what the shim sends).
fn render(m: &Message) -> String {
    match m {
        Message::Hello { name, pid } => format!("HELLO {name} {pid}"),
        Message::Client(c) => format!("CLIENT {c:x}"),
        Message::Channels(pairs) => {
            let mut s = String::from("CHANNELS");
            for (c, h) in pairs {
                s.push_str(&format!(" {c:x}:{h:x}"));
            }
            s
        }
    }
}
