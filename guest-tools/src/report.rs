//! Result lines: the machine-readable protocol between guest programs and the host.
//!
//! Every result is one console line `VGPU-RESULT <json>`, where the JSON object carries a
//! `record` tag naming its kind. The prefix may be preceded by other text on the line (a serial
//! console can glue a kernel message in front), so readers search for it instead of anchoring.
//!
//! The nested harness relays the console of each inner guest through `vgpu-guest timed-run`,
//! which prefixes every relayed line with `<label>| ` (stdout) or `<label>! ` (stderr); see
//! [`Relayed`].

use serde::{Deserialize, Serialize};
use std::io::Write;

/// Marker that starts the machine-readable part of a result line.
pub const RESULT_PREFIX: &str = "VGPU-RESULT ";

/// One result, as printed on a `VGPU-RESULT` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub enum Record {
    /// The agent's first line, printed as soon as it runs as init.
    Agent {
        /// `vgpu-guest` version.
        version: String,
        /// Scenario the agent was asked to run (from `vgpu.scenario=`).
        scenario: String,
        /// CLOCK_BOOTTIME when the agent started: the guest kernel's boot time to userspace.
        boottime_ns: u64,
    },
    /// A kernel module the scenario loaded (with its dependencies).
    Module {
        /// Module name as in `modules.dep`, with `-` replaced by `_`.
        name: String,
        /// Whether it is loaded now (freshly or already before).
        loaded: bool,
        /// Why loading failed, if it did.
        error: Option<String>,
    },
    /// A PCI function seen in `/sys/bus/pci/devices`.
    PciFunction(PciFunction),
    /// `vgpu-smi` as JSON (device section, and the caller's channel groups when it had any).
    Smi(Box<crate::smi::SmiReport>),
    /// What `vgpu-guest workload` did.
    Workload(crate::workload::WorkloadReport),
    /// One hostile request and how the device answered it.
    Hostile(crate::hostile::Check),
    /// Guest-side latencies (see [`crate::session::GuestBench`]).
    Bench(crate::session::GuestBench),
    /// The `share` scenario's stream completed its first unit (GPU time, ns).
    StreamStart {
        /// The first unit's semaphore timestamp.
        gpu_ns: u64,
    },
    /// What the `share` scenario's stream completed, per bucket of GPU time.
    Stream(crate::workload::StreamReport),
    /// A workload killed with SIGKILL and the device reset afterwards.
    KillCleanup(crate::session::KillCleanup),
    /// The scenario's end; the agent powers off right after this line.
    ScenarioEnd {
        /// Scenario name.
        scenario: String,
        /// Whether every step of it succeeded.
        ok: bool,
        /// The first failure, if any.
        error: Option<String>,
    },
    /// Outcome of one `vgpu-guest timed-run` (a VMM run timed from inside the harness).
    TimedRun(TimedRun),
    /// Printed by the harness init when it starts a scenario.
    HarnessStart {
        /// Harness scenario name (from `vgpu.scenario=` on the harness kernel command line).
        scenario: String,
    },
    /// Printed by the harness init when its scenario finished, just before it powers off.
    HarnessEnd {
        /// Harness scenario name.
        scenario: String,
        /// Whether the harness itself ran all its steps (inner results are in other records).
        ok: bool,
        /// What went wrong in the harness, if anything.
        error: Option<String>,
    },
}

/// A PCI function as the guest kernel enumerated it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciFunction {
    /// Address `dddd:bb:dd.f`.
    pub bdf: String,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code: base class, subclass and programming interface (24 bits).
    pub class: u32,
    /// Assigned BARs (unused BARs are left out).
    pub bars: Vec<Bar>,
}

/// Address space of a BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarKind {
    /// I/O port space.
    Io,
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory.
    Mem64,
}

/// One BAR of a PCI function, as the kernel assigned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bar {
    /// BAR index 0-5.
    pub index: u8,
    /// Address the kernel assigned.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
    /// Address space.
    pub kind: BarKind,
    /// Whether the BAR is prefetchable.
    pub prefetchable: bool,
}

/// Result of timing one command from inside the harness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedRun {
    /// Label given on the command line; relayed lines carry it as prefix.
    pub label: String,
    /// Exit status when the command exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended the command, if one did.
    pub signal: Option<i32>,
    /// Whether `timed-run` killed the command at its timeout.
    pub timed_out: bool,
    /// Microseconds from spawning the command to its first stdout line holding a result.
    pub first_result_us: Option<u64>,
    /// Microseconds from spawning the command to its exit.
    pub elapsed_us: u64,
    /// Microseconds from spawning the command to the first stdout output holding each
    /// `--mark` text, in the order given (`None`: not seen).
    #[serde(default)]
    pub marks_us: Vec<Option<u64>>,
}

