//! What the loadgen tests share: running the binary and reading its JSON, peer brokers
//! from the system's packages (stopped on drop), and [`lossy`], a broker that loses
//! messages it has acknowledged. Every wait is bounded.

// Each test file uses some of these; the rest are unused there.
#![allow(dead_code)]

pub mod lossy;

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The loadgen binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_loadgen");

/// Runs loadgen against `addr` with `args` (`--quiet --json` added) and returns its output
/// and its JSON summary (`null` when it wrote none).
pub fn run(addr: SocketAddr, args: &[&str]) -> (Output, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!("loadgen-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name: String = args.join("_").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
    let json = dir.join(format!("{name}-{}.json", addr.port()));
    let _ = std::fs::remove_file(&json);
    let out = output_within(
        Command::new(BIN).arg("--broker").arg(addr.to_string()).args(["--quiet", "--json"]).arg(&json).args(args),
    );
    let value = std::fs::read_to_string(&json).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    (out, value)
}

/// How long one loadgen run in a test may take before it is killed: every run here is
/// bounded by its own duration or count, so only a hang reaches this.
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// Runs `cmd` to its end and returns its output, or kills it and panics naming it once it
/// has run for [`RUN_LIMIT`].
pub fn output_within(cmd: &mut Command) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the command starts");
    // Drained on their own threads so that a chatty child never blocks on a full pipe.
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>));
    let err = drain(child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + RUN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("the command can be waited for") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {RUN_LIMIT:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// Standard output and error of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A JSON figure that must be a count.
pub fn count(j: &serde_json::Value, key: &str) -> u64 {
    j[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {j}"))
}

/// A peer broker started from the system's packages, stopped on drop.
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (for now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (at most 10 s) until something listens on `port`.
pub fn wait_listening(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// True when `cmd` is installed; in CI it must be.
pub fn have(cmd: &str) -> bool {
    let found =
        Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI must have {cmd} (see .ci/run)");
        eprintln!("skipped: {cmd} not installed");
    }
    found
}

/// Starts Mosquitto on a free loopback port with `extra` configuration lines; None when it
/// is not installed.
pub fn mosquitto(extra: &str) -> Option<(Peer, SocketAddr)> {
    if !have("mosquitto") {
        return None;
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("loadgen-mosq-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(&conf, format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{extra}"))
        .unwrap();
    let child = Command::new("mosquitto").arg("-c").arg(&conf).stdout(Stdio::null()).stderr(Stdio::null()).spawn();
    let peer = Peer(child.expect("mosquitto starts"));
    assert!(wait_listening(port), "mosquitto did not listen");
    Some((peer, ([127, 0, 0, 1], port).into()))
}
