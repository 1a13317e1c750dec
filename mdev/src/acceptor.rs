//! Accepting socket connections without spinning: `accept` fails at once, over and over, while
//! the process is out of file descriptors (`EMFILE`, with the connection left in the backlog),
//! so a loop that only logs the error burns a core and floods the log. [`accept_loop`] backs
//! off after each failure (1 ms doubling to 1 s, reset by the next success) and logs the
//! first failure of each streak only.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Shortest and longest pause after a failed `accept`.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));

/// Failed `accept` calls, over all loops of the process (for tests and status).
pub static ACCEPT_FAILURES: AtomicU64 = AtomicU64::new(0);

/// Hands every connection on `listener` to `serve` until the listener fails for good.
pub fn accept_loop(listener: &UnixListener, mut serve: impl FnMut(UnixStream)) {
    let mut pause = Duration::ZERO;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                pause = Duration::ZERO;
                serve(stream);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                ACCEPT_FAILURES.fetch_add(1, Ordering::Relaxed);
                if pause.is_zero() {
                    tracing::warn!("accept: {e}; backing off until it succeeds again");
                }
                pause = (pause * 2).clamp(BACKOFF.0, BACKOFF.1);
                std::thread::sleep(pause);
            }
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit (where the hard limit is
/// higher), so that the daemon's connection caps, not the default 1024 descriptors, are what
/// bounds its clients. Returns the soft limit in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit the call writes.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit the call reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors, the loop tries `accept` a few times a second, not millions.
    #[test]
    fn out_of_descriptors_the_loop_backs_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        // Leave no descriptor free: the accept below then fails with EMFILE, over and over.
        let mut held = Vec::new();
        let clients: Vec<_> = (0..4)
            .map(|_| UnixStream::connect(&path).unwrap())
            .collect();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid rlimit out-pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let low = libc::rlimit {
            rlim_cur: 256,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: valid rlimit.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        let before = ACCEPT_FAILURES.load(Ordering::Relaxed);
        let served = std::sync::Arc::new(AtomicU64::new(0));
        {
            let served = served.clone();
            std::thread::spawn(move || {
                accept_loop(&listener, |_s| {
                    served.fetch_add(1, Ordering::Relaxed);
                })
            });
        }
        std::thread::sleep(Duration::from_millis(1500));
        let failures = ACCEPT_FAILURES.load(Ordering::Relaxed) - before;
        // 1 + 2 + 4 + ... ms: at most about eleven tries in 1.5 s.
        assert!((1..=16).contains(&failures), "{failures} failed accepts");
        assert_eq!(served.load(Ordering::Relaxed), 0);
        // Descriptors back: the waiting connections are served.
        drop(held);
        let start = std::time::Instant::now();
        while served.load(Ordering::Relaxed) < 4 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "connections not served"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(clients);
    }
}
