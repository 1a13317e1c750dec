//! Trace conformance: decodes every record of a captured NVIDIA client trace (JSON lines, as in
//! `shared/traces/`, optionally gzipped) against this crate's ABI and reports what it found.
//!
//! Per ioctl on an NVIDIA node it checks: the request decodes (`'F'`, nr and size agree with the
//! record), the escape is known, the size passes the escape's rule, the `in`/`out` hex is exactly
//! that size, the device-node rule holds for calls the driver accepted, the struct decodes, and
//! for `RM_CONTROL` that `paramsSize` is the table's size whenever the driver accepted it and
//! that the embedded `p_in` has that size. Unknown classes and controls are counted, not failed.

use rm_abi::class::class_info;
use rm_abi::escape::{Escape, NodeRule};
use rm_abi::ioctl::{IoctlRequest, NV_IOCTL_MAGIC};
use rm_abi::nvos::{Nvos21Parameters, Nvos54Parameters, Nvos64Parameters};
use rm_abi::{read_struct, NvStatus};
use rm_core::controls::control_info;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use thiserror::Error;

/// A trace file that could not be read at all (records that fail to decode are counted instead).
#[derive(Debug, Error)]
pub enum TraceError {
    /// I/O error.
    #[error("{path}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// The largest embedded param buffer the trace capture records (`p_in`/`p_out`).
const P_CAPTURE_LIMIT: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
struct Record {
    seq: Option<u64>,
    op: String,
    dev: Option<String>,
    req: Option<String>,
    nr: Option<u32>,
    size: Option<u32>,
    ret: Option<i64>,
    #[serde(rename = "in")]
    input: Option<String>,
    out: Option<String>,
    p_in: Option<String>,
}

/// A record that failed to decode or validate.
#[derive(Debug, Clone)]
pub struct Failure {
    /// File name.
    pub file: String,
    /// Line number (1-based).
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

/// A known control's name and handling ("core", "backend", "rejected", "denied").
pub type ControlName = (&'static str, &'static str);

/// What one or more trace files contained.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Records per file.
    pub files: Vec<(String, usize)>,
    /// Records by `op` (open/ioctl/mmap/close).
    pub ops: BTreeMap<String, usize>,
    /// RM/frontend ioctls by escape name.
    pub escapes: BTreeMap<String, usize>,
    /// ioctls on `/dev/nvidia-uvm` (not RM escapes; counted by number).
    pub uvm: BTreeMap<u32, usize>,
    /// Allocated classes: id -> (name if known, count).
    pub classes: BTreeMap<u32, (Option<&'static str>, usize)>,
    /// Controls: cmd -> (name and handling if known, count).
    pub controls: BTreeMap<u32, (Option<ControlName>, usize)>,
    /// RM statuses returned by controls and allocs.
    pub statuses: BTreeMap<u32, usize>,
    /// Records that failed.
    pub failures: Vec<Failure>,
}

impl Report {
    /// Checks every record of `path` (`.jsonl` or `.jsonl.gz`).
    pub fn check_file(&mut self, path: &Path) -> Result<(), TraceError> {
        let name = path.display().to_string();
        let io = |source| TraceError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        let mut count = 0;
        for (i, line) in BufReader::new(reader).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            count += 1;
            if let Err(reason) = self.check_line(&line) {
                self.failures.push(Failure {
                    file: name.clone(),
                    line: i + 1,
                    reason,
                });
            }
        }
        self.files.push((name, count));
        Ok(())
    }

