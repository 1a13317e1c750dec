//! The tenant protocol: text lines from the tenant to the daemon.
//!
//! * `HELLO <name> <pid>`: who the tenant is (name: 1-64 characters of `[A-Za-z0-9._-]`);
//! * `CLIENT <client>`: sent with one file (`SCM_RIGHTS`): the `/dev/nvidiactl` the tenant
//!   allocated RM client `<client>` (hex) on; the daemon asks the driver through it whether each
//!   channel named later is that client's (`rm_nvidia::ownership`), and gates only those;
//! * `CHANNELS [<client>:<channel> ...]`: the tenant's full channel set, handles in hex.
//!
//! Everything is bounded: a line is at most [`MAX_LINE`] bytes and names at most
//! [`MAX_CHANNELS`] channels, and at most [`MAX_CONNECTIONS`] connections are served at once,
//! [`MAX_CONNECTIONS_PER_UID`] of one user (each holds a [`ConnectionSlot`]). A `HELLO` must
//! name the pid the kernel reports for the peer ([`peer_credentials`]).

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::collections::HashMap;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Most files a tenant may pass (one per RM client it gates); more ends the connection.
pub const MAX_FILES: usize = 64;

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

/// Reads a tenant's lines and the files it passes with them (`SCM_RIGHTS`).
///
/// The kernel hands over a send's files with the bytes of that send, and one read returns the
/// files of at most one send, after the plain bytes before it; so the files of a read belong to
/// the last line that starts in it (a tenant sends each `CLIENT` line, whole, in one send with
/// its file). A tenant that splits lines only mismatches its own files.
#[derive(Debug)]
pub struct TenantReader {
    stream: UnixStream,
    buf: Vec<u8>,
    /// Files by the offset in `buf` of the line they came with.
    files: Vec<(usize, Vec<OwnedFd>)>,
}

impl TenantReader {
    /// Reads from `stream` (its read timeout applies to every read).
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// The next line, without its newline, and the files passed with it; `None` at end of file,
    /// on an error or a timeout, on a line over [`MAX_LINE`] bytes, or when more than
    /// [`MAX_FILES`] passed files are waiting.
    pub fn read_line(&mut self) -> Option<(String, Vec<OwnedFd>)> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                if end > MAX_LINE {
                    return None;
                }
                // Files recorded at or inside this line are its own (inside: a tenant that
                // split its line); the others start after its newline.
                let mut mine = Vec::new();
                self.files.retain_mut(|(at, files)| {
                    if *at <= end {
                        mine.append(files);
                        false
                    } else {
                        *at -= end + 1;
                        true
                    }
                });
                let text = String::from_utf8_lossy(&line[..end]).trim_end().to_string();
                return Some((text, mine));
            }
            if self.buf.len() > MAX_LINE {
                return None;
            }
            let mut chunk = [0u8; 4096];
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
            let mut ancillary = RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                &self.stream,
                &mut [IoSliceMut::new(&mut chunk)],
                &mut ancillary,
                RecvFlags::CMSG_CLOEXEC,
            )
            .ok()?;
            let mut passed = Vec::new();
            for message in ancillary.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    passed.extend(fds);
                }
            }
            if got.bytes == 0 {
                return None;
            }
            let start = self.buf.len();
            self.buf.extend_from_slice(&chunk[..got.bytes]);
            if !passed.is_empty() {
                let line_start = (start..start + got.bytes)
                    .rev()
                    .find(|&i| i == 0 || self.buf[i - 1] == b'\n')
                    .unwrap_or(start);
                self.files.push((line_start, passed));
            }
            if self.files.iter().map(|(_, f)| f.len()).sum::<usize>() > MAX_FILES {
                return None;
            }
        }
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
    /// A client, with the file it was allocated on passed alongside.
    Client(u32),
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
    /// Bad tenant name (its first [`NAME_SHOWN`] characters, so a refusal logs a bounded line).
    #[error("bad tenant name {0:?}")]
    BadName(String),
    /// Over [`MAX_CHANNELS`] channels.
    #[error("more than {MAX_CHANNELS} channels")]
    TooManyChannels,
}

