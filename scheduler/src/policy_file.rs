//! The policy file: a TOML document naming the global policy and each tenant's vGPUs, weight,
//! share bounds, timeslice and priority. Parsing keeps toml's span information so that every
//! validation error names the file and line it is about, in one line.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::units::{format_duration, parse_duration, parse_percent};

/// Timeslice used when the file gives none (NVIDIA's default for up to 8 vGPUs).
pub const DEFAULT_TIMESLICE: Duration = Duration::from_millis(2);
/// Balance period used when the file gives none (GVT-g's `GVT_TS_BALANCE_PERIOD_MS`).
pub const DEFAULT_BALANCE_PERIOD: Duration = Duration::from_millis(100);
/// Shortest timeslice accepted: below this a switch costs more than the work it schedules.
pub const MIN_TIMESLICE: Duration = Duration::from_micros(100);
/// Longest timeslice accepted.
pub const MAX_TIMESLICE: Duration = Duration::from_millis(100);
/// Longest balance period accepted.
pub const MAX_BALANCE_PERIOD: Duration = Duration::from_secs(10);
/// Largest weight accepted (keeps share arithmetic far from overflow and rounding trouble).
pub const MAX_WEIGHT: u32 = 10_000;

/// How the GPU's time is divided between tenants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// Round robin among tenants with work; idle tenants' time goes to the busy ones. Min/max
    /// shares still hold.
    BestEffort,
    /// Each attached tenant gets 1/N of the GPU whether or not it uses it (NVIDIA equal share).
    EqualShare,
    /// Each tenant gets weight/Σweight over all configured tenants; an idle tenant's slice stays
    /// idle (NVIDIA fixed share semantics).
    FixedShare,
    /// Busy tenants share in proportion to their weights; idle tenants give their time away.
    Weighted,
}

impl PolicyKind {
    /// Names as written in the policy file.
    pub const NAMES: [&'static str; 4] = ["best_effort", "equal_share", "fixed_share", "weighted"];

    /// Parses the file's spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "best_effort" => Some(Self::BestEffort),
            "equal_share" => Some(Self::EqualShare),
            "fixed_share" => Some(Self::FixedShare),
            "weighted" => Some(Self::Weighted),
            _ => None,
        }
    }

    /// The file's spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::BestEffort => "best_effort",
            Self::EqualShare => "equal_share",
            Self::FixedShare => "fixed_share",
            Self::Weighted => "weighted",
        }
    }

    /// Whether time a tenant leaves unused is given to others (true) or left idle (false).
    pub fn work_conserving(self) -> bool {
        matches!(self, Self::BestEffort | Self::Weighted)
    }
}

/// A tenant's priority; maps to the runlist interleave level (how often its TSGs appear per pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Priority {
    /// Interleave level LOW (0): once per runlist pass.
    #[default]
    Low,
    /// Interleave level MEDIUM (1).
    Medium,
    /// Interleave level HIGH (2).
    High,
}

impl Priority {
    /// The `NVA06C_CTRL_INTERLEAVE_LEVEL_*` value.
    pub fn interleave_level(self) -> u32 {
        self as u32
    }
}

/// One tenant: the vGPUs it owns and how it is to be treated.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Unique name, used in logs and the timeline.
    pub name: String,
    /// vGPU instance UUIDs (lower-case, hyphenated) owned by the tenant.
    pub vgpus: Vec<String>,
    /// GPU function IDs owned by the tenant.
    pub gfids: Vec<u32>,
    /// Relative weight (weighted and fixed_share policies).
    pub weight: u32,
    /// Guaranteed minimum share of the GPU (fraction of 1) while the tenant has work.
    pub min_share: f64,
    /// Hard cap on the share of the GPU (fraction of 1).
    pub max_share: f64,
    /// The tenant's own timeslice, overriding the global one.
    pub timeslice: Option<Duration>,
    /// Priority, mapped to the interleave level.
    pub priority: Priority,
    /// Which local processes may connect to vgpud as this tenant (process tenants).
    pub binding: TenantBinding,
}