    fn check_line(&mut self, line: &str) -> Result<(), String> {
        let r: Record = serde_json::from_str(line).map_err(|e| format!("bad JSON: {e}"))?;
        *self.ops.entry(r.op.clone()).or_default() += 1;
        if r.op != "ioctl" {
            return Ok(());
        }
        let dev = r.dev.as_deref().ok_or("ioctl without dev")?;
        let req_text = r.req.as_deref().ok_or("ioctl without req")?;
        let request = u32::from_str_radix(req_text.trim_start_matches("0x"), 16)
            .map_err(|e| format!("bad req {req_text}: {e}"))?;
        let req = IoctlRequest::decode(request);
        if r.nr != Some(u32::from(req.nr)) || r.size != Some(req.size) {
            return Err(format!(
                "req {req_text} decodes to nr {} size {}, record says {:?}/{:?}",
                req.nr, req.size, r.nr, r.size
            ));
        }
        if dev == "nvidia-uvm" {
            *self.uvm.entry(u32::from(req.nr)).or_default() += 1;
            return Ok(());
        }
        let node = if dev == "nvidiactl" {
            NodeRule::CtlOnly
        } else if dev
            .strip_prefix("nvidia")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            NodeRule::DeviceOnly
        } else {
            return Err(format!("ioctl on unexpected device {dev}"));
        };
        if req.ty != NV_IOCTL_MAGIC {
            return Err(format!("request type {:#x} is not 'F'", req.ty));
        }
        let esc = Escape::from_nr(req.nr).ok_or(format!("unknown escape {}", req.nr))?;
        *self.escapes.entry(esc.name().to_string()).or_default() += 1;
        if !esc.arg_size().accepts(req.size) {
            return Err(format!(
                "{}: size {} rejected by {:?}",
                esc.name(),
                req.size,
                esc.arg_size()
            ));
        }
        let input = hex(r.input.as_deref().ok_or("ioctl without in")?)?;
        let out = hex(r.out.as_deref().ok_or("ioctl without out")?)?;
        if input.len() != req.size as usize || out.len() != req.size as usize {
            return Err(format!(
                "{}: in/out are {}/{} bytes, request says {}",
                esc.name(),
                input.len(),
                out.len(),
                req.size
            ));
        }
        let accepted = r.ret == Some(0);
        let node_ok = match (esc.node_rule(), node) {
            (NodeRule::Either, _) => true,
            (rule, n) if rule == n => true,
            _ => esc == Escape::RM_ALLOC && rm_abi::class::is_event_class(u32_at(&input, 12)),
        };
        if accepted && !node_ok {
            return Err(format!(
                "{} accepted on {dev}, against its node rule",
                esc.name()
            ));
        }
        match esc {
            Escape::RM_ALLOC => self.check_alloc(&input, &out),
            Escape::RM_CONTROL => {
                self.check_control(&input, &out, r.p_in.as_deref(), accepted, r.seq)
            }
            _ => Ok(()),
        }
    }

    fn check_alloc(&mut self, input: &[u8], out: &[u8]) -> Result<(), String> {
        let (class, status) = if input.len() == core::mem::size_of::<Nvos64Parameters>() {
            let i: Nvos64Parameters = read_struct(input).ok_or("NVOS64 decode")?;
            let o: Nvos64Parameters = read_struct(out).ok_or("NVOS64 decode")?;
            (if o.hClass != 0 { o.hClass } else { i.hClass }, o.status)
        } else {
            let i: Nvos21Parameters = read_struct(input).ok_or("NVOS21 decode")?;
            let o: Nvos21Parameters = read_struct(out).ok_or("NVOS21 decode")?;
            (if o.hClass != 0 { o.hClass } else { i.hClass }, o.status)
        };
        let e = self
            .classes
            .entry(class)
            .or_insert((class_info(class).map(|c| c.name), 0));
        e.1 += 1;
        *self.statuses.entry(status).or_default() += 1;
        Ok(())
    }

    fn check_control(
        &mut self,
        input: &[u8],
        out: &[u8],
        p_in: Option<&str>,
        accepted: bool,
        seq: Option<u64>,
    ) -> Result<(), String> {
        let i: Nvos54Parameters = read_struct(input).ok_or("NVOS54 decode")?;
        let o: Nvos54Parameters = read_struct(out).ok_or("NVOS54 decode")?;
        let info = control_info(i.cmd);
        let e = self
            .controls
            .entry(i.cmd)
            .or_insert((info.map(|c| (c.name, c.handling.kind())), 0));
        e.1 += 1;
        *self.statuses.entry(o.status).or_default() += 1;
        if let Some(p) = p_in {
            // The capture keeps at most the first 64 KiB of a param buffer.
            let n = hex(p)?.len();
            if n != (i.paramsSize as usize).min(P_CAPTURE_LIMIT) {
                return Err(format!(
                    "control {:#x}: p_in has {n} bytes, paramsSize {}",
                    i.cmd, i.paramsSize
                ));
            }
        }
        if let Some(info) = info {
            let driver_took_size = accepted && NvStatus(o.status) != NvStatus::ERR_INVALID_ARGUMENT;
            if driver_took_size && i.paramsSize != info.size {
                return Err(format!(
                    "control {:#x} ({}) seq {:?}: paramsSize {} but table says {}",
                    i.cmd, info.name, seq, i.paramsSize, info.size
                ));
            }
        }
        Ok(())
    }

    /// Records that decoded.
    pub fn decoded(&self) -> usize {
        self.files.iter().map(|(_, n)| n).sum::<usize>() - self.failures.len()
    }