/// Error from decoding a result line.
#[derive(Debug, thiserror::Error)]
#[error("bad result line: {0}")]
pub struct ParseError(#[from] serde_json::Error);

impl Record {
    /// Formats the record as one console line (without newline).
    pub fn to_line(&self) -> String {
        // Serialising these plain data types cannot fail.
        let json = serde_json::to_string(self).expect("records serialise to JSON");
        format!("{RESULT_PREFIX}{json}")
    }

    /// Finds and decodes a result in a console line; `None` when the line holds none.
    pub fn parse_line(line: &str) -> Option<Result<Record, ParseError>> {
        let at = line.find(RESULT_PREFIX)?;
        let json = line[at + RESULT_PREFIX.len()..].trim_end();
        Some(serde_json::from_str(json).map_err(ParseError::from))
    }

    /// Prints the record on stdout and flushes, so it reaches the console at once.
    pub fn emit(&self) {
        let mut out = std::io::stdout().lock();
        // A console that fails to take a line leaves nothing else to report it to.
        let _ = writeln!(out, "{}", self.to_line());
        let _ = out.flush();
    }
}

/// Which output stream of a relayed command a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output (the inner guest's console, for a VMM).
    Stdout,
    /// Standard error (the VMM's own messages).
    Stderr,
}

impl Stream {
    fn marker(self) -> char {
        match self {
            Stream::Stdout => '|',
            Stream::Stderr => '!',
        }
    }
}

/// A line that `timed-run` relayed from the command it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed<'a> {
    /// The run's label.
    pub label: &'a str,
    /// Stream the line came from.
    pub stream: Stream,
    /// The line as the command printed it.
    pub text: &'a str,
}

impl<'a> Relayed<'a> {
    /// Formats a relayed line: `<label>| text` or `<label>! text`.
    pub fn format(label: &str, stream: Stream, text: &str) -> String {
        format!("{label}{} {text}", stream.marker())
    }

    /// Splits a console line into a relayed line, if it is one.
    pub fn parse(line: &'a str) -> Option<Relayed<'a>> {
        let end = line.find(['|', '!'])?;
        let label = &line[..end];
        if !is_label(label) {
            return None;
        }
        let stream = if line.as_bytes()[end] == b'|' {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        let rest = &line[end + 1..];
        let text = rest.strip_prefix(' ').unwrap_or(rest);
        Some(Relayed {
            label,
            stream,
            text,
        })
    }
}

/// Whether `s` is a valid run label: 1-32 characters of `[A-Za-z0-9_.-]`.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_a_line() {
        let rec = Record::PciFunction(PciFunction {
            bdf: "0000:00:00.0".into(),
            vendor: 0x8086,
            device: 0x0d57,
            class: 0x060000,
            bars: vec![Bar {
                index: 0,
                start: 0xc000_0000,
                size: 0x1000,
                kind: BarKind::Mem32,
                prefetchable: false,
            }],
        });
        let line = rec.to_line();
        assert!(line.starts_with("VGPU-RESULT {\"record\":\"pci_function\""));
        let back = Record::parse_line(&format!("[    1.2] junk{line}\r"))
            .unwrap()
            .unwrap();
        assert_eq!(back, rec);
    }

    #[test]
    fn lines_without_prefix_are_not_results() {
        assert!(Record::parse_line("Linux version 6.1").is_none());
        assert!(Record::parse_line("VGPU-RESULT {broken").unwrap().is_err());
    }

    #[test]
    fn relayed_lines_split_into_label_stream_and_text() {
        let line = Relayed::format("vmm-1", Stream::Stderr, "exits: 42");
        assert_eq!(
            Relayed::parse(&line),
            Some(Relayed {
                label: "vmm-1",
                stream: Stream::Stderr,
                text: "exits: 42"
            })
        );
        let r = Relayed::parse("qemu.2| VGPU-RESULT {}").unwrap();
        assert_eq!(
            (r.label, r.stream, r.text),
            ("qemu.2", Stream::Stdout, "VGPU-RESULT {}")
        );
        assert!(Relayed::parse("a b| c").is_none());
        assert!(Relayed::parse("| c").is_none());
        assert!(Relayed::parse("no marker").is_none());
    }
}