/// Which local processes may claim a tenant's name when they connect to vgpud: those whose
/// user is one of `uids` (when given), whose primary or supplementary group is one of `gids`
/// (when given), and that run in the cgroup `cgroup` or below it (when given). Every kind given
/// must match. A tenant that gives none is open: any local user may claim it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantBinding {
    /// User ids.
    pub uids: Vec<u32>,
    /// Group ids.
    pub gids: Vec<u32>,
    /// A cgroup v2 path as `/proc/<pid>/cgroup` shows it (e.g. `/tenants/a`).
    pub cgroup: Option<String>,
}

impl TenantBinding {
    /// True when nothing restricts who may claim the tenant.
    pub fn is_open(&self) -> bool {
        self.uids.is_empty() && self.gids.is_empty() && self.cgroup.is_none()
    }

    /// Whether a process of user `uid`, with groups `groups`, in cgroup `cgroup` (`None`: not
    /// known) may claim the tenant.
    pub fn admits(&self, uid: u32, groups: &[u32], cgroup: Option<&str>) -> bool {
        let uid_ok = self.uids.is_empty() || self.uids.contains(&uid);
        let gid_ok = self.gids.is_empty() || groups.iter().any(|g| self.gids.contains(g));
        let cgroup_ok = match (&self.cgroup, cgroup) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(want), Some(have)) => {
                let want = want.trim_end_matches('/');
                have == want || (have.starts_with(want) && have[want.len()..].starts_with('/'))
            }
        };
        uid_ok && gid_ok && cgroup_ok
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The global policy.
    pub kind: PolicyKind,
    /// Timeslice of tenants that set none.
    pub timeslice: Duration,
    /// How often shares are rebalanced and a new policy can take effect.
    pub balance_period: Duration,
    /// The tenants, in file order.
    pub tenants: Vec<Tenant>,
}

impl Policy {
    /// The timeslice tenant `i` runs with.
    pub fn timeslice_of(&self, i: usize) -> Duration {
        self.tenants[i].timeslice.unwrap_or(self.timeslice)
    }

    /// Index of the tenant owning `gfid`, if any.
    pub fn tenant_of_gfid(&self, gfid: u32) -> Option<usize> {
        self.tenants.iter().position(|t| t.gfids.contains(&gfid))
    }

    /// Parses and validates policy text; `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        parse(text, file)
    }

    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Unreadable {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        parse(&text, &file)
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "policy {} timeslice {} balance period {}, {} tenant(s)",
            self.kind.name(),
            format_duration(self.timeslice),
            format_duration(self.balance_period),
            self.tenants.len()
        )?;
        // Name each tenant's weight so two reloads of the same shape can be told apart.
        for (i, t) in self.tenants.iter().enumerate() {
            let sep = if i == 0 { ": " } else { ", " };
            write!(f, "{sep}{} weight {}", t.name, t.weight)?;
        }
        Ok(())
    }
}

/// A policy file that could not be used; `Display` is one line naming file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Unreadable {
        /// The file.
        file: String,
        /// The I/O error.
        reason: String,
    },
    /// The file is not valid TOML or breaks a rule.
    #[error("{file}:{line}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// 1-based line of the offending item.
        line: usize,
        /// What is wrong, in one line.
        message: String,
    },
}

impl PolicyError {
    /// The line the error points at, if it is about the file's content.
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Invalid { line, .. } => Some(*line),
            Self::Unreadable { .. } => None,
        }
    }
}

/// A duration written as a number of microseconds or as a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Micros(i64),
    Text(String),
}

/// A share written as a number of percent or a string ending in `%`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawShare {
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: Option<Spanned<String>>,
    vgpus: Option<Vec<Spanned<String>>>,
    gfids: Option<Vec<Spanned<i64>>>,
    weight: Option<Spanned<i64>>,
    min_share: Option<Spanned<RawShare>>,
    max_share: Option<Spanned<RawShare>>,
    timeslice: Option<Spanned<RawDuration>>,
    priority: Option<Spanned<String>>,
    uids: Option<Vec<Spanned<i64>>>,
    gids: Option<Vec<Spanned<i64>>>,
    cgroup: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    policy: Option<Spanned<String>>,
    timeslice: Option<Spanned<RawDuration>>,
    balance_period: Option<Spanned<RawDuration>>,
    tenant: Option<Vec<Spanned<RawTenant>>>,
}

