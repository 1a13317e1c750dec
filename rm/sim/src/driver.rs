//! Drives a shared [`SimGpu`] in real time from a background thread, so GPU time follows the
//! host clock without anyone calling `run_until`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::gpu::SimGpu;

/// Longest GPU time one tick simulates, so the lock is never held for long.
pub const MAX_CATCH_UP_NS: u64 = 2_000_000;

/// A background thread that calls `SimGpu::sync_to_real_time` every `period`. Stops (and
/// joins) when dropped.
#[derive(Debug)]
pub struct RealTimeDriver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RealTimeDriver {
    /// Starts driving `gpu` (which should use `ClockMode::RealTime`) every `period`.
    pub fn spawn(gpu: Arc<Mutex<SimGpu>>, period: Duration) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("sim-gpu".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    if let Ok(mut g) = gpu.lock() {
                        g.sync_to_real_time(MAX_CATCH_UP_NS);
                    }
                    std::thread::sleep(period);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for RealTimeDriver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
