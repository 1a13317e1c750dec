//! Counters the device keeps for the VMM's `--stats` and for the guest's counter registers.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, shared with the VMM (read without taking the device's lock).
#[derive(Debug, Default)]
pub struct Stats {
    doorbells: AtomicU64,
    doorbells_rejected: AtomicU64,
    queue_notifies: AtomicU64,
    requests: AtomicU64,
    request_errors: AtomicU64,
    bar0_reads: AtomicU64,
    bar0_writes: AtomicU64,
    interrupts: AtomicU64,
}

/// Which counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Doorbell writes the service accepted.
    Doorbells,
    /// Doorbell writes refused (token not owned by this vGPU).
    DoorbellsRejected,
    /// Queue notifications (writes to the notify area).
    QueueNotifies,
    /// Request chains completed (put in the used ring), whatever their result.
    Requests,
    /// Malformed request chains (refused by the device before reaching the service).
    RequestErrors,
    /// Trapped BAR0 reads (VM exits).
    Bar0Reads,
    /// Trapped BAR0 writes (VM exits).
    Bar0Writes,
    /// Interrupts raised: the line went from deasserted to asserted.
    Interrupts,
}

impl Stats {
    fn cell(&self, c: Counter) -> &AtomicU64 {
        match c {
            Counter::Doorbells => &self.doorbells,
            Counter::DoorbellsRejected => &self.doorbells_rejected,
            Counter::QueueNotifies => &self.queue_notifies,
            Counter::Requests => &self.requests,
            Counter::RequestErrors => &self.request_errors,
            Counter::Bar0Reads => &self.bar0_reads,
            Counter::Bar0Writes => &self.bar0_writes,
            Counter::Interrupts => &self.interrupts,
        }
    }

    /// Adds one to `c`.
    pub fn bump(&self, c: Counter) {
        self.cell(c).fetch_add(1, Ordering::Relaxed);
    }

    /// The current value of `c`.
    pub fn get(&self, c: Counter) -> u64 {
        self.cell(c).load(Ordering::Relaxed)
    }

    /// All counters at once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            doorbells: self.get(Counter::Doorbells),
            doorbells_rejected: self.get(Counter::DoorbellsRejected),
            queue_notifies: self.get(Counter::QueueNotifies),
            requests: self.get(Counter::Requests),
            request_errors: self.get(Counter::RequestErrors),
            bar0_reads: self.get(Counter::Bar0Reads),
            bar0_writes: self.get(Counter::Bar0Writes),
            interrupts: self.get(Counter::Interrupts),
        }
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Doorbell writes the service accepted.
    pub doorbells: u64,
    /// Doorbell writes refused.
    pub doorbells_rejected: u64,
    /// Queue notifications.
    pub queue_notifies: u64,
    /// Request chains completed.
    pub requests: u64,
    /// Malformed request chains.
    pub request_errors: u64,
    /// Trapped BAR0 reads.
    pub bar0_reads: u64,
    /// Trapped BAR0 writes.
    pub bar0_writes: u64,
    /// Interrupts raised on the connected line.
    pub interrupts: u64,
}
