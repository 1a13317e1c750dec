//! SVG timeline of a scheduler log: one row per runlist with a coloured bar for each stretch a
//! tenant ran (like the seed diagrams of TSGs taking turns), a time axis, reload markers, a row
//! of per-window shares, and a legend. Plain SVG 1.1 that opens in any browser, built with the
//! `svg` crate.

use std::collections::BTreeSet;
use std::time::Duration;

use svg::node::element::{Line, Rectangle, Text, Title};
use svg::Document;

use crate::log::{Record, SchedLog};
use crate::units::format_duration;

/// Which part of the log to draw.
#[derive(Debug, Clone, Copy, Default)]
pub struct TimelineOptions {
    /// Start of the drawn range (None: the first record).
    pub from: Option<Duration>,
    /// End of the drawn range (None: the last record).
    pub to: Option<Duration>,
}

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;
const ROW: f64 = 34.0;
const TOP: f64 = 50.0;

/// Colour of the `i`-th tenant: hues spread by the golden angle so neighbours differ.
pub fn tenant_colour(i: usize) -> String {
    let hue = (i as f64 * 137.508) % 360.0;
    let light = if i.is_multiple_of(2) { 52 } else { 40 };
    format!("hsl({hue:.0},65%,{light}%)")
}

/// A tick step of 1, 2 or 5 times a power of ten giving about `target` ticks over `span` ns.
fn tick_step(span: f64, target: f64) -> f64 {
    let raw = (span / target).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// Renders the log as an SVG document.
pub fn render_svg(log: &SchedLog, opts: TimelineOptions) -> String {
    let mut tenants: Vec<String> = Vec::new();
    let mut title = String::new();
    let mut aggregated = false;
    let mut runlists = BTreeSet::new();
    let (mut t_min, mut t_max) = (u64::MAX, 0u64);
    for r in &log.records {
        match r {
            Record::Start(s) => {
                aggregated |= s.method == "timeslice";
                for t in &s.tenants {
                    if !tenants.contains(t) {
                        tenants.push(t.clone());
                    }
                }
                if title.is_empty() {
                    title = format!("policy {} by {}", s.policy, s.method);
                }
                runlists.extend(s.runlists.iter().copied());
            }
            Record::Slice(s) => {
                runlists.insert(s.runlist);
                t_min = t_min.min(s.timestamp_ns);
                t_max = t_max.max(s.timestamp_ns + s.time_run_ns);
                if !tenants.contains(&s.tenant) {
                    tenants.push(s.tenant.clone());
                }
            }
            Record::Window(w) => {
                t_min = t_min.min(w.start_ns);
                t_max = t_max.max(w.end_ns);
            }
            Record::Reload(_) => {}
        }
    }
    if t_min == u64::MAX {
        t_min = 0;
        t_max = 1;
    }
    let from = opts.from.map_or(t_min, |d| d.as_nanos() as u64);
    let to = opts.to.map_or(t_max, |d| d.as_nanos() as u64).max(from + 1);
    let span = (to - from) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let x = |t: u64| LEFT + (t.saturating_sub(from) as f64).min(span) / span * plot_w;
    let runlists: Vec<u32> = runlists.into_iter().collect();
    let rows = runlists.len() + 1;
    let axis_y = TOP + rows as f64 * ROW + 6.0;
    let note_y = axis_y + 34.0;
    let legend_y = note_y + if aggregated { 22.0 } else { 0.0 };
    let legend_rows = tenants.len().div_ceil(6).max(1);
    let height = legend_y + legend_rows as f64 * 20.0 + 10.0;
    let colour_of = |name: &str| {
        tenants
            .iter()
            .position(|t| t == name)
            .map(tenant_colour)
            .unwrap_or_else(|| "#888".into())
    };

    let mut doc = Document::new()
        .set("width", WIDTH)
        .set("height", height.round())
        .set("viewBox", (0.0, 0.0, WIDTH, height.round()))
        .set("font-family", "sans-serif")
        .set("font-size", 12)
        .add(
            Rectangle::new()
                .set("width", "100%")
                .set("height", "100%")
                .set("fill", "white"),
        )
        .add(
            label(
                LEFT,
                22.0,
                &format!(
                    "vGPU scheduler timeline: {title} ({} to {})",
                    format_duration(Duration::from_nanos(from)),
                    format_duration(Duration::from_nanos(to))
                ),
            )
            .set("font-size", 15)
            .set("font-weight", "bold"),
        );

    for (row, rl) in runlists.iter().enumerate() {
        let y = TOP + row as f64 * ROW;
        doc = doc
            .add(bar(LEFT, y, plot_w, ROW - 6.0, "#f2f2f2"))
            .add(label(8.0, y + ROW / 2.0, &format!("runlist {rl}")));
        // Merge back-to-back stretches of one tenant so long runs are one element.
        let mut open: Option<(String, u64, u64)> = None;
        let mut bars = Vec::new();
        for s in log.slices().filter(|s| s.runlist == *rl) {
            let (a, b) = (s.timestamp_ns, s.timestamp_ns + s.time_run_ns);
            if b <= from || a >= to || s.time_run_ns == 0 {
                continue;
            }
            match &mut open {
                Some((t, _, end)) if *t == s.tenant && a <= *end + 1 => *end = (*end).max(b),
                _ => {
                    if let Some(o) = open.take() {
                        bars.push(o);
                    }
                    open = Some((s.tenant.clone(), a, b));
                }
            }
        }
        bars.extend(open);
        for (tenant, a, b) in bars {
            let (xa, xb) = (x(a.max(from)), x(b.min(to)));
            doc = doc.add(
                bar(xa, y, (xb - xa).max(0.05), ROW - 6.0, &colour_of(&tenant)).add(Title::new(
                    format!(
                        "{tenant} {}+{}",
                        format_duration(Duration::from_nanos(a)),
                        format_duration(Duration::from_nanos(b - a))
                    ),
                )),
            );
        }
    }

    // Per-window shares, stacked.
    let y = TOP + runlists.len() as f64 * ROW;
    let h = ROW - 6.0;
    doc =
        doc.add(bar(LEFT, y, plot_w, h, "#f2f2f2"))
            .add(label(8.0, y + ROW / 2.0, "share/window"));
    for w in log.windows() {
        if w.end_ns <= from || w.start_ns >= to {
            continue;
        }
        let (xa, xb) = (x(w.start_ns.max(from)), x(w.end_ns.min(to)));
        let mut acc = 0.0;
        for t in &w.tenants {
            if t.share <= 0.0 {
                continue;
            }
            doc = doc.add(
                bar(
                    xa,
                    y + acc * h,
                    (xb - xa).max(0.05),
                    t.share * h,
                    &colour_of(&t.tenant),
                )
                .add(Title::new(format!(
                    "{}: {:.1}% (target {:.1}%)",
                    t.tenant,
                    t.share * 100.0,
                    t.target * 100.0
                ))),
            );
            acc += t.share;
        }
    }

    // Reloads.
    for r in &log.records {
        if let Record::Reload(rl) = r {
            if rl.timestamp_ns < from || rl.timestamp_ns > to {
                continue;
            }
            let xr = x(rl.timestamp_ns);
            let (colour, text) = match rl.applied {
                true => ("#000", "reload"),
                false => ("#c00", "reload refused"),
            };
            doc = doc
                .add(
                    line(xr, TOP - 8.0, xr, axis_y, colour)
                        .set("stroke-dasharray", "4,3")
                        .add(Title::new(rl.message.as_str())),
                )
                .add(label(xr + 3.0, TOP - 8.0, text).set("fill", colour));
        }
    }

    // Time axis.
    doc = doc.add(line(LEFT, axis_y, WIDTH - RIGHT, axis_y, "black"));
    let step = tick_step(span, 10.0);
    let mut t = (from as f64 / step).ceil() * step;
    while t <= to as f64 {
        let xt = x(t as u64);
        doc = doc.add(line(xt, axis_y, xt, axis_y + 5.0, "black")).add(
            label(
                xt,
                axis_y + 18.0,
                &format_duration(Duration::from_nanos(t as u64)),
            )
            .set("text-anchor", "middle"),
        );
        t += step;
    }

    if aggregated {
        doc = doc.add(
            label(
                LEFT,
                note_y,
                "Under the timeslice method the GPU's own round robin switches: bars there are \
                 each tenant's total per 10 ms, in turn.",
            )
            .set("fill", "#555"),
        );
    }

    // Legend.
    for (i, name) in tenants.iter().enumerate() {
        let lx = LEFT + (i % 6) as f64 * 175.0;
        let ly = legend_y + (i / 6) as f64 * 20.0;
        doc = doc
            .add(bar(lx, ly - 10.0, 12.0, 12.0, &tenant_colour(i)))
            .add(label(lx + 16.0, ly, name));
    }
    format!("{doc}\n")
}

/// Coordinates to a hundredth of a pixel, which keeps the file small.
fn px(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn bar(x: f64, y: f64, w: f64, h: f64, fill: &str) -> Rectangle {
    Rectangle::new()
        .set("x", px(x))
        .set("y", px(y))
        .set("width", px(w))
        .set("height", px(h))
        .set("fill", fill)
}

fn line(x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) -> Line {
    Line::new()
        .set("x1", px(x1))
        .set("y1", px(y1))
        .set("x2", px(x2))
        .set("y2", px(y2))
        .set("stroke", stroke)
}

/// Text at `(x, y)`; the `svg` crate escapes it.
fn label(x: f64, y: f64, text: &str) -> Text {
    Text::new(text).set("x", px(x)).set("y", px(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{slice, StartRecord};

    #[test]
    fn draws_rows_bars_axis_and_legend() {
        let mut log = SchedLog::default();
        log.push(Record::Start(StartRecord {
            timestamp_ns: 0,
            policy: "weighted".into(),
            method: "gating".into(),
            tenants: vec!["a<1>".into(), "b".into()],
            runlists: vec![0],
        }));
        log.push(slice(0, "a<1>", 1_000_000));
        log.push(slice(1_000_000, "a<1>", 1_000_000));
        log.push(slice(2_000_000, "b", 1_000_000));
        let svg = render_svg(&log, TimelineOptions::default());
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("runlist 0"));
        assert!(svg.contains("a&lt;1&gt;"), "names are escaped");
        // The two back-to-back stretches of a are merged into one bar.
        assert_eq!(svg.matches("<title>a&lt;1&gt; ").count(), 1);
        assert_eq!(svg.matches("<title>b ").count(), 1);
        assert!(svg.contains(&tenant_colour(1)));
        assert!(svg.contains(">\n3ms\n<"), "axis reaches the end");
    }

    #[test]
    fn range_selection_drops_bars_outside() {
        let mut log = SchedLog::default();
        log.push(slice(0, "a", 1_000_000));
        log.push(slice(5_000_000, "b", 1_000_000));
        let svg = render_svg(
            &log,
            TimelineOptions {
                from: Some(Duration::from_millis(4)),
                to: None,
            },
        );
        assert!(!svg.contains("<title>a "));
        assert!(svg.contains("<title>b "));
    }

    #[test]
    fn tick_steps_are_round() {
        assert_eq!(tick_step(10e9, 10.0), 1e9);
        assert_eq!(tick_step(3e6, 10.0), 5e5);
    }
}
