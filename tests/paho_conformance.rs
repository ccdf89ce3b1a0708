//! Runs `tests/paho/conformance.py` (the paho-mqtt client from PyPI, 3.1.1 and 5.0)
//! against an in-process broker. `.ci/run` installs paho-mqtt; outside CI the test is
//! skipped, with a notice, when Python or paho-mqtt is missing.

mod wire;

use std::process::Command;

#[test]
fn paho_interoperability_checks_pass() {
    if !wire::have_paho() {
        return;
    }
    let node = wire::broker(|_| {});
    let port = node.local_addrs()[0].port().to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho/conformance.py");
    let out = Command::new("python3").arg(script).arg(&port).output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "paho checks failed:\n{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("11 passed, 0 failed"), "{text}");
}