/// Turns byte spans into line numbers and builds errors.
struct Locator<'a> {
    text: &'a str,
    file: &'a str,
}

impl Locator<'_> {
    fn line(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// An error at `span`; line breaks inside the message (a multi-line string the file
    /// quoted, say) are escaped, so the error stays one line.
    fn err(&self, span: &Range<usize>, message: impl Into<String>) -> PolicyError {
        PolicyError::Invalid {
            file: self.file.to_string(),
            line: self.line(span),
            message: message.into().replace('\r', "\\r").replace('\n', "\\n"),
        }
    }
}

fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let loc = Locator { text, file };
    let raw: RawPolicy = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        loc.err(&span, e.message().replace('\n', " ").trim().to_string())
    })?;

    let kind = match &raw.policy {
        None => {
            return Err(loc.err(
                &(0..0),
                format!("missing `policy` (one of {})", PolicyKind::NAMES.join(", ")),
            ))
        }
        Some(p) => PolicyKind::from_name(p.get_ref()).ok_or_else(|| {
            loc.err(
                &p.span(),
                format!(
                    "unknown policy `{}`: expected one of {}",
                    p.get_ref(),
                    PolicyKind::NAMES.join(", ")
                ),
            )
        })?,
    };

    let timeslice = match &raw.timeslice {
        Some(t) => timeslice_value(&loc, t, "timeslice")?,
        None => DEFAULT_TIMESLICE,
    };
    let balance_period = match &raw.balance_period {
        Some(b) => {
            let d = duration_value(&loc, b, "balance_period")?;
            if d < timeslice || d > MAX_BALANCE_PERIOD {
                return Err(loc.err(
                    &b.span(),
                    format!(
                        "balance_period {} must be between the timeslice ({}) and {}",
                        format_duration(d),
                        format_duration(timeslice),
                        format_duration(MAX_BALANCE_PERIOD)
                    ),
                ));
            }
            d
        }
        None => DEFAULT_BALANCE_PERIOD.max(timeslice),
    };

    let raw_tenants = raw.tenant.unwrap_or_default();
    let mut tenants = Vec::with_capacity(raw_tenants.len());
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut vgpu_owner: HashMap<String, (String, usize)> = HashMap::new();
    let mut gfid_owner: HashMap<u32, (String, usize)> = HashMap::new();
    let mut min_sum = 0.0;

    for (index, spanned) in raw_tenants.iter().enumerate() {
        let tspan = spanned.span();
        let t = spanned.get_ref();
        let what = format!("tenant #{}", index + 1);
        let name = t
            .name
            .as_ref()
            .ok_or_else(|| loc.err(&tspan, format!("{what} is missing `name`")))?;
        let name_str = name.get_ref().trim().to_string();
        if name_str.is_empty() {
            return Err(loc.err(&name.span(), format!("{what} has an empty `name`")));
        }
        // Names go into logs, the timeline and metrics labels, one line each.
        if name_str.chars().any(char::is_control) {
            return Err(loc.err(
                &name.span(),
                format!("{what}: `name` {name_str:?} holds a control character"),
            ));
        }
        if let Some(&line) = names.get(&name_str) {
            return Err(loc.err(
                &name.span(),
                format!("duplicate tenant name `{name_str}` (first used on line {line})"),
            ));
        }
        names.insert(name_str.clone(), loc.line(&name.span()));
        let who = format!("tenant `{name_str}`");

        let mut vgpus = Vec::new();
        for v in t.vgpus.iter().flatten() {
            let uuid = v.get_ref().trim().to_ascii_lowercase();
            if !is_uuid(&uuid) {
                return Err(loc.err(
                    &v.span(),
                    format!(
                        "{who}: `{}` is not a vGPU UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                        v.get_ref()
                    ),
                ));
            }
            if let Some((owner, line)) = vgpu_owner.get(&uuid) {
                return Err(loc.err(
                    &v.span(),
                    format!("duplicate vGPU {uuid}: {who} lists it, `{owner}` already owns it (line {line})"),
                ));
            }
            vgpu_owner.insert(uuid.clone(), (name_str.clone(), loc.line(&v.span())));
            vgpus.push(uuid);
        }
        let mut gfids = Vec::new();
        for g in t.gfids.iter().flatten() {
            let gfid = *g.get_ref();
            if !(1..=u16::MAX as i64).contains(&gfid) {
                return Err(loc.err(
                    &g.span(),
                    format!(
                        "{who}: GFID {gfid} is out of range 1..=65535 (0 is the physical function)"
                    ),
                ));
            }
            let gfid = gfid as u32;
            if let Some((owner, line)) = gfid_owner.get(&gfid) {
                return Err(loc.err(
                    &g.span(),
                    format!("duplicate GFID {gfid}: {who} lists it, `{owner}` already owns it (line {line})"),
                ));
            }
            gfid_owner.insert(gfid, (name_str.clone(), loc.line(&g.span())));
            gfids.push(gfid);
        }

        let weight = match &t.weight {
            None => 1,
            Some(w) => {
                let v = *w.get_ref();
                if !(1..=MAX_WEIGHT as i64).contains(&v) {
                    return Err(loc.err(
                        &w.span(),
                        format!("{who}: weight {v} must be between 1 and {MAX_WEIGHT}"),
                    ));
                }
                v as u32
            }
        };
        let min_share = match &t.min_share {
            None => 0.0,
            Some(s) => share_value(&loc, s, &who, "min_share")?,
        };
        let max_share = match &t.max_share {
            None => 1.0,
            Some(s) => share_value(&loc, s, &who, "max_share")?,
        };
        // Where a min_share problem is reported: the value, or the tenant if it sets none.
        let min_span = t
            .min_share
            .as_ref()
            .map(|s| s.span())
            .unwrap_or(tspan.clone());
        if min_share > max_share {
            return Err(loc.err(
                &min_span,
                format!(
                    "{who}: min_share {}% is above max_share {}%",
                    pct(min_share),
                    pct(max_share)
                ),
            ));
        }
        if let Some(s) = &t.max_share {
            if max_share == 0.0 {
                return Err(loc.err(&s.span(), format!("{who}: max_share 0% would never run")));
            }
        }
        min_sum += min_share;
        if min_sum > 1.0 + 1e-9 {
            return Err(loc.err(
                &min_span,
                format!(
                    "min_share over all tenants adds up to {}%, more than 100%",
                    pct(min_sum)
                ),
            ));
        }
        let timeslice = match &t.timeslice {
            None => None,
            Some(ts) => Some(timeslice_value(&loc, ts, &format!("{who}: timeslice"))?),
        };
        let priority = match &t.priority {
            None => Priority::Low,
            Some(p) => match p.get_ref().to_ascii_uppercase().as_str() {
                "LOW" => Priority::Low,
                "MEDIUM" => Priority::Medium,
                "HIGH" => Priority::High,
                other => {
                    return Err(loc.err(
                        &p.span(),
                        format!("{who}: unknown priority `{other}`: expected LOW, MEDIUM or HIGH"),
                    ))
                }
            },
        };
        let ids = |list: &Option<Vec<Spanned<i64>>>, what: &str| {
            list.iter()
                .flatten()
                .map(|v| {
                    u32::try_from(*v.get_ref()).map_err(|_| {
                        loc.err(
                            &v.span(),
                            format!("{who}: {what} {} is not a valid id", v.get_ref()),
                        )
                    })
                })
                .collect::<Result<Vec<u32>, _>>()
        };
        let cgroup = match &t.cgroup {
            None => None,
            Some(c) if c.get_ref().starts_with('/') && !c.get_ref().contains("/../") => {
                Some(c.get_ref().clone())
            }
            Some(c) => {
                return Err(loc.err(
                    &c.span(),
                    format!(
                        "{who}: cgroup `{}` must be an absolute cgroup v2 path such as /tenants/a",
                        c.get_ref()
                    ),
                ))
            }
        };
        let binding = TenantBinding {
            uids: ids(&t.uids, "uid")?,
            gids: ids(&t.gids, "gid")?,
            cgroup,
        };
        tenants.push(Tenant {
            name: name_str,
            vgpus,
            gfids,
            weight,
            min_share,
            max_share,
            timeslice,
            priority,
            binding,
        });
    }

    Ok(Policy {
        kind,
        timeslice,
        balance_period,
        tenants,
    })
}

