//! The scheduler log, in the shape of `nvidia-smi vgpu -sl`: per tenant and runlist, when it ran,
//! for how long, its target slice and its cumulative preemption time (all ns); per balance
//! window, each tenant's share. Written and read as JSON lines (one record per line).

use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Scheduling started, or a new policy took effect: names the tenants later records use.
    Start(StartRecord),
    /// A tenant ran on a runlist.
    Slice(SliceRecord),
    /// Shares achieved over one balance window.
    Window(WindowRecord),
    /// A policy reload was attempted.
    Reload(ReloadRecord),
}

/// Scheduling started or a policy took effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    /// GPU time, ns.
    pub timestamp_ns: u64,
    /// Policy name (`weighted`, ...).
    pub policy: String,
    /// Method the scheduler chose (`timeslice` or `gating`).
    pub method: String,
    /// Tenant names, in policy order.
    pub tenants: Vec<String>,
    /// Runlists the tenants have channel groups on.
    pub runlists: Vec<u32>,
}

/// A stretch of engine time one tenant got on one runlist (`nvidia-smi vgpu -sl` entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceRecord {
    /// GPU time at which the stretch began, ns.
    pub timestamp_ns: u64,
    /// Tenant name.
    pub tenant: String,
    /// Runlist.
    pub runlist: u32,
    /// Engine time the tenant got in this stretch, ns.
    pub time_run_ns: u64,
    /// Engine time the tenant has had on this runlist since scheduling started, ns.
    pub time_run_total_ns: u64,
    /// The slice the policy targeted, ns.
    pub target_slice_ns: u64,
    /// Time spent preempting this tenant on this runlist since scheduling started, ns.
    pub cumulative_preemption_ns: u64,
}

/// Shares achieved over one balance window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRecord {
    /// Window start, GPU time ns.
    pub start_ns: u64,
    /// Window end, GPU time ns.
    pub end_ns: u64,
    /// Per tenant, in the order of the last `start` record.
    pub tenants: Vec<TenantShare>,
    /// Time lost to switching (gating, preemption) in the window, ns.
    pub switch_ns: u64,
}

/// One tenant's part of a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantShare {
    /// Tenant name.
    pub tenant: String,
    /// Engine time the tenant got, ns (summed over runlists).
    pub time_run_ns: u64,
    /// Fraction of all engine time used in the window that went to this tenant.
    pub share: f64,
    /// The policy's target share at the end of the window.
    pub target: f64,
}

/// A reload attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReloadRecord {
    /// GPU time, ns.
    pub timestamp_ns: u64,
    /// Whether the new policy was taken.
    pub applied: bool,
    /// The policy summary, or why it was refused.
    pub message: String,
}

/// An in-memory log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedLog {
    /// Records in time order.
    pub records: Vec<Record>,
}

/// Error reading a log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A line is not a log record.
    #[error("line {line}: {message}")]
    Parse {
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl SchedLog {
    /// Appends a record.
    pub fn push(&mut self, record: Record) {
        self.records.push(record);
    }

    /// Takes every record so far, leaving the log empty. Long-running users (the `vgpud`
    /// daemon) drain the log regularly so it does not grow for the life of the process.
    pub fn drain(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    /// Writes the log as JSON lines.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        for r in &self.records {
            serde_json::to_writer(&mut out, r)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// Reads a JSON-lines log; blank lines are skipped.
    pub fn read_jsonl(input: impl BufRead) -> Result<Self, LogError> {
        let mut records = Vec::new();
        for (n, line) in input.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let r = serde_json::from_str(&line).map_err(|e| LogError::Parse {
                line: n + 1,
                message: e.to_string(),
            })?;
            records.push(r);
        }
        Ok(Self { records })
    }

    /// Slice records.
    pub fn slices(&self) -> impl Iterator<Item = &SliceRecord> {
        self.records.iter().filter_map(|r| match r {
            Record::Slice(s) => Some(s),
            _ => None,
        })
    }

    /// Window records.
    pub fn windows(&self) -> impl Iterator<Item = &WindowRecord> {
        self.records.iter().filter_map(|r| match r {
            Record::Window(w) => Some(w),
            _ => None,
        })
    }
}

/// A slice record for tests: `tenant` ran `d` ns from `t` on runlist 0, on target.
#[cfg(test)]
pub(crate) fn slice(t: u64, tenant: &str, d: u64) -> Record {
    Record::Slice(SliceRecord {
        timestamp_ns: t,
        tenant: tenant.into(),
        runlist: 0,
        time_run_ns: d,
        time_run_total_ns: 0,
        target_slice_ns: d,
        cumulative_preemption_ns: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_empties_the_log_and_keeps_order() {
        let mut log = SchedLog::default();
        for message in ["a", "b"] {
            log.push(Record::Reload(ReloadRecord {
                timestamp_ns: 1,
                applied: false,
                message: message.into(),
            }));
        }
        let taken = log.drain();
        assert!(log.records.is_empty());
        let messages: Vec<_> = taken
            .iter()
            .map(|r| match r {
                Record::Reload(r) => r.message.as_str(),
                _ => "",
            })
            .collect();
        assert_eq!(messages, ["a", "b"]);
    }

    #[test]
    fn round_trips_through_json_lines() {
        let mut log = SchedLog::default();
        log.push(Record::Start(StartRecord {
            timestamp_ns: 0,
            policy: "weighted".into(),
            method: "gating".into(),
            tenants: vec!["a".into()],
            runlists: vec![0],
        }));
        log.push(Record::Slice(SliceRecord {
            timestamp_ns: 5,
            tenant: "a".into(),
            runlist: 0,
            time_run_ns: 2_000_000,
            time_run_total_ns: 2_000_000,
            target_slice_ns: 2_000_000,
            cumulative_preemption_ns: 50_000,
        }));
        log.push(Record::Reload(ReloadRecord {
            timestamp_ns: 9,
            applied: false,
            message: "p.toml:3: unknown policy `x`".into(),
        }));
        let mut buf = Vec::new();
        log.write_jsonl(&mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().nth(1).unwrap().contains("\"kind\":\"slice\""));
        assert_eq!(SchedLog::read_jsonl(&buf[..]).unwrap(), log);
        assert_eq!(log.slices().count(), 1);
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let e = SchedLog::read_jsonl(&b"\n{\"kind\":\"nope\"}\n"[..]).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
    }
}
