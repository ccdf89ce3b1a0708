//! SVG charts of runs, written as plain text: the end-to-end latency percentile curve in
//! HdrHistogram's style (x: the percentile on a log scale of 1/(1-p), y: ms) and the
//! distinct messages delivered in each second of the run. `--plot` draws the run just
//! done; `loadgen plot` overlays runs from the files their `--json` wrote, which carry both
//! (`percentile_curve`, `rate_per_second`).

use std::fmt::Write as _;
use std::path::Path;

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::args::PlotArgs;
use crate::report::Summary;

/// Decades of 1/(1-p) the curve spans: 10^0 (0%) to 10^5 (99.999%).
const DECADES: u32 = 5;
/// Curve points per decade.
const POINTS_PER_DECADE: u32 = 20;
/// Percentile ticks of the latency panel.
const PERCENTILE_TICKS: [&str; 7] = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"];
/// Line colours, one per series in turn.
const COLOURS: [&str; 8] = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

/// Width of the picture; each panel takes half.
const WIDTH: f64 = 1200.0;
/// Top of the panels (the title is above).
const PANELS_TOP: f64 = 50.0;
/// Height of a panel, its axis labels included.
const PANEL_HEIGHT: f64 = 420.0;
/// Plot area inside a panel: left, right, top and bottom margins.
const MARGIN: (f64, f64, f64, f64) = (80.0, 25.0, 30.0, 55.0);
/// Height of one legend line.
const LEGEND_LINE: f64 = 20.0;

/// The percentile curve of `h`: `(percentile in %, latency µs)` at points evenly spaced in
/// log10(1/(1-p)) from 0% to 99.999%; empty when `h` is.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let n = DECADES * POINTS_PER_DECADE;
    (0..=n)
        .map(|k| {
            let q = 1.0 - 10f64.powf(-f64::from(DECADES * k) / f64::from(n));
            // Percentiles like 99.9 rather than 99.90000000000001.
            ((q * 1e8).round() / 1e6, h.value_at_quantile(q))
        })
        .collect()
}

/// One run as drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name in the legend.
    pub label: String,
    /// What ran: scenario, load, broker.
    pub about: String,
    /// `(log10(1/(1-p)), latency ms)`.
    pub curve: Vec<(f64, f64)>,
    /// Messages delivered in each second.
    pub rate: Vec<u64>,
}

/// Reads a run from the JSON `--json` writes; the error says what is missing.
pub fn series(label: &str, v: &Value) -> Result<Series, String> {
    let points = v
        .get("percentile_curve")
        .and_then(Value::as_array)
        .ok_or("no \"percentile_curve\" array (written by --json of a loadgen that plots)")?;
    let mut curve = Vec::with_capacity(points.len());
    for (i, point) in points.iter().enumerate() {
        let pair = point.as_array().filter(|a| a.len() == 2);
        let parsed = pair.and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)));
        match parsed {
            Some((p, us)) if (0.0..100.0).contains(&p) && us >= 0.0 => {
                curve.push(((1.0 / (1.0 - p / 100.0)).log10(), us / 1000.0));
            }
            _ => return Err(format!("percentile_curve[{i}] is not [percentile below 100, latency_us]: {point}")),
        }
    }
    let counts = v
        .get("rate_per_second")
        .and_then(Value::as_array)
        .ok_or("no \"rate_per_second\" array (written by --json of a loadgen that plots)")?;
    let rate = counts
        .iter()
        .enumerate()
        .map(|(i, n)| n.as_u64().ok_or_else(|| format!("rate_per_second[{i}] is not a count: {n}")))
        .collect::<Result<Vec<u64>, String>>()?;
    Ok(Series { label: label.to_owned(), about: describe(v), curve, rate })
}