fn pct(share: f64) -> String {
    let v = share * 100.0;
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round())
    } else {
        format!("{v:.2}")
    }
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn duration_value(
    loc: &Locator<'_>,
    raw: &Spanned<RawDuration>,
    what: &str,
) -> Result<Duration, PolicyError> {
    match raw.get_ref() {
        RawDuration::Micros(us) if *us >= 0 => Ok(Duration::from_micros(*us as u64)),
        RawDuration::Micros(us) => Err(loc.err(&raw.span(), format!("{what}: {us} is negative"))),
        RawDuration::Text(t) => {
            parse_duration(t).map_err(|e| loc.err(&raw.span(), format!("{what}: {e}")))
        }
    }
}

fn timeslice_value(
    loc: &Locator<'_>,
    raw: &Spanned<RawDuration>,
    what: &str,
) -> Result<Duration, PolicyError> {
    let d = duration_value(loc, raw, what)?;
    if d < MIN_TIMESLICE || d > MAX_TIMESLICE {
        return Err(loc.err(
            &raw.span(),
            format!(
                "{what} {} is outside {}..={}",
                format_duration(d),
                format_duration(MIN_TIMESLICE),
                format_duration(MAX_TIMESLICE)
            ),
        ));
    }
    Ok(d)
}

fn share_value(
    loc: &Locator<'_>,
    raw: &Spanned<RawShare>,
    who: &str,
    field: &str,
) -> Result<f64, PolicyError> {
    let v = match raw.get_ref() {
        RawShare::Int(i) => *i as f64 / 100.0,
        RawShare::Float(f) => *f / 100.0,
        RawShare::Text(t) => {
            parse_percent(t).map_err(|e| loc.err(&raw.span(), format!("{who}: {field}: {e}")))?
        }
    };
    if !(0.0..=1.0).contains(&v) {
        return Err(loc.err(
            &raw.span(),
            format!("{who}: {field} {}% is outside 0..=100%", pct(v)),
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID_A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const UUID_B: &str = "bbbbbbbb-0000-4000-8000-000000000002";

    fn err(text: &str) -> (usize, String) {
        let e = Policy::parse(text, "p.toml").unwrap_err();
        let s = e.to_string();
        assert!(!s.contains('\n'), "multi-line message: {s:?}");
        assert!(s.starts_with("p.toml:"), "{s}");
        (e.line().unwrap(), s)
    }

    /// Asserts that `text` is refused with a message pointing at `line`; returns the message.
    fn refused_at(text: &str, line: usize) -> String {
        let (at, msg) = err(text);
        assert_eq!(at, line, "{msg}");
        msg
    }

    /// Asserts that `text` is refused at `line` with a message that says `says`.
    fn refused(text: &str, line: usize, says: &str) {
        let msg = refused_at(text, line);
        assert!(msg.contains(says), "{msg}");
    }

    /// Found by the policy fuzz target: a tenant name with a line break was accepted, so the
    /// policy's one-line summary (vgpud's reload log) and the timeline broke across lines.
    #[test]
    fn a_tenant_name_with_a_control_character_is_refused() {
        let text = "policy = \"weighted\"\n[[tenant]]\nname = \"a\\nb\"\n";
        let e = Policy::parse(text, "p.toml").unwrap_err();
        assert_eq!(e.line(), Some(3));
        assert!(e.to_string().contains("control character"), "{e}");
        assert!(Policy::parse(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a b\"\n",
            "p.toml"
        )
        .is_ok());
    }

    /// Found by the policy fuzz target: a multi-line string quoted in an error message broke
    /// the one-line error the reload log and `vgpu-sched check` print.
    #[test]
    fn an_error_quoting_a_multi_line_string_stays_one_line() {
        let e = Policy::parse("policy = \"\"\"\nbest\neffort\"\"\"\n", "p.toml").unwrap_err();
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{shown:?}");
        assert!(shown.contains("best\\neffort"), "{shown}");
        assert_eq!(e.line(), Some(1));
    }

    #[test]
    fn full_file_parses() {
        let p = Policy::parse(
            &format!(
                r#"
policy = "weighted"
timeslice = "1ms"
balance_period = "50ms"

[[tenant]]
name = "a"
vgpus = ["{UUID_A}"]
weight = 3
min_share = 10
max_share = "80%"
timeslice = 4000
priority = "high"

[[tenant]]
name = "b"
gfids = [2, 3]
"#
            ),
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.kind, PolicyKind::Weighted);
        assert_eq!(p.timeslice, Duration::from_millis(1));
        assert_eq!(p.balance_period, Duration::from_millis(50));
        assert_eq!(p.tenants[0].weight, 3);
        assert_eq!(p.tenants[0].min_share, 0.1);
        assert_eq!(p.tenants[0].max_share, 0.8);
        assert_eq!(p.tenants[0].priority, Priority::High);
        assert_eq!(p.timeslice_of(0), Duration::from_millis(4));
        assert_eq!(p.timeslice_of(1), Duration::from_millis(1));
        assert_eq!(p.tenants[1].gfids, vec![2, 3]);
        assert_eq!(p.tenant_of_gfid(3), Some(1));
        assert_eq!(p.tenants[1].max_share, 1.0);
    }

    #[test]
    fn defaults_apply() {
        let p = Policy::parse("policy = \"best_effort\"\n", "p.toml").unwrap();
        assert_eq!(p.timeslice, DEFAULT_TIMESLICE);
        assert_eq!(p.balance_period, DEFAULT_BALANCE_PERIOD);
        assert!(p.tenants.is_empty());
    }

    #[test]
    fn missing_tenant_name() {
        refused(
            "policy = \"weighted\"\n\n[[tenant]]\ngfids = [1]\n",
            3,
            "missing `name`",
        );
    }

    #[test]
    fn tenant_without_vgpus_or_gfids_owns_what_binds_to_its_name() {
        let p = Policy::parse(
            "policy = \"weighted\"\n[[tenant]]\nname = \"x\"\nweight = 2\n",
            "p.toml",
        )
        .unwrap();
        assert!(p.tenants[0].vgpus.is_empty() && p.tenants[0].gfids.is_empty());
    }

    #[test]
    fn unknown_policy() {
        refused("# c\npolicy = \"fair\"\n", 2, "unknown policy `fair`");
        refused("timeslice = \"1ms\"\n", 1, "missing `policy`");
    }

    #[test]
    fn min_shares_over_100_percent() {
        refused(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\nmin_share = 60\n\
             [[tenant]]\nname = \"b\"\ngfids = [2]\nmin_share = \"50%\"\n",
            9,
            "110%",
        );
    }

    #[test]
    fn duplicate_vgpu_and_gfid() {
        let msg = refused_at(
            &format!(
                "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\nvgpus = [\"{UUID_A}\"]\n\
                 [[tenant]]\nname = \"b\"\nvgpus = [\"{UUID_B}\",\n  \"{}\"]\n",
                UUID_A.to_uppercase()
            ),
            8,
        );
        assert!(
            msg.contains("duplicate vGPU") && msg.contains("line 4"),
            "{msg}"
        );
        refused(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1, 1]\n",
            4,
            "duplicate GFID 1",
        );
    }

    #[test]
    fn bad_units() {
        refused(
            "policy = \"weighted\"\ntimeslice = \"2 parsecs\"\n",
            2,
            "unknown unit `parsecs`",
        );
        refused(
            "policy = \"weighted\"\nbalance_period = \"100\"\n",
            2,
            "not a duration",
        );
        refused(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\nmin_share = \"ten\"\n",
            5,
            "not a share",
        );
    }

    #[test]
    fn min_above_max_and_ranges() {
        const TENANT_A: &str = "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\n";
        refused(
            &format!("{TENANT_A}gfids = [1]\nmax_share = 20\nmin_share = 30\n"),
            6,
            "above max_share",
        );
        for (text, line) in [
            (format!("{TENANT_A}gfids = [1]\nweight = 0\n"), 5),
            (format!("{TENANT_A}gfids = [0]\n"), 4),
            (
                "policy = \"weighted\"\ntimeslice = \"10us\"\n".to_string(),
                2,
            ),
            (
                "policy = \"weighted\"\ntimeslice = \"10ms\"\nbalance_period = \"5ms\"\n"
                    .to_string(),
                3,
            ),
            (format!("{TENANT_A}gfids = [1]\nmax_share = 101\n"), 5),
            (format!("{TENANT_A}gfids = [1]\npriority = \"urgent\"\n"), 5),
            (
                format!(
                    "{TENANT_A}vgpus = [\"{UUID_A}\"]\n[[tenant]]\nname = \"a\"\ngfids = [1]\n"
                ),
                6,
            ),
            (format!("{TENANT_A}vgpus = [\"nope\"]\n"), 4),
        ] {
            refused_at(&text, line);
        }
    }

    #[test]
    fn unknown_fields_and_syntax_errors_have_lines() {
        refused(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\nwieght = 2\n",
            5,
            "unknown field `wieght`",
        );
        refused_at("policy = \"weighted\"\n\n[[tenant]\n", 3);
    }

    #[test]
    fn unreadable_file_is_reported() {
        let e = Policy::load(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/nonexistent/policy.toml: cannot read"));
    }

    #[test]
    fn tenants_bind_to_users_groups_and_cgroups() {
        let p = Policy::parse(
            "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\nuids = [1000, 1001]\n\
             gids = [50]\ncgroup = \"/tenants/a\"\n[[tenant]]\nname = \"b\"\ngfids = [2]\n",
            "p.toml",
        )
        .unwrap();
        let a = &p.tenants[0].binding;
        assert_eq!(
            (a.uids.as_slice(), a.gids.as_slice()),
            (&[1000, 1001][..], &[50][..])
        );
        assert!(!a.is_open() && p.tenants[1].binding.is_open());
        // Every kind given must match; a cgroup matches itself and what is below it only.
        assert!(a.admits(1001, &[7, 50], Some("/tenants/a")));
        assert!(a.admits(1000, &[50], Some("/tenants/a/job-3")));
        assert!(!a.admits(1002, &[50], Some("/tenants/a")), "another user");
        assert!(!a.admits(1000, &[51], Some("/tenants/a")), "another group");
        assert!(
            !a.admits(1000, &[50], Some("/tenants/ab")),
            "a sibling cgroup"
        );
        assert!(!a.admits(1000, &[50], None), "an unknown cgroup");
        assert!(p.tenants[1].binding.admits(0, &[], None));
    }

    #[test]
    fn bad_bindings_are_refused_with_their_line() {
        const TENANT_A: &str = "policy = \"weighted\"\n[[tenant]]\nname = \"a\"\ngfids = [1]\n";
        refused(
            &format!("{TENANT_A}uids = [-1]\n"),
            5,
            "uid -1 is not a valid id",
        );
        refused(
            &format!("{TENANT_A}gids = [4294967296]\n"),
            5,
            "gid 4294967296 is not a valid id",
        );
        refused(
            &format!("{TENANT_A}cgroup = \"tenants/a\"\n"),
            5,
            "must be an absolute cgroup v2 path",
        );
    }
}
