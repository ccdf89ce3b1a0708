//! `--flood`: publishers as fast as their own in-flight window allows, then a bounded
//! drain, then the loss check. Against Mosquitto (where installed; CI installs it) nothing
//! may be lost; against a broker that drops messages after acknowledging them the run
//! must fail, with the exact number lost, while messages the broker refused or sent at
//! QoS 0 count as loss without failing the run unless an SLO asks.

mod support;

use support::lossy::{Loss, Lossy};
use support::{count, run, text};

/// Mosquitto as the comparison runs it: a deep queue, so a flood is not cut by its limit.
const MOSQUITTO_CONF: &str = "max_queued_messages 100000\n";

/// Everything sent arrived once, in order, and the implied SLO (QoS 1/2) passed.
fn assert_all_delivered(out: &std::process::Output, j: &serde_json::Value, sent: u64) {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    assert_eq!(count(j, "sent"), sent, "{j}");
    assert_eq!(count(j, "expected"), sent, "{j}");
    assert_eq!(count(j, "unique"), sent, "{j}");
    assert_eq!(count(j, "lost"), 0, "{j}");
    assert_eq!(count(j, "acked_lost"), 0, "{j}");
    assert_eq!(count(j, "duplicates"), 0, "{j}");
    assert_eq!(count(j, "reordered"), 0, "{j}");
    assert_eq!(count(j, "errors"), 0, "{j}");
    // A counted run has no warm-up: every message is in the latency histogram.
    assert_eq!(j["latency_us"]["count"].as_u64(), Some(sent), "{j}");
    assert!(j["received_rate"].as_f64().unwrap() > 0.0 && j["sent_rate"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["params"]["flood"], true);
    assert_eq!(j["params"]["rate"], 0, "a flood has no target rate");
}

#[test]
fn flood_against_mosquitto_delivers_everything_at_qos_0_and_1() {
    let Some((_peer, addr)) = support::mosquitto(MOSQUITTO_CONF) else { return };
    for qos in ["0", "1"] {
        let (out, j) =
            run(addr, &["fan-in", "--flood", "-p", "2", "-s", "1", "--qos", qos, "--count", "5000", "--threads", "2"]);
        assert_all_delivered(&out, &j, 10_000);
        if qos == "1" {
            assert_eq!(count(&j, "acked"), 10_000, "{j}");
            assert_eq!(j["slo"]["slo"], "acked_loss=0", "QoS 1 floods always check acknowledged loss");
            assert_eq!(j["slo"]["passed"], true);
            assert!(text(&out).contains("SLO acked_loss=0: PASS"), "{}", text(&out));
        } else {
            assert!(j["slo"].is_null(), "no SLO at QoS 0 unless asked: {j}");
        }
    }
}

#[test]
fn flood_v5_keeps_to_the_brokers_receive_maximum() {
    let conf = format!("{MOSQUITTO_CONF}max_inflight_messages 16\n");
    let Some((_peer, addr)) = support::mosquitto(&conf) else { return };
    // At QoS 2, more than 16 unreleased would be refused or dropped.
    let (out, j) = run(
        addr,
        &["fan-in", "--flood", "-p", "1", "-s", "1", "--qos", "2", "--mqtt", "5", "--count", "2000", "--threads", "2"],
    );
    assert_eq!(count(&j, "window"), 16, "the broker's Receive Maximum, not --inflight 1000: {j}");
    assert_eq!(count(&j, "acked"), 2000, "{j}");
    assert_all_delivered(&out, &j, 2000);
}

#[test]
fn acknowledged_messages_that_never_arrive_fail_the_flood() {
    for (qos, mqtt) in [("1", "3.1.1"), ("2", "5")] {
        let broker = Lossy::start(100, Loss::AfterAck);
        let (out, j) = run(
            broker.addr,
            &[
                "fan-in", "--flood", "-p", "2", "-s", "1", "--qos", qos, "--mqtt", mqtt, "--count", "1000", "--drain",
                "500ms",
            ],
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "QoS {qos}: {t}");
        assert_eq!(broker.received(), 2000);
        assert_eq!(count(&j, "acked"), 2000, "{j}");
        // Every 100th of the 2000 was acknowledged and dropped.
        assert_eq!(count(&j, "lost"), 20, "{j}");
        assert_eq!(count(&j, "acked_lost"), 20, "{j}");
        assert_eq!(j["slo"]["passed"], false);
        assert!(t.contains("SLO acked_loss=0: FAIL (acked_loss=0: measured 20)"), "{t}");
        assert!(t.contains("lost after ack 20"), "{t}");
    }
}

#[test]
fn refused_messages_are_lost_but_not_after_an_ack() {
    let broker = Lossy::start(100, Loss::Refused);
    let (out, j) = run(
        broker.addr,
        &[
            "fan-in", "--flood", "-p", "2", "-s", "1", "--qos", "1", "--mqtt", "5", "--count", "1000", "--drain",
            "500ms",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&j, "lost"), 20, "{j}");
    assert_eq!(count(&j, "acked"), 1980, "PUBACK 0x97 is no acknowledgement: {j}");
    assert_eq!(count(&j, "acked_lost"), 0, "{j}");
    assert_eq!(j["slo"]["passed"], true);
}

#[test]
fn qos0_flood_reports_loss_and_fails_only_an_slo_that_asks() {
    let broker = Lossy::start(50, Loss::AfterAck);
    let args = ["fan-in", "--flood", "-p", "2", "-s", "1", "--qos", "0", "--count", "1000", "--drain", "500ms"];
    let (out, j) = run(broker.addr, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(count(&j, "lost"), 40, "{j}");
    assert_eq!(count(&j, "acked_lost"), 0, "nothing is acknowledged at QoS 0: {j}");
    assert!(j["slo"].is_null(), "{j}");
    drop(broker);
    let broker = Lossy::start(50, Loss::AfterAck);
    let (out, j) = run(broker.addr, &[&args[..], &["--slo", "loss=0"]].concat());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(count(&j, "lost"), 40, "{j}");
    assert!(text(&out).contains("SLO loss=0: FAIL (loss=0: measured 40)"), "{}", text(&out));
}

#[test]
fn flood_flags_are_checked() {
    let addr = "127.0.0.1:1".parse().unwrap();
    let (out, _) = run(addr, &["fan-in", "--flood", "--max"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
    let (out, _) = run(addr, &["fan-in", "--flood", "--count", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--count must be at least 1"), "{}", text(&out));
    let (out, _) = run(addr, &["conn", "--flood"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("conn has no publishers"), "{}", text(&out));
}