/// The run's parameters in one line, from its JSON.
pub fn describe(v: &Value) -> String {
    let p = &v["params"];
    let f = |key: &str| match &p[key] {
        Value::String(s) => s.clone(),
        Value::Null => "?".to_owned(),
        other => other.to_string(),
    };
    let load = if p["max"] == true {
        "closed loop".to_owned()
    } else if p["flood"] == true {
        "flood".to_owned()
    } else {
        format!("{} msg/s", f("rate"))
    };
    let cpus = match p["cpus"].as_array() {
        Some(c) if !c.is_empty() => {
            format!(" on CPU {}", c.iter().map(Value::to_string).collect::<Vec<_>>().join(","))
        }
        _ => String::new(),
    };
    format!(
        "{} | MQTT {} QoS {} | {} pub -> {} sub | {} B | {} | {} threads{} | {}",
        f("scenario"),
        f("mqtt"),
        f("qos"),
        f("publishers"),
        f("subscribers"),
        f("payload"),
        load,
        f("threads"),
        cpus,
        f("broker")
    )
}

/// `--plot`: draws the run just done, titled with its parameters.
pub fn write_run(summary: &Summary, path: &Path) -> Result<(), String> {
    let v = serde_json::to_value(summary).map_err(|e| e.to_string())?;
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "run".to_owned());
    let mut run = series(&label, &v)?;
    let title = std::mem::take(&mut run.about);
    std::fs::write(path, svg(&title, &[run])).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `loadgen plot`: overlays the runs of the JSON files given.
pub fn overlay(args: &PlotArgs) -> Result<(), String> {
    if !args.label.is_empty() && args.label.len() != args.files.len() {
        return Err(format!("{} labels for {} files", args.label.len(), args.files.len()));
    }
    let stems: Vec<String> = args
        .files
        .iter()
        .map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
        .collect();
    let mut runs = Vec::with_capacity(args.files.len());
    for (i, file) in args.files.iter().enumerate() {
        let label = match args.label.get(i) {
            Some(l) => l.clone(),
            // Two files of one name in different directories: their paths tell them apart.
            None if stems.iter().filter(|s| **s == stems[i]).count() > 1 || stems[i].is_empty() => {
                file.display().to_string()
            }
            None => stems[i].clone(),
        };
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", file.display()))?;
        runs.push(series(&label, &v).map_err(|e| format!("{}: {e}", file.display()))?);
    }
    let title = match &args.title {
        Some(t) => t.clone(),
        None => format!("loadgen: {}", runs.iter().map(|r| r.label.as_str()).collect::<Vec<_>>().join(" vs ")),
    };
    let out = &args.output;
    std::fs::write(out, svg(&title, &runs)).map_err(|e| format!("cannot write {}: {e}", out.display()))
}

/// One axis: its range, ticks (position, label) and name.
struct Axis {
    min: f64,
    max: f64,
    ticks: Vec<(f64, String)>,
    name: &'static str,
}

/// A linear axis from 0 to a round number at or above `top`, with about five ticks
/// labelled by `label`; `whole`: steps of at least 1.
fn linear(top: f64, whole: bool, name: &'static str, label: impl Fn(f64, f64) -> String) -> Axis {
    let top = if top.is_finite() && top > 0.0 { top } else { 1.0 };
    let raw = top / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    if whole {
        step = step.max(1.0);
    }
    let steps = (top / step - 1e-9).ceil().max(1.0) as u32;
    let ticks = (0..=steps).map(|k| f64::from(k) * step).map(|v| (v, label(v, step))).collect();
    Axis { min: 0.0, max: f64::from(steps) * step, ticks, name }
}

/// `v` with as many decimals as `step` needs.
fn decimals(v: f64, step: f64) -> String {
    let d = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    format!("{v:.d$}")
}

