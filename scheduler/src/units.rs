//! Parsing of the human units a policy file uses: durations ("2ms", "500us", "1s") and shares
//! in percent ("25%", 25).

use std::time::Duration;

/// Why a duration or share string was rejected; rendered into a one-line policy error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The text has no number in front of the unit.
    #[error(
        "`{0}` is not a duration: expected a number followed by ns, us, µs, ms or s (e.g. \"2ms\")"
    )]
    NotADuration(String),
    /// The unit is none of the accepted ones.
    #[error("`{text}` has unknown unit `{unit}`: use ns, us, µs, ms or s")]
    UnknownUnit {
        /// The whole value as written.
        text: String,
        /// The unit part that was not recognised.
        unit: String,
    },
    /// Negative, not finite, or too large to represent.
    #[error("`{0}` is out of range")]
    OutOfRange(String),
    /// The text is not a percentage.
    #[error("`{0}` is not a share: expected a percentage such as 25 or \"25%\"")]
    NotAShare(String),
}

/// Parses a duration such as `"2ms"`, `"500us"`, `"500µs"`, `"1.5ms"`, `"1s"` or `"250000ns"`.
///
/// A unit is required: a bare number in a string is ambiguous and rejected.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    if num.is_empty() {
        return Err(UnitError::NotADuration(text.to_string()));
    }
    let value: f64 = num
        .parse()
        .map_err(|_| UnitError::NotADuration(text.to_string()))?;
    let ns_per_unit = match unit {
        "ns" => 1.0,
        "us" | "µs" | "μs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "" => return Err(UnitError::NotADuration(text.to_string())),
        other => {
            return Err(UnitError::UnknownUnit {
                text: text.to_string(),
                unit: other.to_string(),
            })
        }
    };
    let ns = value * ns_per_unit;
    if !ns.is_finite() || ns < 0.0 || ns > u64::MAX as f64 {
        return Err(UnitError::OutOfRange(text.to_string()));
    }
    Ok(Duration::from_nanos(ns.round() as u64))
}

/// Parses a share written as a percentage string (`"25%"`, `"12.5 %"`) into a fraction of 1.
pub fn parse_percent(text: &str) -> Result<f64, UnitError> {
    let t = text.trim();
    let num = t
        .strip_suffix('%')
        .ok_or_else(|| UnitError::NotAShare(text.to_string()))?
        .trim();
    let v: f64 = num
        .parse()
        .map_err(|_| UnitError::NotAShare(text.to_string()))?;
    if !v.is_finite() {
        return Err(UnitError::NotAShare(text.to_string()));
    }
    Ok(v / 100.0)
}

/// Formats a duration compactly for messages and the SVG axis ("2ms", "1.5s", "750us").
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        "0".to_string()
    } else if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns >= 1_000_000_000 {
        format!("{:.3}s", ns as f64 / 1e9)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns >= 1_000_000 {
        format!("{:.3}ms", ns as f64 / 1e6)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_every_unit() {
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500µs"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("1.5ms"), Ok(Duration::from_micros(1500)));
        assert_eq!(parse_duration(" 1s "), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ns"), Ok(Duration::from_nanos(250)));
        assert_eq!(parse_duration("100 ms"), Ok(Duration::from_millis(100)));
    }

    #[test]
    fn bad_durations_are_rejected() {
        assert!(matches!(
            parse_duration("2 fortnights"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("2m"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("ms"),
            Err(UnitError::NotADuration(_))
        ));
        assert!(matches!(
            parse_duration("20"),
            Err(UnitError::NotADuration(_))
        ));
        assert!(matches!(
            parse_duration("1.2.3ms"),
            Err(UnitError::NotADuration(_))
        ));
        assert!(matches!(
            parse_duration("-2ms"),
            Err(UnitError::NotADuration(_))
        ));
    }

    #[test]
    fn percentages() {
        assert_eq!(parse_percent("25%"), Ok(0.25));
        assert_eq!(parse_percent("12.5 %"), Ok(0.125));
        assert!(parse_percent("25").is_err());
        assert!(parse_percent("x%").is_err());
    }

    #[test]
    fn formatting_round_trips_common_values() {
        for s in ["2ms", "500us", "1s", "250ns", "1.500s", "1.500ms"] {
            assert_eq!(format_duration(parse_duration(s).unwrap()), s);
        }
    }
}
