//! The escape-queue poller: one thread for every instance's queue, so a guest that honours
//! `VIRTQ_USED_F_NO_NOTIFY` posts escapes with no VM exit and no socket message at all.
//!
//! While a queue is active the poller keeps its notifications off and checks its available
//! index (one load from the shared window per device per round). Back-off bounds its CPU: it
//! spins for [`PollConfig::spin`] after the last request anywhere, then sleeps between rounds
//! with a sleep that doubles up to [`PollConfig::max_sleep`]; a queue quiet for
//! [`PollConfig::quiet`] gets its notifications back, and with none polled the thread sleeps
//! until a notify kicks it (the server thread serves that request itself and calls
//! [`Poller::kick`]). Turning notifications back on re-checks the ring, so a request published
//! while the flag was still set is not left behind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use vgpu::VgpuDevice;

use crate::vfio_server::lock;

/// How hard the poller works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// Spin (no sleep) this long after the last request.
    pub spin: Duration,
    /// Longest sleep between rounds while queues are polled.
    pub max_sleep: Duration,
    /// A queue without requests this long is switched back to notifications.
    pub quiet: Duration,
    /// Whether active queues are polled at all; without, the thread only makes waiting
    /// requests again (see [`vgpu::VgpuDevice::waiting`]).
    pub queues: bool,
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            spin: Duration::from_micros(200),
            max_sleep: Duration::from_micros(500),
            quiet: Duration::from_millis(50),
            queues: true,
        }
    }
}

/// What the poller did, for `vgpuctl status` and the metrics.
#[derive(Debug, Default)]
pub struct PollerStats {
    /// Requests the poller served (not counting notified ones).
    pub served: AtomicU64,
    /// Rounds over the device list.
    pub rounds: AtomicU64,
    /// CPU time of the poller thread, in nanoseconds.
    pub cpu_ns: AtomicU64,
    /// Queues polled now.
    pub polled: AtomicU64,
}

struct Entry {
    device: Weak<Mutex<VgpuDevice>>,
    polled: bool,
    last_active: Instant,
}

#[derive(Default)]
struct Inner {
    devices: Mutex<Vec<Entry>>,
    kicked: Mutex<bool>,
    wake: Condvar,
    stats: PollerStats,
}

/// A handle on the poller thread (cheap to clone).
#[derive(Clone)]
pub struct Poller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller").finish_non_exhaustive()
    }
}

impl Poller {
    /// Starts the thread. With `None` no queue is polled (every request needs a notify) and
    /// the thread only makes waiting requests again.
    pub fn spawn(config: Option<PollConfig>) -> std::io::Result<Self> {
        let inner = Arc::new(Inner::default());
        let config = config.unwrap_or(PollConfig {
            queues: false,
            ..PollConfig::default()
        });
        let thread_inner = inner.clone();
        std::thread::Builder::new()
            .name("poller".into())
            .spawn(move || run(&thread_inner, config))?;
        Ok(Self { inner })
    }

    /// Adds a device; it is dropped from the list once the last `Arc` of it goes.
    pub fn register(&self, device: &Arc<Mutex<VgpuDevice>>) {
        let mut devices = self.inner.devices.lock().unwrap_or_else(|p| p.into_inner());
        devices.push(Entry {
            device: Arc::downgrade(device),
            polled: false,
            last_active: Instant::now(),
        });
        drop(devices);
        self.kick();
    }

    /// A driver notified: poll every queue again.
    pub fn kick(&self) {
        *self.inner.kicked.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.inner.wake.notify_one();
    }

    /// The counters.
    pub fn stats(&self) -> &PollerStats {
        &self.inner.stats
    }
}

/// Poll rounds between two yields while spinning (a round is a few hundred ns).
const SPINS_PER_YIELD: u32 = 64;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn run(inner: &Arc<Inner>, config: PollConfig) {
    // Fine-grained sleeps: the default 50 µs timer slack would dominate short back-offs.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64) };
    let mut last_request = Instant::now();
    let mut sleep = Duration::ZERO;
    let mut spins = 0u32;
    // The thread ends once every handle is gone (its own `Arc` is the last).
    while Arc::strong_count(inner) > 1 {
        let kicked = std::mem::take(&mut *inner.kicked.lock().unwrap_or_else(|p| p.into_inner()));
        let now = Instant::now();
        let mut served = 0u64;
        let mut polled = 0u64;
        {
            let mut devices = inner.devices.lock().unwrap_or_else(|p| p.into_inner());
            devices.retain(|e| e.device.strong_count() > 0);
            for e in devices.iter_mut() {
                let Some(device) = e.device.upgrade() else {
                    continue;
                };
                let mut d = lock(&device);
                if !d.queue_live() {
                    e.polled = false;
                    continue;
                }
                if kicked && !e.polled {
                    e.last_active = now;
                }
                if config.queues && !e.polled && now.duration_since(e.last_active) < config.quiet {
                    d.set_polled(true);
                    e.polled = true;
                }
                if !e.polled {
                    // A notified queue whose request waits is made again here all the same.
                    if d.waiting() {
                        served += u64::from(d.poll());
                        polled += 1;
                    }
                    continue;
                }
                let n = d.poll();
                if n > 0 || d.waiting() {
                    e.last_active = now;
                    served += u64::from(n);
                } else if now.duration_since(e.last_active) >= config.quiet {
                    // Back to notifications; serve what arrived while the flag was still set.
                    if d.set_polled(false) {
                        served += u64::from(d.poll());
                    }
                    e.polled = false;
                    continue;
                }
                polled += 1;
            }
        }
        let stats = &inner.stats;
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        stats.served.fetch_add(served, Ordering::Relaxed);
        stats.polled.store(polled, Ordering::Relaxed);
        stats.cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        if served > 0 {
            last_request = now;
            sleep = Duration::ZERO;
        }
        if polled == 0 {
            // Nothing polled: sleep until a notify (or a new device) kicks us.
            let guard = inner.kicked.lock().unwrap_or_else(|p| p.into_inner());
            let _ = inner
                .wake
                .wait_timeout_while(guard, Duration::from_millis(100), |k| !*k);
        } else if now.duration_since(last_request) < config.spin {
            // Mostly a bare spin (a yield is a syscall that delays noticing the next request),
            // but yield now and then, so that on a host with few CPUs the VMM thread about to
            // post the next request is not kept waiting for the rest of our spin.
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_YIELD) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        } else {
            sleep = (sleep * 2)
                .max(Duration::from_micros(5))
                .min(config.max_sleep);
            std::thread::sleep(sleep);
        }
    }
}
