//! The link to `vgpud`: registers the process as a tenant, keeps the daemon's copy of its channel
//! list current, and re-enables its own channels the moment the daemon is gone (a disable outlives
//! the client that issued it, so a dead daemon would otherwise leave the tenant frozen).
//!
//! Protocol (text lines over a Unix stream socket): `HELLO <tenant> <pid>`, then, whenever the
//! channel set changes, `CLIENT <client>` with the `/dev/nvidiactl` file the client was
//! allocated on passed alongside (`SCM_RIGHTS`; the daemon proves through it that the channels
//! are this process's) for each client with channels, and `CHANNELS <client>:<channel> ...`
//! (hex, the full set). The daemon only listens; end of file on the socket means it is gone.

use rm_nvidia::{Forwarder, SyscallDriver};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Default daemon socket.
pub const DEFAULT_SOCKET: &str = "/run/vgpud.sock";
/// How often a lost daemon is looked for again, and how long a read waits.
const POLL: Duration = Duration::from_millis(50);

type Lookup = fn() -> Option<&'static Forwarder<SyscallDriver>>;

/// The tenant name: `VGPU_TENANT`, else the process's cgroup leaf, else `pid-<pid>`.
pub fn tenant_name() -> String {
    if let Ok(n) = std::env::var("VGPU_TENANT") {
        if !n.is_empty() && !n.contains(char::is_whitespace) {
            return n;
        }
    }
    std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| cgroup_leaf(&s))
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

fn cgroup_leaf(text: &str) -> Option<String> {
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let leaf = path.rsplit('/').find(|s| !s.is_empty())?;
    (!leaf.contains(char::is_whitespace)).then(|| leaf.to_string())
}

/// The `CHANNELS` line for the forwarder's current channels.
pub fn channels_line(fwd: &Forwarder<SyscallDriver>) -> String {
    let mut line = String::from("CHANNELS");
    for c in fwd.channels() {
        line.push_str(&format!(" {:x}:{:x}", c.client, c.channel));
    }
    line.push('\n');
    line
}

/// Sends `CLIENT <client>` with `file`, the `/dev/nvidiactl` the client was allocated on.
pub fn send_client(stream: &UnixStream, client: u32, file: BorrowedFd<'_>) -> std::io::Result<()> {
    let line = format!("CLIENT {client:x}\n");
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut ancillary = SendAncillaryBuffer::new(&mut space);
    let files = [file];
    ancillary.push(SendAncillaryMessage::ScmRights(&files));
    let sent = rustix::net::sendmsg(
        stream,
        &[IoSlice::new(line.as_bytes())],
        &mut ancillary,
        SendFlags::NOSIGNAL,
    )?;
    if sent == line.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(ErrorKind::WriteZero, "short send"))
    }
}

/// Sends the tenant's clients (with their files) and then its full channel set.
fn send_channels(
    s: &mut UnixStream,
    fwd: Option<&Forwarder<SyscallDriver>>,
) -> std::io::Result<()> {
    let Some(fwd) = fwd else {
        return s.write_all(b"CHANNELS\n");
    };
    for (client, fd) in fwd.client_files() {
        // SAFETY: the forwarder lists files the process held open just now and the borrow ends
        // with the send. If another thread closed one meanwhile, the send fails (EBADF) or
        // passes whatever reused the number, which the daemon's ownership check then refuses.
        send_client(s, client, unsafe { BorrowedFd::borrow_raw(fd) })?;
    }
    s.write_all(channels_line(fwd).as_bytes())
}

/// Starts the link thread; `changes` fires when the channel set changes.
pub fn start(changes: Receiver<()>, lookup: Lookup) {
    let socket = std::env::var("VGPUD_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.to_string());
    let reenable = std::env::var_os("RMSHIM_NO_REENABLE").is_none();
    let _ = std::thread::Builder::new()
        .name("rmshim-vgpud".into())
        .spawn(move || run(&socket, changes, lookup, reenable));
}

fn run(socket: &str, changes: Receiver<()>, lookup: Lookup, reenable: bool) {
    let name = tenant_name();
    let mut backoff = Backoff::default();
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => {
                let since = Instant::now();
                serve(s, &name, &changes, lookup);
                if let Some(fwd) = lookup() {
                    if reenable {
                        let n = fwd.enable_own_channels();
                        eprintln!("rmshim: lost vgpud at {socket}; re-enabled {n} own channel(s)");
                    } else {
                        eprintln!(
                            "rmshim: lost vgpud at {socket}; not re-enabling (RMSHIM_NO_REENABLE)"
                        );
                    }
                }
                // A daemon that refuses this tenant ends the connection at once; without a
                // pause the shim would reconnect in a hot loop and flood both logs.
                if wait_for(&changes, backoff.after(since.elapsed())) {
                    return;
                }
            }
            Err(_) => {
                // No daemon: nothing is gated. Drain change notices and look again later.
                match changes.recv_timeout(POLL * 4) {
                    Err(RecvTimeoutError::Disconnected) => return,
                    _ => while changes.try_recv().is_ok() {},
                }
            }
        }
    }
}

/// Waits `pause` for the channel set to change; true when the forwarder is gone.
fn wait_for(changes: &Receiver<()>, pause: Duration) -> bool {
    matches!(
        changes.recv_timeout(pause),
        Err(RecvTimeoutError::Disconnected)
    )
}

/// Pause before reconnecting: doubles while connections end quickly, resets after one that
/// lasted.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(5);
    /// A connection that lasted this long was served, not refused.
    const SERVED: Duration = Duration::from_secs(10);

    fn after(&mut self, lasted: Duration) -> Duration {
        if lasted >= Self::SERVED {
            self.next = Self::FIRST;
            return Duration::ZERO;
        }
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// Talks to one daemon connection until it ends.
fn serve(mut s: UnixStream, name: &str, changes: &Receiver<()>, lookup: Lookup) {
    if s.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let hello = format!("HELLO {name} {}\n", std::process::id());
    if s.write_all(hello.as_bytes())
        .and_then(|_| send_channels(&mut s, lookup()))
        .is_err()
    {
        return;
    }
    let mut sink = [0u8; 256];
    loop {
        let mut dirty = false;
        while changes.try_recv().is_ok() {
            dirty = true;
        }
        if dirty && send_channels(&mut s, lookup()).is_err() {
            return;
        }
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_leaf_is_the_tenant_name() {
        assert_eq!(
            cgroup_leaf("0::/system.slice/tenant-a.scope\n").as_deref(),
            Some("tenant-a.scope")
        );
        assert_eq!(cgroup_leaf("0::/\n"), None);
        assert_eq!(cgroup_leaf("1:cpu:/x\n"), None);
    }

    #[test]
    fn refused_connections_back_off_to_five_seconds_and_a_served_one_resets() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(1);
        let pauses: Vec<u64> = (0..7).map(|_| b.after(quick).as_millis() as u64).collect();
        assert_eq!(pauses, [200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(b.after(Duration::from_secs(60)), Duration::ZERO);
        assert_eq!(b.after(quick), Duration::from_millis(200));
    }
}
