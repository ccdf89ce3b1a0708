//! loadgen as a user runs it, against an in-process RingMQ and, where installed (CI
//! installs them), against Mosquitto and nats-server: every scenario produces figures,
//! SLO verdicts set the exit status, and setup errors are clear.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use support::{free_port, have, output_within, text, wait_listening, Peer, BIN};

fn broker(tweak: impl FnOnce(&mut ringmq::EngineConfig)) -> ringmq::Node {
    let mut cfg = ringmq::EngineConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        pin: false,
        ..Default::default()
    };
    tweak(&mut cfg);
    ringmq::Node::start(cfg).expect("broker starts")
}

fn loadgen(addr: SocketAddr, args: &[&str]) -> (Output, serde_json::Value) {
    let timed = [&["--duration", "1s", "--warmup", "300ms", "--threads", "2"], args].concat();
    support::run(addr, &timed)
}

/// Every published message arrived exactly once and the histograms are filled.
fn assert_clean(out: &Output, j: &serde_json::Value) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let sent = j["sent"].as_u64().unwrap();
    assert!(sent > 0, "{j}");
    assert_eq!(j["lost"], 0, "{j}");
    assert_eq!(j["duplicates"], 0, "{j}");
    assert_eq!(j["unique"], j["expected"], "{j}");
    assert!(j["latency_us"]["count"].as_u64().unwrap() > 0, "{j}");
    assert!(j["latency_us"]["p50"].as_u64().unwrap() <= j["latency_us"]["p99"].as_u64().unwrap());
}

#[test]
fn fan_in_qos0_all_messages_arrive_and_slo_passes() {
    let node = broker(|_| {});
    let (out, j) = loadgen(node.local_addrs()[0], &["fan-in", "--rate", "4000", "--slo", "loss=0,p99<=5s"]);
    assert_clean(&out, &j);
    // 8 publishers at 4000 msg/s for 1.3 s: the schedule, not the broker, sets the count.
    let sent = j["sent"].as_u64().unwrap();
    assert!((4000..=6000).contains(&sent), "open loop sent {sent}");
    assert_eq!(j["expected"].as_u64().unwrap(), sent, "one wildcard subscriber gets everything");
    assert_eq!(j["slo"]["passed"], true);
    assert!(text(&out).contains("SLO loss=0,p99<=5s: PASS"));
}

#[test]
fn fan_out_qos1_v5_fills_the_ack_histogram() {
    let node = broker(|_| {});
    let (out, j) = loadgen(
        node.local_addrs()[0],
        &["fan-out", "--subscribers", "20", "--rate", "500", "--qos", "1", "--mqtt", "5"],
    );
    assert_clean(&out, &j);
    assert_eq!(j["expected"].as_u64().unwrap(), 20 * j["sent"].as_u64().unwrap());
    assert!(j["ack_latency_us"]["count"].as_u64().unwrap() > 0, "{j}");
}

#[test]
fn p2p_qos2_pairs_each_get_their_own_messages() {
    let node = broker(|_| {});
    let (out, j) = loadgen(node.local_addrs()[0], &["p2p", "--publishers", "6", "--rate", "600", "--qos", "2"]);
    assert_clean(&out, &j);
    assert_eq!(j["expected"], j["sent"], "{j}");
    assert!(j["ack_latency_us"]["count"].as_u64().unwrap() > 0);
}

