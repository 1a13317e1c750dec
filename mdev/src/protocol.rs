//! The tenant protocol: text lines from the tenant to the daemon.
//!
//! * `HELLO <name> <pid>`: who the tenant is (name: 1-64 characters of `[A-Za-z0-9._-]`);
//! * `CHANNELS [<client>:<channel> ...]`: the tenant's full channel set, handles in hex.
//!
//! Everything is bounded: a line is at most [`MAX_LINE`] bytes and names at most
//! [`MAX_CHANNELS`] channels, and at most [`MAX_CONNECTIONS`] connections are served at once,
//! [`MAX_CONNECTIONS_PER_UID`] of one user (each holds a [`ConnectionSlot`]). A `HELLO` must
//! name the pid the kernel reports for the peer ([`peer_credentials`]).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
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

/// Most tenant connections one user may hold at once, so that one user cannot take every
/// one of [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_UID: usize = 64;

/// Counts the connections being served, refusing more than a limit in all and per user.
#[derive(Debug, Clone)]
pub struct ConnectionSlots {
    live: Arc<Mutex<Live>>,
    limit: usize,
    per_uid: usize,
}

#[derive(Debug, Default)]
struct Live {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// One served connection; dropping it frees its slot.
#[derive(Debug)]
pub struct ConnectionSlot {
    live: Arc<Mutex<Live>>,
    uid: u32,
}

impl ConnectionSlots {
    /// Slots for at most `limit` connections at once, `per_uid` of them for one user.
    pub fn new(limit: usize, per_uid: usize) -> Self {
        Self {
            live: Arc::default(),
            limit,
            per_uid,
        }
    }

    /// A slot for a new connection of user `uid`, or `None` when the daemon or that user is
    /// at its limit.
    pub fn try_acquire(&self, uid: u32) -> Option<ConnectionSlot> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mine = live.by_uid.get(&uid).copied().unwrap_or(0);
        if live.total >= self.limit || mine >= self.per_uid {
            return None;
        }
        live.total += 1;
        live.by_uid.insert(uid, mine + 1);
        Some(ConnectionSlot {
            live: Arc::clone(&self.live),
            uid,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.total -= 1;
        if let Some(n) = live.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                live.by_uid.remove(&self.uid);
            }
        }
    }
}

/// Who is at the other end of a Unix socket, as the kernel says (`SO_PEERCRED`): what a
/// tenant's `HELLO` is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// Process id of the peer (when it connected).
    pub pid: u32,
    /// Its user id.
    pub uid: u32,
    /// Its group id.
    pub gid: u32,
}

/// A `HELLO` whose pid is not the peer's: a process naming another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("HELLO names pid {named}, the peer is pid {} (uid {})", peer.pid, peer.uid)]
pub struct NotThePeer {
    /// The pid the HELLO named.
    pub named: u32,
    /// Who connected.
    pub peer: PeerCredentials,
}

/// Checks that a `HELLO`'s pid is the connecting process's.
pub fn authenticate(hello_pid: u32, peer: PeerCredentials) -> Result<(), NotThePeer> {
    if hello_pid == peer.pid {
        Ok(())
    } else {
        Err(NotThePeer {
            named: hello_pid,
            peer,
        })
    }
}

/// The peer's credentials of `stream`.
pub fn peer_credentials(stream: &UnixStream) -> std::io::Result<PeerCredentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out-pointers of the sizes given; the fd is open.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: cred.pid as u32,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Who a connected process is, as the policy's tenant bindings check it: its credentials, its
/// groups and its cgroup, read from `/proc` when it connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// What the kernel said of the socket's peer.
    pub cred: PeerCredentials,
    /// Its primary group and supplementary groups.
    pub groups: Vec<u32>,
    /// Its cgroup v2 path (`None` when `/proc` did not say).
    pub cgroup: Option<String>,
}

impl PeerIdentity {
    /// Reads the groups and cgroup of the process `cred` names from `/proc`.
    pub fn of(cred: PeerCredentials) -> Self {
        let proc = |f: &str| std::fs::read_to_string(format!("/proc/{}/{f}", cred.pid)).ok();
        let mut groups = vec![cred.gid];
        if let Some(status) = proc("status") {
            groups.extend(supplementary_groups(&status));
        }
        groups.sort_unstable();
        groups.dedup();
        let cgroup = proc("cgroup").and_then(|c| cgroup_v2_path(&c));
        Self {
            cred,
            groups,
            cgroup,
        }
    }

    /// A process with just these credentials (no supplementary groups, no cgroup).
    pub fn bare(cred: PeerCredentials) -> Self {
        Self {
            cred,
            groups: vec![cred.gid],
            cgroup: None,
        }
    }
}

/// A peer of uid and gid 0 with pid `pid`, for tests.
#[cfg(test)]
pub(crate) fn test_peer(pid: u32) -> PeerIdentity {
    PeerIdentity::bare(PeerCredentials {
        pid,
        uid: 0,
        gid: 0,
    })
}

/// The `Groups:` line of a `/proc/<pid>/status`.
fn supplementary_groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| {
            g.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The unified hierarchy's entry (`0::<path>`) of a `/proc/<pid>/cgroup`.
fn cgroup_v2_path(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
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
    fn a_peer_is_known_by_its_groups_and_cgroup() {
        let status = "Name:\tcat\nUid:\t1000\t1000\t1000\t1000\nGroups:\t4 24 1000 \nNSpid:\t1\n";
        assert_eq!(supplementary_groups(status), vec![4, 24, 1000]);
        assert_eq!(supplementary_groups("Name:\tx\n"), Vec::<u32>::new());
        let v1_and_v2 = "12:cpu,cpuacct:/old\n0::/tenants/a/job\n";
        assert_eq!(cgroup_v2_path(v1_and_v2).as_deref(), Some("/tenants/a/job"));
        assert_eq!(cgroup_v2_path("3:memory:/x\n"), None);
        // This process, through /proc, as vgpud reads a tenant's.
        let (a, _b) = UnixStream::pair().unwrap();
        let me = PeerIdentity::of(peer_credentials(&a).unwrap());
        // SAFETY: getgid has no preconditions.
        assert!(me.groups.contains(&unsafe { libc::getgid() }));
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(me.cgroup, cgroup_v2_path(&own));
    }

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
        let slots = ConnectionSlots::new(3, 2);
        let a = slots.try_acquire(1000).expect("first slot");
        let b = slots.try_acquire(1000).expect("second slot");
        assert!(
            slots.try_acquire(1000).is_none(),
            "one user holds at most 2"
        );
        let other = slots
            .try_acquire(1001)
            .expect("another user still gets one");
        assert!(slots.try_acquire(1002).is_none(), "3 in all");
        drop(a);
        let c = slots.try_acquire(1000).expect("a freed slot is reused");
        assert!(slots.try_acquire(1000).is_none());
        drop((b, c, other));
        assert!(slots.try_acquire(1002).is_some());
    }

    #[test]
    fn a_hello_must_name_the_connecting_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_credentials(&a).unwrap();
        assert_eq!(cred.pid, std::process::id());
        // SAFETY: getuid has no preconditions.
        assert_eq!(cred.uid, unsafe { libc::getuid() });
        assert_eq!(authenticate(std::process::id(), cred), Ok(()));
        // Found by review: any local user could claim any pid (and so any process's tenant).
        let e = authenticate(1, cred).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("HELLO names pid 1, the peer is pid"),
            "{e}"
        );
    }
}
