//! The link to `vgpud`: registers the process as a tenant, keeps the daemon's copy of its channel
//! list current, and re-enables its own channels the moment the daemon is gone (a disable outlives
//! the client that issued it, so a dead daemon would otherwise leave the tenant frozen).
//!
//! Protocol (text lines over a Unix stream socket): `HELLO <tenant> <pid>`, then
//! `CHANNELS <client>:<channel> ...` (hex, the full set) whenever it changes. The daemon only
//! listens; end of file on the socket means it is gone.

use rm_nvidia::{Forwarder, SyscallDriver};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

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
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => {
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

/// Talks to one daemon connection until it ends.
fn serve(mut s: UnixStream, name: &str, changes: &Receiver<()>, lookup: Lookup) {
    if s.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let hello = format!("HELLO {name} {}\n", std::process::id());
    let first = lookup()
        .map(channels_line)
        .unwrap_or_else(|| "CHANNELS\n".into());
    if s.write_all(hello.as_bytes())
        .and_then(|_| s.write_all(first.as_bytes()))
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
        if dirty {
            let line = lookup()
                .map(channels_line)
                .unwrap_or_else(|| "CHANNELS\n".into());
            if s.write_all(line.as_bytes()).is_err() {
                return;
            }
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
}