/// Closed loop: publishers keep their in-flight window full. The broker acknowledges QoS 1
/// when it accepts a message, so a subscriber slower than the publishers loses messages
/// to its bounded session queue; the figures must still be complete and consistent.
#[test]
fn closed_loop_max_mode_runs() {
    let node = broker(|_| {});
    let (out, j) =
        loadgen(node.local_addrs()[0], &["fan-in", "--max", "--qos", "1", "--publishers", "2", "--inflight", "50"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(j["params"]["max"], true);
    assert_eq!(j["errors"], 0, "{j}");
    let (sent, unique, lost) =
        (j["sent"].as_u64().unwrap(), j["unique"].as_u64().unwrap(), j["lost"].as_u64().unwrap());
    assert!(sent > 1000 && unique > 0, "{j}");
    assert_eq!(unique + lost, j["expected"].as_u64().unwrap(), "{j}");
    assert!(j["ack_latency_us"]["count"].as_u64().unwrap() > 0, "{j}");
}

#[test]
fn failed_slo_names_the_breaking_figure_and_exits_1() {
    let node = broker(|_| {});
    let (out, j) = loadgen(node.local_addrs()[0], &["fan-in", "--rate", "1000", "--slo", "p99<=1us,loss=0"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("FAIL (p99<=1us: measured"), "{t}");
    assert_eq!(j["slo"]["passed"], false);
}

#[test]
fn conn_storm_connects_everyone_and_reports_the_time() {
    let node = broker(|_| {});
    let (out, j) = loadgen(node.local_addrs()[0], &["conn", "--subscribers", "300", "--connect-rate", "3000"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(j["connected"], 300, "{j}");
    assert!(j["connect_latency_us"]["count"].as_u64().unwrap() == 300);
    // 300 connections at 3000/s are scheduled over 0.1 s.
    assert!(j["connect_time_s"].as_f64().unwrap() >= 0.09, "{j}");
    assert!(text(&out).contains("connected 300 of 300"));
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (out, _) = loadgen(free, &["fan-in"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains(&format!("broker unreachable at {free}")), "{}", text(&out));
}

#[test]
fn refused_connack_reports_the_reason() {
    let node = broker(|c| c.limits.max_connections = 3);
    let (out, _) = loadgen(node.local_addrs()[0], &["fan-in", "--mqtt", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("CONNACK refused: 0x97 (quota exceeded)"), "{}", text(&out));
}

#[test]
fn descriptor_limit_too_low_is_refused_before_connecting() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args(["conn", "--subscribers", "5000", "--broker", "127.0.0.1:1"]);
    // SAFETY: setrlimit(2) is async-signal-safe; it lowers the child's descriptor limit.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: 1000, rlim_max: 1000 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let out = output_within(&mut cmd);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(t.contains("5000 connections") && t.contains("ulimit -n") && t.contains("is 1000"), "{t}");
}

#[test]
fn bad_flags_are_refused() {
    let (out, _) = loadgen("127.0.0.1:1".parse().unwrap(), &["fan-in", "--size", "8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--size 8"), "{}", text(&out));
    let (out, _) = loadgen("127.0.0.1:1".parse().unwrap(), &["fan-in", "--slo", "p99 about 2ms"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn hgrm_file_is_written() {
    let node = broker(|_| {});
    let path = std::env::temp_dir().join(format!("loadgen-{}.hgrm", std::process::id()));
    let out = output_within(
        Command::new(BIN)
            .args(["fan-in", "--rate", "1000", "--duration", "500ms", "--warmup", "100ms", "--quiet", "--broker"])
            .arg(node.local_addrs()[0].to_string())
            .arg("--hgrm")
            .arg(&path),
    );
    assert!(out.status.success(), "{}", text(&out));
    let t = std::fs::read_to_string(&path).unwrap();
    assert!(t.contains("Percentile") && t.contains("#[Max"), "{t}");
}

#[test]
fn works_against_mosquitto() {
    let Some((_peer, addr)) = support::mosquitto("") else { return };
    let (out, j) = loadgen(addr, &["fan-in", "--rate", "2000", "--qos", "1", "--mqtt", "5"]);
    assert_clean(&out, &j);
}

#[test]
fn works_against_nats_server() {
    if !have("nats-server") {
        return;
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("loadgen-nats-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nats.conf");
    std::fs::write(
        &conf,
        format!(
            "server_name: lg_nats\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: {:?} }}\nmqtt {{ listen: 127.0.0.1:{port} }}\n",
            free_port(),
            dir.join("store")
        ),
    )
    .unwrap();
    let child = Command::new("nats-server").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let _peer = Peer(child.expect("nats-server starts"));
    assert!(wait_listening(port), "nats-server did not listen");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // nats-server speaks MQTT 3.1.1 with QoS 0 and 1.
    let (out, j) = loadgen(addr, &["fan-in", "--rate", "2000", "--qos", "1"]);
    assert_clean(&out, &j);
}