    /// The report as text tables.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let total: usize = self.files.iter().map(|(_, n)| n).sum();
        let _ = writeln!(s, "{:<40} {:>8}", "file", "records");
        for (f, n) in &self.files {
            let _ = writeln!(s, "{f:<40} {n:>8}");
        }
        let _ = writeln!(
            s,
            "\nrecords: {total}, decoded: {}, failed: {}",
            self.decoded(),
            self.failures.len()
        );
        let _ = writeln!(s, "\n{:<40} {:>8}", "op", "count");
        for (k, v) in &self.ops {
            let _ = writeln!(s, "{k:<40} {v:>8}");
        }
        let _ = writeln!(s, "\n{:<40} {:>8}", "escape (NVIDIA nodes)", "count");
        for (k, v) in &self.escapes {
            let _ = writeln!(s, "{k:<40} {v:>8}");
        }
        let uvm: usize = self.uvm.values().sum();
        let _ = writeln!(
            s,
            "{:<40} {uvm:>8}  ({} distinct numbers; not RM escapes)",
            "/dev/nvidia-uvm ioctls",
            self.uvm.len()
        );
        let known_classes = self.classes.values().filter(|(n, _)| n.is_some()).count();
        let _ = writeln!(
            s,
            "\nclasses: {} distinct, {} known, {} unknown",
            self.classes.len(),
            known_classes,
            self.classes.len() - known_classes
        );
        let _ = writeln!(s, "{:<8} {:<40} {:>6}", "class", "name", "allocs");
        for (id, (name, n)) in &self.classes {
            let _ = writeln!(
                s,
                "{:<8} {:<40} {n:>6}",
                format!("{id:#x}"),
                name.unwrap_or("UNKNOWN")
            );
        }
        let known_ctrl = self.controls.values().filter(|(i, _)| i.is_some()).count();
        let _ = writeln!(
            s,
            "\ncontrols: {} distinct, {} known, {} unknown",
            self.controls.len(),
            known_ctrl,
            self.controls.len() - known_ctrl
        );
        let mut by_handling: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for (info, n) in self.controls.values() {
            let e = by_handling
                .entry(info.map_or("unknown", |(_, h)| h))
                .or_default();
            e.0 += 1;
            e.1 += n;
        }
        for (h, (d, n)) in &by_handling {
            let _ = writeln!(s, "  {h:<10} {d:>4} distinct, {n:>5} calls");
        }
        let _ = writeln!(
            s,
            "{:<12} {:<60} {:<9} {:>6}",
            "cmd", "name", "handling", "calls"
        );
        for (cmd, (info, n)) in &self.controls {
            let (name, h) = info.unwrap_or(("UNKNOWN", "unknown"));
            let _ = writeln!(s, "{:<12} {name:<60} {h:<9} {n:>6}", format!("{cmd:#010x}"));
        }
        let _ = writeln!(
            s,
            "\n{:<40} {:>8}",
            "RM status (controls + allocs)", "count"
        );
        for (st, n) in &self.statuses {
            let _ = writeln!(s, "{:<40} {n:>8}", format!("{:?}", NvStatus(*st)));
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\nfailed records:");
            for f in &self.failures {
                let _ = writeln!(s, "{}:{}: {}", f.file, f.line, f.reason);
            }
        }
        s
    }
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd-length hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
        .collect()
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |x| u32::from_le_bytes([x[0], x[1], x[2], x[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_and_a_bad_record() {
        let mut r = Report::default();
        let ok = r#"{"seq":1,"op":"ioctl","fd":9,"dev":"nvidiactl","req":"0xc00846d6","nr":214,"size":8,"ret":0,"errno":0,"in":"0000004000000000","out":"0000004000000000"}"#;
        assert!(r.check_line(ok).is_ok());
        let wrong_size = r#"{"seq":1,"op":"ioctl","fd":9,"dev":"nvidiactl","req":"0xc00946d6","nr":214,"size":9,"ret":0,"errno":0,"in":"000000400000000000","out":"000000400000000000"}"#;
        assert!(r.check_line(wrong_size).unwrap_err().contains("rejected"));
        let wrong_node = r#"{"seq":1,"op":"ioctl","fd":9,"dev":"nvidia0","req":"0xc00846d6","nr":214,"size":8,"ret":0,"errno":0,"in":"0000004000000000","out":"0000004000000000"}"#;
        assert!(r.check_line(wrong_node).unwrap_err().contains("node rule"));
        assert!(r.check_line("{not json").is_err());
    }
}
