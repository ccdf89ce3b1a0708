//! MQTT.js (npm `mqtt`) in a real headless Chromium (issue 13): a page served by this test
//! connects over ws:// and wss:// (the test CA trusted in Chromium's own certificate
//! store), subscribes, publishes, and reports what it received by publishing it to
//! `browser/result/...`, which the test reads over plain TCP.
//!
//! `.ci/run` installs Chromium, certutil and the npm package (`tests/browser`); outside CI
//! the test is skipped, with a notice, when one of them is missing.

mod support;
mod wire;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::{Packet, Protocol, QoS};
use support::certs::TestCa;
use wire::{broker_toml, Raw};

/// How long the page has to report both transports.
const PAGE_LIMIT: Duration = Duration::from_secs(60);

fn mqtt_js() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/mqtt/dist/mqtt.min.js")
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// The page: connect over each URL, subscribe, publish, and publish back what came.
fn page(ws: &str, wss: &str) -> String {
    format!(
        r#"<!doctype html><html><head><title>ringmq</title><script src="/mqtt.min.js"></script></head><body><script>
const report = (name, text) => {{
  const r = mqtt.connect("{ws}", {{ protocolVersion: 5, clientId: "browser-report-" + name, reconnectPeriod: 0 }});
  r.on("connect", () => r.publish("browser/result/" + name, text, {{ qos: 1 }}, () => r.end()));
}};
for (const [name, url] of [["ws", "{ws}"], ["wss", "{wss}"]]) {{
  const c = mqtt.connect(url, {{ protocolVersion: 5, clientId: "browser-" + name, reconnectPeriod: 0, connectTimeout: 20000 }});
  c.on("connect", () => {{
    c.subscribe("browser/echo/" + name, {{ qos: 1 }}, (err) => {{
      if (err) return report(name, "subscribe failed " + err);
      c.publish("browser/echo/" + name, "hello over " + name, {{ qos: 1 }});
    }});
  }});
  c.on("message", (topic, payload) => report(name, "got " + payload.toString()));
  c.on("error", (e) => {{ document.title = "error " + name + " " + e; if (name === "wss") report(name, "error " + e); }});
}}
</script></body></html>"#
    )
}

/// Serves `/` and `/mqtt.min.js` until `stop` is set.
fn serve(listener: TcpListener, html: String, js: Vec<u8>, stop: Arc<AtomicBool>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut s, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 2048];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let line = String::from_utf8_lossy(&req).lines().next().unwrap_or_default().to_owned();
        let (status, kind, body): (&str, &str, &[u8]) = if line.starts_with("GET / ") {
            ("200 OK", "text/html", html.as_bytes())
        } else if line.starts_with("GET /mqtt.min.js ") {
            ("200 OK", "application/javascript", &js)
        } else {
            ("404 Not Found", "text/plain", b"not here")
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
    }
}

/// Kills Chromium when the test ends, however it ends.
struct Browser(Child);

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mqtt_js_in_headless_chromium_over_ws_and_wss() {
    let ready = have("chromium") && have("certutil") && mqtt_js().exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have chromium, certutil and tests/browser's npm packages (.ci/run)"
        );
        eprintln!("skipped: needs chromium, certutil (libnss3-tools) and `npm install` in tests/browser");
        return;
    }
    let ca = TestCa::new("RingMQ browser test CA");
    let server = ca.server("server", "localhost");
    let tls = format!("[listener.tls]\ncert = {:?}\nkey = {:?}\n", server.cert, server.key);
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"ws\"\n{tls}\n[[listener]]\nbind = \"127.0.0.1:0\"\n"
    ));
    let addrs = node.local_addrs().to_vec();
    let mut results = Raw::connect(addrs[2], Protocol::V4, "browser-results");
    results.subscribe("browser/result/#", QoS::AtLeastOnce);

    // Chromium trusts the test CA through its own store (NSS) in a home of its own.
    let home = tempfile::tempdir().unwrap();
    let nss = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nss).unwrap();
    let db = format!("sql:{}", nss.display());
    run(Command::new("certutil").args(["-d", &db, "-N", "--empty-password"]));
    run(Command::new("certutil").args(["-d", &db, "-A", "-t", "C,,", "-n", "ringmq-test-ca", "-i"]).arg(ca.ca()));

    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/", http.local_addr().unwrap().port());
    let html =
        page(&format!("ws://127.0.0.1:{}/mqtt", addrs[0].port()), &format!("wss://localhost:{}/mqtt", addrs[1].port()));
    let stop = Arc::new(AtomicBool::new(false));
    let server_thread = {
        let (js, stop) = (std::fs::read(mqtt_js()).unwrap(), stop.clone());
        std::thread::spawn(move || serve(http, html, js, stop))
    };
    let profile = home.path().join("profile");
    let browser = Browser(
        Command::new("chromium")
            .env("HOME", home.path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(&url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts"),
    );

    let mut got = std::collections::BTreeMap::new();
    let deadline = Instant::now() + PAGE_LIMIT;
    while got.len() < 2 {
        let left = deadline
            .checked_duration_since(Instant::now())
            .unwrap_or_else(|| panic!("the page reported only {got:?} within {PAGE_LIMIT:?}"));
        match results.recv_within(left) {
            Some(Packet::Publish(p)) => {
                results.send(&Packet::PubAck(proto::Ack { pkid: p.pkid, reason: 0, properties: Default::default() }));
                got.insert(
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    String::from_utf8_lossy(&p.payload).into_owned(),
                );
            }
            Some(_) => {}
            None => panic!("the page reported only {got:?} within {PAGE_LIMIT:?}"),
        }
    }
    assert_eq!(got["browser/result/ws"], "got hello over ws");
    assert_eq!(got["browser/result/wss"], "got hello over wss");
    drop(browser);
    stop.store(true, Ordering::Relaxed);
    server_thread.join().unwrap();
    node.stop();
    node.join().unwrap();
}
