//! Synthetic tenant loads for simulations and benchmarks: always busy, or bursty (a batch of
//! work arriving every period).

use std::time::Duration;

use crate::units::parse_duration;

/// How a synthetic tenant submits work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPattern {
    /// Always has work queued.
    Busy,
    /// Every `period`, `work` worth of engine time arrives; the tenant is busy until it is done.
    Bursty {
        /// Time between arrivals.
        period: Duration,
        /// Engine time each arrival needs.
        work: Duration,
    },
    /// Never submits anything (an attached but idle vGPU).
    Idle,
}

impl LoadPattern {
    /// The default bursty load: 30 ms of work every 100 ms.
    pub const DEFAULT_BURSTY: LoadPattern = LoadPattern::Bursty {
        period: Duration::from_millis(100),
        work: Duration::from_millis(30),
    };

    /// Parses `busy`, `idle`, `bursty` or `bursty:WORK/PERIOD` (e.g. `bursty:30ms/100ms`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        match t {
            "busy" => return Ok(Self::Busy),
            "idle" => return Ok(Self::Idle),
            "bursty" => return Ok(Self::DEFAULT_BURSTY),
            _ => {}
        }
        let spec = t.strip_prefix("bursty:").ok_or_else(|| {
            format!("unknown load `{t}`: expected busy, idle, bursty or bursty:WORK/PERIOD")
        })?;
        let (work, period) = spec
            .split_once('/')
            .ok_or_else(|| format!("`{t}`: expected bursty:WORK/PERIOD, e.g. bursty:30ms/100ms"))?;
        let work = parse_duration(work).map_err(|e| format!("`{t}`: {e}"))?;
        let period = parse_duration(period).map_err(|e| format!("`{t}`: {e}"))?;
        if period.is_zero() || work.is_zero() {
            return Err(format!("`{t}`: work and period must be positive"));
        }
        Ok(Self::Bursty { period, work })
    }

    /// Parses a comma-separated list, one load per tenant.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        text.split(',').map(Self::parse).collect()
    }

    /// Work that has arrived by time `t` (None = unbounded).
    pub fn arrived_by(&self, t: Duration) -> Option<Duration> {
        match *self {
            Self::Busy => None,
            Self::Idle => Some(Duration::ZERO),
            Self::Bursty { period, work } => {
                let batches = t.as_nanos() / period.as_nanos() + 1;
                Some(Duration::from_nanos((batches * work.as_nanos()) as u64))
            }
        }
    }

    /// Time of the first arrival strictly after `t` (None if nothing more ever arrives).
    pub fn next_arrival_after(&self, t: Duration) -> Option<Duration> {
        match *self {
            Self::Bursty { period, .. } => {
                let k = t.as_nanos() / period.as_nanos() + 1;
                Some(Duration::from_nanos((k * period.as_nanos()) as u64))
            }
            _ => None,
        }
    }

    /// Short label for tables.
    pub fn label(&self) -> String {
        match *self {
            Self::Busy => "busy".into(),
            Self::Idle => "idle".into(),
            Self::Bursty { period, work } => format!(
                "bursty {}/{}",
                crate::units::format_duration(work),
                crate::units::format_duration(period)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn parse_loads() {
        assert_eq!(LoadPattern::parse("busy"), Ok(LoadPattern::Busy));
        assert_eq!(
            LoadPattern::parse("bursty:5ms/20ms"),
            Ok(LoadPattern::Bursty {
                period: 20 * MS,
                work: 5 * MS
            })
        );
        assert!(LoadPattern::parse("lazy").is_err());
        assert!(LoadPattern::parse("bursty:5ms").is_err());
        assert!(LoadPattern::parse("bursty:5xs/1ms").is_err());
        assert_eq!(LoadPattern::parse_list("busy,idle").unwrap().len(), 2);
    }

    #[test]
    fn bursty_arrivals() {
        let l = LoadPattern::Bursty {
            period: 10 * MS,
            work: 3 * MS,
        };
        assert_eq!(l.arrived_by(Duration::ZERO), Some(3 * MS));
        assert_eq!(l.arrived_by(25 * MS), Some(9 * MS));
        assert_eq!(l.next_arrival_after(10 * MS), Some(20 * MS));
        assert_eq!(LoadPattern::Busy.arrived_by(MS), None);
    }
}