/// Characters of a refused tenant name that [`ProtocolError::BadName`] keeps (a valid name has
/// at most 64 bytes).
pub const NAME_SHOWN: usize = 65;

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
                return Err(ProtocolError::BadName(
                    name.chars().take(NAME_SHOWN).collect(),
                ));
            }
            Ok(Message::Hello {
                name: name.to_string(),
                pid,
            })
        }
        Some("CLIENT") => {
            let client = words
                .next()
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .ok_or_else(malformed)?;
            if words.next().is_some() {
                return Err(malformed());
            }
            Ok(Message::Client(client))
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
    use std::io::Write;
    use std::os::fd::AsFd;

    /// What the shim sends, read as vgpud reads it: each CLIENT line comes with the file sent
    /// with it, a CLIENT sent without one with none; too many files end the connection.
    #[test]
    fn files_passed_with_client_lines_arrive_with_them() {
        let (mut tenant, daemon) = UnixStream::pair().unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let zero = std::fs::File::open("/dev/zero").unwrap();
        tenant.write_all(b"HELLO a 1\n").unwrap();
        rmshim::tenant::send_client(&tenant, 0xc1d0_0001, null.as_fd()).unwrap();
        tenant.write_all(b"CLIENT c1d00003\n").unwrap();
        rmshim::tenant::send_client(&tenant, 0xc1d0_0002, zero.as_fd()).unwrap();
        tenant.write_all(b"CHANNELS c1d00001:5c000001\n").unwrap();
        let mut r = TenantReader::new(daemon);
        let minors = |files: &[OwnedFd]| -> Vec<u32> {
            files
                .iter()
                .map(|f| rustix::fs::minor(rustix::fs::fstat(f).unwrap().st_rdev))
                .collect()
        };
        let mut next = || {
            let (line, files) = r.read_line().unwrap();
            (parse(&line).unwrap(), minors(&files))
        };
        assert_eq!(
            next(),
            (
                Message::Hello {
                    name: "a".into(),
                    pid: 1
                },
                vec![]
            )
        );
        assert_eq!(
            next(),
            (Message::Client(0xc1d0_0001), vec![3]),
            "/dev/null is 1:3"
        );
        assert_eq!(next(), (Message::Client(0xc1d0_0003), vec![]));
        assert_eq!(
            next(),
            (Message::Client(0xc1d0_0002), vec![5]),
            "/dev/zero is 1:5"
        );
        assert_eq!(
            next(),
            (Message::Channels(vec![(0xc1d0_0001, 0x5c00_0001)]), vec![])
        );

        // A tenant that passes files without ending its line is cut off.
        for _ in 0..=MAX_FILES {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut ancillary = rustix::net::SendAncillaryBuffer::new(&mut space);
            let files = [null.as_fd()];
            ancillary.push(rustix::net::SendAncillaryMessage::ScmRights(&files));
            let bytes = [std::io::IoSlice::new(b"x")];
            rustix::net::sendmsg(
                &tenant,
                &bytes,
                &mut ancillary,
                rustix::net::SendFlags::empty(),
            )
            .unwrap();
        }
        drop(tenant);
        assert!(
            r.read_line().is_none(),
            "a line with too many files is refused"
        );
    }

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

    /// Found by the tenant fuzz target: a refused name came back whole in the error, so one
    /// line of up to 64 KiB reached vgpud's log.
    #[test]
    fn a_refused_name_is_shown_bounded() {
        let long = format!("HELLO {} 1", "é".repeat(30_000));
        let Err(ProtocolError::BadName(shown)) = parse(&long) else {
            panic!("a long name is refused")
        };
        assert_eq!(shown.chars().count(), NAME_SHOWN);
        assert!(ProtocolError::BadName(shown).to_string().len() < 200);
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
