//! The tenant protocol: text lines from the tenant to the daemon.
//!
//! * `HELLO <name> <pid>`: who the tenant is (name: 1-64 characters of `[A-Za-z0-9._-]`);
//! * `CHANNELS [<client>:<channel> ...]`: the tenant's full channel set, handles in hex.
//!
//! Everything is bounded: a line is at most [`MAX_LINE`] bytes and names at most
//! [`MAX_CHANNELS`] channels, and at most [`MAX_CONNECTIONS`] connections are served at once
//! (each holds a [`ConnectionSlot`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use thiserror::Error;

/// Longest line accepted.
pub const MAX_LINE: usize = 64 * 1024;
/// Most channels one tenant may register.
pub const MAX_CHANNELS: usize = 4096;
/// Most tenant connections served at once; the socket is open to every local user, so without
/// a bound one process could make the daemon spawn threads until it fails.
pub const MAX_CONNECTIONS: usize = 1024;

/// How long a new connection may take to send its `HELLO` before it is closed, so that silent
/// connections cannot hold [`MAX_CONNECTIONS`] slots.
pub const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Counts the connections being served, refusing more than a limit.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    live: Arc<AtomicUsize>,
    limit: usize,
}

/// One served connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<AtomicUsize>);

impl ConnectionSlots {
    /// Slots for at most `limit` connections at once.
    pub fn new(limit: usize) -> Self {
        Self {
            live: Arc::default(),
            limit,
        }
    }

    /// A slot for a new connection, or `None` when `limit` connections are being served.
    pub fn try_acquire(&self) -> Option<ConnectionSlot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(Arc::clone(&self.live)))
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A channel as `FIFO_DISABLE_CHANNELS` names it: (client, channel) handles.
pub type ChannelPair = (u32, u32);

/// One message from a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Registration.
    Hello {
        /// Tenant name.
        name: String,
        /// Its process id.
        pid: u32,
    },
    /// The full channel set.
    Channels(Vec<ChannelPair>),
}

/// A line that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// Over [`MAX_LINE`] bytes.
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
    /// Unknown verb or wrong arguments.
    #[error("malformed message: {0:.80}")]
    Malformed(String),
    /// Bad tenant name.
    #[error("bad tenant name {0:?}")]
    BadName(String),
    /// Over [`MAX_CHANNELS`] channels.
    #[error("more than {MAX_CHANNELS} channels")]
    TooManyChannels,
}

fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Parses one line (without its newline).
pub fn parse(line: &str) -> Result<Message, ProtocolError> {
    if line.len() > MAX_LINE {
        return Err(ProtocolError::TooLong);
    }
    let mut words = line.split_ascii_whitespace();
    let malformed = || ProtocolError::Malformed(line.to_string());
    match words.next() {
        Some("HELLO") => {
            let name = words.next().ok_or_else(malformed)?;
            let pid = words
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(malformed)?;
            if words.next().is_some() {
                return Err(malformed());
            }
            if !valid_name(name) {
                return Err(ProtocolError::BadName(name.to_string()));
            }
            Ok(Message::Hello {
                name: name.to_string(),
                pid,
            })
        }
        Some("CHANNELS") => {
            let mut pairs = Vec::new();
            for w in words {
                if pairs.len() == MAX_CHANNELS {
                    return Err(ProtocolError::TooManyChannels);
                }
                let (c, h) = w.split_once(':').ok_or_else(malformed)?;
                let c = u32::from_str_radix(c, 16).map_err(|_| malformed())?;
                let h = u32::from_str_radix(h, 16).map_err(|_| malformed())?;
                pairs.push((c, h));
            }
            pairs.sort_unstable();
            pairs.dedup();
            Ok(Message::Channels(pairs))
        }
        _ => Err(malformed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_the_shim_sends() {
        assert_eq!(
            parse("HELLO a 42"),
            Ok(Message::Hello {
                name: "a".into(),
                pid: 42
            })
        );
        assert_eq!(
            parse("CHANNELS c1d00019:5c000010 c1d00019:5c00000f"),
            Ok(Message::Channels(vec![
                (0xc1d00019, 0x5c00000f),
                (0xc1d00019, 0x5c000010)
            ]))
        );
        assert_eq!(parse("CHANNELS"), Ok(Message::Channels(vec![])));
    }

    #[test]
    fn refuses_malformed_and_oversized_lines() {
        assert!(matches!(parse("HELLO a"), Err(ProtocolError::Malformed(_))));
        assert!(matches!(
            parse("HELLO a x"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse("HELLO a/b 1"),
            Err(ProtocolError::BadName(_))
        ));
        assert!(matches!(
            parse("CHANNELS 1:zz"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(
            parse("CHANNELS 1"),
            Err(ProtocolError::Malformed(_))
        ));
        assert!(matches!(parse("BYE"), Err(ProtocolError::Malformed(_))));
        assert_eq!(
            parse(&"x".repeat(MAX_LINE + 1)),
            Err(ProtocolError::TooLong)
        );
        let many = format!("CHANNELS{}", " 1:1".repeat(MAX_CHANNELS + 1));
        assert_eq!(parse(&many), Err(ProtocolError::TooManyChannels));
    }

    #[test]
    fn connection_slots_are_bounded_and_freed_on_drop() {
        let slots = ConnectionSlots::new(2);
        let a = slots.try_acquire().expect("first slot");
        let b = slots.try_acquire().expect("second slot");
        assert!(slots.try_acquire().is_none());
        drop(a);
        let c = slots.try_acquire().expect("a freed slot is reused");
        assert!(slots.try_acquire().is_none());
        drop((b, c));
        assert!(slots.try_acquire().is_some());
    }
}
