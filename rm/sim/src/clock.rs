//! The sim GPU's two clocks: a virtual clock that only moves when told to (deterministic, fast
//! tests) and a real-time clock that follows the host's monotonic time (end-to-end runs).
//!
//! Either way the GPU's notion of "now" (semaphore timestamps, timeslices, statistics) is the
//! simulated time that [`super::SimGpu`] has reached; the mode only says what that time chases.

use std::time::Instant;

/// Which time the simulation chases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockMode {
    /// Time moves only through `SimGpu::advance` / `SimGpu::run_until`.
    Virtual,
    /// Time follows the host's monotonic clock through `SimGpu::sync_to_real_time`.
    RealTime,
}

/// Simulated GPU time in nanoseconds plus, in real-time mode, the host instant it started at.
#[derive(Debug, Clone)]
pub struct SimClock {
    mode: ClockMode,
    now_ns: u64,
    origin: Instant,
}

impl SimClock {
    /// A clock in `mode`, starting at GPU time 0 (and, for real time, at the host's now).
    pub fn new(mode: ClockMode) -> Self {
        Self {
            mode,
            now_ns: 0,
            origin: Instant::now(),
        }
    }

    /// The clock's mode.
    pub fn mode(&self) -> ClockMode {
        self.mode
    }

    /// Simulated GPU time reached so far, in ns.
    pub fn now_ns(&self) -> u64 {
        self.now_ns
    }

    /// The GPU time the clock should be at: host time since start (real time), or the simulated
    /// time itself (virtual).
    pub fn target_ns(&self) -> u64 {
        match self.mode {
            ClockMode::Virtual => self.now_ns,
            ClockMode::RealTime => {
                u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
            }
        }
    }

    /// Moves simulated time forward to `t` (never backwards).
    pub(crate) fn set_now(&mut self, t: u64) {
        self.now_ns = self.now_ns.max(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_when_set_and_never_backwards() {
        let mut c = SimClock::new(ClockMode::Virtual);
        assert_eq!(c.now_ns(), 0);
        assert_eq!(c.target_ns(), 0);
        c.set_now(500);
        c.set_now(100);
        assert_eq!(c.now_ns(), 500);
        assert_eq!(c.target_ns(), 500);
    }

    #[test]
    fn real_clock_target_follows_host_time() {
        let c = SimClock::new(ClockMode::RealTime);
        let a = c.target_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(c.target_ns() > a);
        assert_eq!(c.now_ns(), 0);
    }
}
