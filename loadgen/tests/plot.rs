//! `--plot`, `loadgen plot` and `--cpus`: a short run against an in-process RingMQ writes an
//! SVG of two panels and a JSON with the curve and the per-second tally, two such files
//! overlay in one SVG, and bad input (a missing or curve-less file, a CPU the process may
//! not use) is refused naming it. Structure only: nothing here depends on timing.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{output_within, text, BIN};

fn broker() -> ringmq::Node {
    let cfg = ringmq::EngineConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        pin: false,
        ..Default::default()
    };
    ringmq::Node::start(cfg).expect("broker starts")
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("loadgen-plot-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn loadgen(args: &[&str]) -> Output {
    output_within(Command::new(BIN).args(args))
}

/// A short bounded run writing `<name>.json` and `<name>.svg` in `dir`; returns the JSON.
fn run(node: &ringmq::Node, dir: &Path, name: &str, extra: &[&str]) -> serde_json::Value {
    let (json, svg) = (dir.join(format!("{name}.json")), dir.join(format!("{name}.svg")));
    let broker = node.local_addrs()[0].to_string();
    let mut args = vec!["fan-in", "--broker", &broker, "-p", "2", "--rate", "400", "--duration", "1", "--warmup", "0"];
    args.extend(["--threads", "1", "--quiet", "--json", json.to_str().unwrap(), "--plot", svg.to_str().unwrap()]);
    args.extend(extra);
    let out = loadgen(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// The points of every `<polyline` in `svg`, in order.
fn polylines(svg: &str) -> Vec<Vec<(f64, f64)>> {
    svg.split("<polyline")
        .skip(1)
        .map(|rest| {
            let points = rest.split("points=\"").nth(1).and_then(|p| p.split('"').next()).expect("a points list");
            points
                .split_whitespace()
                .map(|xy| {
                    let (x, y) = xy.split_once(',').expect("x,y");
                    (x.parse().expect("x"), y.parse().expect("y"))
                })
                .collect()
        })
        .collect()
}

/// Checks the shape of a plot of `series` runs: an `<svg>` document with two panels, one
/// line per run in each with points, axis units, percentile ticks, and the labels.
fn assert_plot(svg: &str, series: usize, labels: &[&str]) {
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"), "{svg}");
    assert_eq!(svg.matches("<svg").count(), 1);
    assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count(), "balanced groups");
    assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count(), "balanced text");
    assert_eq!(svg.matches(r#"<g class="panel""#).count(), 2, "{svg}");
    let latency = svg.split(r#"<g class="panel" id="latency">"#).nth(1).expect("latency panel");
    let rate = svg.split(r#"<g class="panel" id="rate">"#).nth(1).expect("rate panel");
    let in_panel = |p: &str| polylines(p.split("</g>").next().unwrap());
    for (name, lines) in [("latency", in_panel(latency)), ("rate", in_panel(rate))] {
        assert_eq!(lines.len(), series, "{name}: {svg}");
        assert!(lines.iter().all(|l| l.len() >= 2), "{name}: every series has points: {svg}");
    }
    assert!(svg.contains("latency (ms)") && svg.contains("msg/s") && svg.contains("seconds"), "{svg}");
    for tick in ["50%", "90%", "99%", "99.9%", "99.99%", "99.999%"] {
        assert!(svg.contains(&format!(">{tick}</text>")), "tick {tick}: {svg}");
    }
    let legend = svg.split(r#"<g class="legend">"#).nth(1).expect("legend");
    for label in labels {
        assert!(legend.contains(label), "legend names {label}: {legend}");
    }
}

/// The new JSON fields: a percentile curve rising in percentile and never falling in
/// latency, a per-second tally of at most what was received, each second's longest
/// latency and loadgen's own send lag.
/// The array of whole numbers `key` of a run's JSON.
fn counts(j: &serde_json::Value, key: &str) -> Vec<u64> {
    let a = j[key].as_array().unwrap_or_else(|| panic!("no array {key}: {j}"));
    a.iter().map(|n| n.as_u64().unwrap_or_else(|| panic!("{key}: {n} is not a count"))).collect()
}

fn assert_curve_fields(j: &serde_json::Value) {
    let curve = j["percentile_curve"].as_array().expect("percentile_curve");
    assert!(curve.len() >= 50, "{j}");
    let points: Vec<(f64, u64)> = curve.iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_u64().unwrap())).collect();
    assert_eq!(points[0].0, 0.0);
    assert_eq!(points.last().unwrap().0, 99.999);
    assert!(points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "{points:?}");
    assert!(points.last().unwrap().1 <= j["latency_us"]["max"].as_u64().unwrap());
    let rate = counts(j, "rate_per_second");
    assert!(!rate.is_empty() && rate.iter().sum::<u64>() > 0, "{j}");
    assert!(rate.iter().sum::<u64>() <= j["received"].as_u64().unwrap(), "{j}");
    // The longest latency of each second: as many seconds, and (warm-up included) at least
    // the longest measured one, within the histogram's precision.
    let worst = counts(j, "max_latency_per_second_us");
    assert_eq!(worst.len(), rate.len(), "{j}");
    let longest = *worst.iter().max().unwrap() as f64;
    assert!(longest >= 0.98 * j["latency_us"]["max"].as_u64().unwrap() as f64, "{worst:?} against {j}");
    // How late loadgen sent: a message arrives after it was sent, so no second's send lag
    // passes that second's longest latency (every message is delivered here).
    let lag = counts(j, "send_lag_per_second_us");
    assert_eq!(lag.len(), rate.len(), "{j}");
    assert!(lag.iter().zip(&worst).all(|(l, w)| l <= w), "lag {lag:?} against latency {worst:?}");
    // The figures other scripts read are still there.
    for key in ["received_rate", "latency_us", "lost", "acked_lost", "sent", "unique"] {
        assert!(!j[key].is_null(), "{key}: {j}");
    }
}

/// The first CPU this process may run on.
fn some_allowed_cpu() -> usize {
    // SAFETY: cpu_set_t is plain bits; sched_getaffinity(2) fills the one we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set), 0);
        (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)).expect("some CPU")
    }
}

#[test]
fn a_run_plots_and_two_runs_overlay() {
    let node = broker();
    let dir = scratch("overlay");
    let cpu = some_allowed_cpu().to_string();
    let a = run(&node, &dir, "alpha", &[]);
    let b = run(&node, &dir, "beta", &["--qos", "1", "--cpus", &cpu]);
    for j in [&a, &b] {
        assert_curve_fields(j);
    }
    assert_eq!(a["params"]["cpus"], serde_json::json!([]), "unpinned without --cpus");
    assert_eq!(b["params"]["cpus"], serde_json::json!([cpu.parse::<u64>().unwrap()]));
    let svg = std::fs::read_to_string(dir.join("alpha.svg")).unwrap();
    assert_plot(&svg, 1, &["alpha"]);
    // The title carries the run's parameters.
    let title = svg.split("<title>").nth(1).and_then(|t| t.split("</title>").next()).unwrap();
    let broker = node.local_addrs()[0].to_string();
    assert!(title.contains("fan-in") && title.contains("400 msg/s") && title.contains(&broker), "{title}");
    let svg_b = std::fs::read_to_string(dir.join("beta.svg")).unwrap();
    assert_plot(&svg_b, 1, &["beta"]);
    assert!(svg_b.contains(&format!("on CPU {cpu}")), "{svg_b}");

    let cmp = dir.join("cmp.svg");
    let (ja, jb) = (dir.join("alpha.json"), dir.join("beta.json"));
    let out = loadgen(&["plot", ja.to_str().unwrap(), jb.to_str().unwrap(), "-o", cmp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let svg = std::fs::read_to_string(&cmp).unwrap();
    assert_plot(&svg, 2, &["alpha", "beta"]);
    assert!(svg.contains("QoS 0") && svg.contains("QoS 1"), "the legend tells the runs apart: {svg}");

    // --label names the lines instead of the file stems.
    let out =
        loadgen(&["plot", ja.to_str().unwrap(), jb.to_str().unwrap(), "-o", cmp.to_str().unwrap(), "--label", "q0,q1"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let svg = std::fs::read_to_string(&cmp).unwrap();
    assert_plot(&svg, 2, &["q0", "q1"]);
    let out = loadgen(&["plot", ja.to_str().unwrap(), "-o", cmp.to_str().unwrap(), "--label", "x,y"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("2 labels for 1 files"), "{}", text(&out));
}

#[test]
fn plot_refuses_missing_invalid_and_curveless_files_naming_them() {
    let dir = scratch("refuse");
    let out_svg = dir.join("x.svg");
    let missing = dir.join("missing.json");
    let out = loadgen(&["plot", missing.to_str().unwrap(), "-o", out_svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(missing.to_str().unwrap()), "{}", text(&out));
    let garbage = dir.join("garbage.json");
    std::fs::write(&garbage, "not json {").unwrap();
    let old = dir.join("old.json");
    std::fs::write(&old, r#"{"received_rate": 1.0, "latency_us": {"p99": 3}}"#).unwrap();
    for (file, why) in [(&garbage, "not JSON"), (&old, "percentile_curve")] {
        let out = loadgen(&["plot", file.to_str().unwrap(), "-o", out_svg.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let t = text(&out);
        assert!(t.contains(file.to_str().unwrap()) && t.contains(why), "{t}");
    }
    assert!(!out_svg.exists(), "nothing written for bad input");
}

#[test]
fn cpus_the_process_may_not_use_are_refused() {
    // Refused before connecting: the broker address is never tried.
    let out = loadgen(&["fan-in", "--broker", "127.0.0.1:1", "--cpus", "9999"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("--cpus 9999") && t.contains("may not run on CPU 9999"), "{t}");
    assert!(!t.contains("unreachable"), "{t}");
    for bad in ["3-1", "0,x", ""] {
        let out = loadgen(&["fan-in", "--broker", "127.0.0.1:1", "--cpus", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", text(&out));
        assert!(text(&out).contains("--cpus"), "{bad:?}: {}", text(&out));
    }
}
