//! clientgen, the second load generator: against an in-process RingMQ it delivers and
//! counts every message (p2p at each QoS, fan-in, fan-out) and writes the figures
//! compare.sh reads; against a broker that
//! drops acknowledged messages it reports the loss and exits 1; bad input is refused naming
//! the flag. Nothing here depends on timing: rates are low and only counts are asserted.

#[path = "../../loadgen/tests/support/lossy.rs"]
mod lossy;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_clientgen");
/// Every run here ends on its own within seconds; only a hang reaches this.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn broker() -> ringmq::Node {
    let cfg = ringmq::EngineConfig {
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        shards: 2,
        pin: false,
        ..Default::default()
    };
    ringmq::Node::start(cfg).expect("broker starts")
}

/// Runs clientgen with `args` against `addr`, killed and named past [`RUN_LIMIT`]; returns
/// its output and its JSON (`null` when it wrote none).
fn clientgen(broker: &str, args: &[&str]) -> (Output, serde_json::Value) {
    let tag: String = broker.chars().filter(char::is_ascii_alphanumeric).collect();
    let json = std::env::temp_dir().join(format!("clientgen-test-{}-{tag}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let mut child = Command::new(BIN)
        .arg("--broker")
        .arg(broker)
        .arg("--json")
        .arg(&json)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("clientgen starts");
    let deadline = Instant::now() + RUN_LIMIT;
    while child.try_wait().expect("clientgen can be waited for").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("clientgen {args:?} still running after {RUN_LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("clientgen's output");
    let value = std::fs::read_to_string(&json).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    (out, value)
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn delivers_and_counts_every_message_at_each_qos() {
    let node = broker();
    let addr = node.local_addrs()[0].to_string();
    for qos in ["0", "1", "2"] {
        // 3 pairs at 600 msg/s: 1 s of warm-up and 1 s measured, 400 messages per pair.
        let args = ["--pairs", "3", "--qos", qos, "--rate", "600", "--warmup", "1", "--duration", "1"];
        let (out, j) = clientgen(&addr, &args);
        assert!(out.status.success(), "QoS {qos}: {}", text(&out));
        assert_eq!(j["sent"], 1200, "QoS {qos}: {j}");
        assert_eq!(j["received"], 1200, "QoS {qos}: {j}");
        assert_eq!(j["unique"], 1200, "QoS {qos}: {j}");
        assert_eq!(j["lost"], 0, "QoS {qos}: {j}");
        // Only what was due after the warm-up is measured.
        assert_eq!(j["latency_us"]["count"], 600, "QoS {qos}: {j}");
        assert!(j["latency_us"]["p50"].as_u64().unwrap() > 0, "QoS {qos}: {j}");
        assert_eq!(j["params"]["scenario"], "p2p", "compare.sh reads the scenario: {j}");
        assert!(text(&out).contains("received 1200 lost 0"), "{}", text(&out));
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn fan_in_and_fan_out_count_every_delivery() {
    let node = broker();
    let addr = node.local_addrs()[0].to_string();
    // 20 publishers at 2000 msg/s into 2 wildcard subscribers: 2 s of 100 each, twice over.
    let args = [
        "--scenario",
        "fan-in",
        "--publishers",
        "20",
        "--subscribers",
        "2",
        "--rate",
        "2000",
        "--warmup",
        "1",
        "--duration",
        "1",
    ];
    let (out, j) = clientgen(&addr, &args);
    assert!(out.status.success(), "fan-in: {}", text(&out));
    assert_eq!(
        (j["sent"].as_u64(), j["expected"].as_u64(), j["received"].as_u64()),
        (Some(4000), Some(8000), Some(8000)),
        "{j}"
    );
    assert_eq!(j["lost"], 0, "{j}");
    assert_eq!(j["latency_us"]["count"], 4000, "the measured second, at both subscribers: {j}");
    assert_eq!(j["params"]["scenario"], "fan-in", "{j}");
    // One publisher at 200 msg/s to 10 subscribers of its topic, at QoS 0.
    let args = [
        "--scenario",
        "fan-out",
        "--publishers",
        "1",
        "--subscribers",
        "10",
        "--qos",
        "0",
        "--rate",
        "200",
        "--warmup",
        "1",
        "--duration",
        "1",
    ];
    let (out, j) = clientgen(&addr, &args);
    assert!(out.status.success(), "fan-out: {}", text(&out));
    assert_eq!(
        (j["sent"].as_u64(), j["expected"].as_u64(), j["received"].as_u64()),
        (Some(400), Some(4000), Some(4000)),
        "{j}"
    );
    assert_eq!((j["lost"].as_u64(), j["foreign"].as_u64()), (Some(0), Some(0)), "{j}");
    node.stop();
    node.join().unwrap();
}

#[test]
fn reports_messages_lost_after_their_acknowledgement() {
    let lossy = lossy::Lossy::start(10, lossy::Loss::AfterAck);
    let (out, j) = clientgen(
        &lossy.addr.to_string(),
        &["--pairs", "2", "--qos", "1", "--rate", "400", "--warmup", "0", "--duration", "1", "--drain", "1"],
    );
    assert_eq!(out.status.code(), Some(1), "a QoS 1 loss fails the run: {}", text(&out));
    assert_eq!(j["sent"], 400, "{j}");
    assert_eq!(lossy.received(), 400, "the broker got every publish");
    // Every 10th publish the broker receives is dropped: 40 of 400.
    assert_eq!(j["lost"], 40, "{j}");
    assert_eq!(j["received"], 360, "{j}");
    // This broker forwards everything to every subscriber: the other pair's messages are
    // counted apart, not as duplicates or as this pair's.
    assert_eq!(j["foreign"], 360, "{j}");
    assert_eq!(j["duplicates"], 0, "{j}");
}

#[test]
fn refuses_bad_input_naming_the_flag() {
    let node = broker();
    let addr = node.local_addrs()[0].to_string();
    for (args, flag) in
        [(&["--qos", "3"][..], "--qos 3"), (&["--size", "8"][..], "--size 8"), (&["--rate", "0"][..], "--rate")]
    {
        let (out, _) = clientgen(&addr, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(flag), "{args:?} names {flag}: {}", text(&out));
    }
    let (out, _) = clientgen("nowhere", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--broker nowhere"), "{}", text(&out));
    node.stop();
    node.join().unwrap();
}