/// A count with k or M for thousands and millions.
fn count(v: f64, _step: f64) -> String {
    let (scaled, unit) = match v {
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    let mut s = format!("{scaled:.2}");
    while s.contains('.') && (s.ends_with('0') || s.ends_with('.')) {
        s.pop();
    }
    s + unit
}

/// Text for XML: `&`, `<`, `>` and `"` escaped.
fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// Draws one panel at horizontal offset `left`: frame, grid, ticks, axis names and one
/// polyline per series (`points` in axis units).
fn panel(o: &mut String, id: &str, title: &str, left: f64, x: &Axis, y: &Axis, lines: &[(&Series, Vec<(f64, f64)>)]) {
    let (ml, mr, mt, mb) = MARGIN;
    let (x0, y0) = (left + ml, PANELS_TOP + mt);
    let (w, h) = (WIDTH / 2.0 - ml - mr, PANEL_HEIGHT - mt - mb);
    let px = |v: f64| x0 + (v - x.min) / (x.max - x.min) * w;
    let py = |v: f64| y0 + h - (v - y.min) / (y.max - y.min) * h;
    let _ = writeln!(o, r#"<g class="panel" id="{id}">"#);
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-weight="bold">{}</text>"#,
        x0 + w / 2.0,
        y0 - 10.0,
        escape(title)
    );
    let _ =
        writeln!(o, r##"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="#fff" stroke="#444"/>"##);
    for (v, label) in &x.ticks {
        let at = px(*v);
        let _ = writeln!(
            o,
            r##"<line x1="{at:.1}" y1="{y0:.1}" x2="{at:.1}" y2="{:.1}" stroke="#ddd"/><text x="{at:.1}" y="{:.1}" text-anchor="middle" font-size="12">{}</text>"##,
            y0 + h,
            y0 + h + 16.0,
            escape(label)
        );
    }
    for (v, label) in &y.ticks {
        let at = py(*v);
        let _ = writeln!(
            o,
            r##"<line x1="{x0:.1}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end" font-size="12">{}</text>"##,
            x0 + w,
            x0 - 6.0,
            at + 4.0,
            escape(label)
        );
    }
    let _ = writeln!(
        o,
        r#"<text class="axis-label" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        x0 + w / 2.0,
        y0 + h + 40.0,
        escape(x.name)
    );
    let (ax, ay) = (left + 20.0, y0 + h / 2.0);
    let _ = writeln!(
        o,
        r#"<text class="axis-label" x="{ax:.1}" y="{ay:.1}" text-anchor="middle" transform="rotate(-90 {ax:.1} {ay:.1})">{}</text>"#,
        escape(y.name)
    );
    for (i, (run, points)) in lines.iter().enumerate() {
        let mut list = String::new();
        for (vx, vy) in points {
            if !list.is_empty() {
                list.push(' ');
            }
            let _ = write!(list, "{:.1},{:.1}", px(*vx), py(*vy));
        }
        let _ = writeln!(
            o,
            r#"<polyline class="series" data-label="{}" fill="none" stroke="{}" stroke-width="1.8" stroke-linejoin="round" points="{list}"/>"#,
            escape(&run.label),
            COLOURS[i % COLOURS.len()]
        );
    }
    let _ = writeln!(o, "</g>");
}

/// The SVG of `runs`: latency percentiles on the left, delivered messages per second on
/// the right, a legend below naming each run.
pub fn svg(title: &str, runs: &[Series]) -> String {
    let legend_top = PANELS_TOP + PANEL_HEIGHT + 10.0;
    let height = legend_top + LEGEND_LINE * runs.len() as f64 + 10.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="14">"#
    );
    let _ = writeln!(o, "<title>{}</title>", escape(title));
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fafafa"/>"##);
    let _ = writeln!(
        o,
        r#"<text class="title" x="{:.1}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    let decade = |i: usize| i.checked_sub(1).map_or(0.0, |d| if d == 0 { 2f64.log10() } else { d as f64 });
    let x = Axis {
        min: 0.0,
        max: f64::from(DECADES),
        ticks: PERCENTILE_TICKS.iter().enumerate().map(|(i, t)| (decade(i), (*t).to_owned())).collect(),
        name: "percentile",
    };
    let top = runs.iter().flat_map(|r| r.curve.iter().map(|p| p.1)).fold(0.0, f64::max);
    let y = linear(top, false, "latency (ms)", decimals);
    let lines: Vec<_> = runs.iter().map(|r| (r, r.curve.clone())).collect();
    panel(&mut o, "latency", "End-to-end latency by percentile", 0.0, &x, &y, &lines);
    let seconds = runs.iter().map(|r| r.rate.len()).max().unwrap_or(0).max(1);
    let x = linear(seconds as f64, true, "seconds since start (s)", decimals);
    let top = runs.iter().flat_map(|r| r.rate.iter().copied()).max().unwrap_or(0);
    let y = linear(top as f64, true, "delivered (msg/s)", count);
    // Steps: each second's count held over the whole second.
    let lines: Vec<_> = runs
        .iter()
        .map(|r| {
            let steps =
                r.rate.iter().enumerate().flat_map(|(i, n)| [(i as f64, *n as f64), ((i + 1) as f64, *n as f64)]);
            (r, steps.collect())
        })
        .collect();
    panel(&mut o, "rate", "Delivered messages per second", WIDTH / 2.0, &x, &y, &lines);
    let _ = writeln!(o, r#"<g class="legend">"#);
    for (i, run) in runs.iter().enumerate() {
        let at = legend_top + LEGEND_LINE * (i as f64 + 0.5);
        let text = if run.about.is_empty() {
            escape(&run.label)
        } else {
            format!("{}: {}", escape(&run.label), escape(&run.about))
        };
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{at:.1}" x2="{:.1}" y2="{at:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{text}</text>"#,
            MARGIN.0,
            MARGIN.0 + 30.0,
            COLOURS[i % COLOURS.len()],
            MARGIN.0 + 38.0,
            at + 5.0
        );
    }
    let _ = writeln!(o, "</g>");
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve_spans_the_decades_and_never_falls() {
        let mut h = crate::stats::histogram();
        for v in 1..=100_000u64 {
            h.record(v).unwrap();
        }
        let c = curve(&h);
        assert_eq!(c.len(), 101);
        assert_eq!(c[0].0, 0.0);
        assert_eq!(c[20].0, 90.0);
        assert_eq!(c[100].0, 99.999);
        assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{c:?}");
        assert!(curve(&crate::stats::histogram()).is_empty());
    }

    #[test]
    fn axes_round_up_and_label_their_units() {
        let a = linear(7.3, false, "latency (ms)", decimals);
        assert_eq!(a.max, 8.0);
        assert_eq!(a.ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["0", "2", "4", "6", "8"]);
        let a = linear(0.042, false, "ms", decimals);
        assert_eq!(a.ticks.last().unwrap().1, "0.05");
        let a = linear(3.0, true, "s", decimals);
        assert_eq!(a.max, 3.0);
        assert_eq!(count(125_000.0, 1.0), "125k");
        assert_eq!(count(1_500_000.0, 1.0), "1.5M");
        assert_eq!(count(0.0, 1.0), "0");
    }

    #[test]
    fn series_needs_both_fields_and_sane_points() {
        let ok = serde_json::json!({"percentile_curve": [[0.0, 100], [90.0, 250]], "rate_per_second": [3, 4]});
        let s = series("a", &ok).unwrap();
        assert_eq!(s.curve, vec![(0.0, 0.1), (1.0, 0.25)]);
        assert_eq!(s.rate, vec![3, 4]);
        assert!(series("a", &serde_json::json!({"rate_per_second": []})).unwrap_err().contains("percentile_curve"));
        assert!(series("a", &serde_json::json!({"percentile_curve": []})).unwrap_err().contains("rate_per_second"));
        let bad = serde_json::json!({"percentile_curve": [[100.0, 1]], "rate_per_second": []});
        assert!(series("a", &bad).unwrap_err().contains("percentile_curve[0]"));
    }

    #[test]
    fn svg_escapes_labels() {
        let run = Series { label: "a<b&c".into(), about: String::new(), curve: vec![(0.0, 1.0)], rate: vec![1] };
        let s = svg("t \"q\"", &[run]);
        assert!(s.contains("a&lt;b&amp;c") && s.contains("t &quot;q&quot;") && !s.contains("a<b"), "{s}");
    }
}
