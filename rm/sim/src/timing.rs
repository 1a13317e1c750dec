//! The sim GPU's cost model: how much GPU time each kind of work takes, and how much host work
//! one `run_until` call may do.

/// Timing parameters (all times in GPU ns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// PBDMA cost of one unit of fetch work: a GPFIFO entry, a method header or a method.
    pub method_ns: u64,
    /// Context save on a TSG switch (timeslice expiry, preemption, TSG going idle).
    pub ctxsw_ns: u64,
    /// Compute work is preemptible only at multiples of this much progress (the CTA
    /// boundary a compute preemption waits for). 0 or 1 = preemptible at any ns.
    pub compute_preempt_granularity_ns: u64,
    /// Copy-engine bandwidth in bytes per ns (= GB/s), at least 1.
    pub copy_bytes_per_ns: u64,
    /// How often a spinning semaphore acquire re-reads memory.
    pub acquire_poll_ns: u64,
    /// Runlists run in lock-step windows of this length, so a semaphore released on one
    /// runlist is seen by an acquire on another within one window.
    pub sync_quantum_ns: u64,
    /// Host work cap per runlist per `run_until` call, in units of one method or 1 KiB of
    /// copied data. When a runlist exhausts it, its resident TSG stalls (still charged engine
    /// time) until the next call, so a hostile method loop cannot hold the host.
    pub work_budget_per_call: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            method_ns: 20,
            ctxsw_ns: 5_000,
            compute_preempt_granularity_ns: 10_000,
            copy_bytes_per_ns: 64,
            acquire_poll_ns: 2_000,
            sync_quantum_ns: 10_000,
            work_budget_per_call: 4_000_000,
        }
    }
}

impl Timing {
    /// The same values with every zero that would stall the model raised to 1.
    pub fn sanitized(self) -> Self {
        Self {
            method_ns: self.method_ns.max(1),
            copy_bytes_per_ns: self.copy_bytes_per_ns.max(1),
            acquire_poll_ns: self.acquire_poll_ns.max(1),
            sync_quantum_ns: self.sync_quantum_ns.max(1),
            compute_preempt_granularity_ns: self.compute_preempt_granularity_ns.max(1),
            ..self
        }
    }
}
