//! The `ringmq` binary as a user runs it: flags, config errors, graceful shutdown on
//! SIGTERM/SIGINT, and SIGHUP reloading a TLS listener's certificate.

mod support;
mod wire;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::{reason, Packet, Protocol};
use wire::Raw;

const BIN: &str = env!("CARGO_BIN_EXE_ringmq");

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringmq-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary on a config file `name` holding `text`: it must exit with status 2 and
/// name both `key` and the file.
fn config_refused(name: &str, text: &str, key: &str) {
    let path = temp_file(name, text);
    let out = Command::new(BIN).arg("--config").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(key) && err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn help_documents_every_flag() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let storage = ["--storage", "--data-dir", "--fsync", "--persistence", "--no-offline"];
    let general = ["--listen", "--config", "--shards", "--partitions", "--no-pin", "--log-level", "--max-connections"];
    for flag in general.into_iter().chain(storage) {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn unknown_config_key_exits_2_naming_key_and_file() {
    config_refused("unknown.toml", "listen = [\"127.0.0.1:0\"]\nmax_conections = 3\n", "max_conections");
}

#[test]
fn bad_config_value_exits_2_naming_key_and_file() {
    config_refused("badvalue.toml", "[limits]\nmax_inflight = 0\n", "limits.max_inflight");
}

#[test]
fn bad_storage_rule_exits_2_naming_rule_and_file() {
    config_refused(
        "badrule.toml",
        "[[storage.rule]]\nfilter = \"a/#/b\"\nengine = \"segment\"\n",
        "storage.rule[0].filter",
    );
}

#[test]
fn bad_fsync_flag_exits_2_naming_flag() {
    let out = Command::new(BIN).args(["--fsync", "interval:0ms"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--fsync") && err.contains("interval:0ms"), "{err}");
}

#[test]
fn bad_huge_pages_value_exits_2_naming_key_and_file() {
    config_refused("badhuge.toml", "huge_pages = \"yes\"\n", "huge_pages");
}

#[test]
fn missing_config_file_exits_2() {
    let out = Command::new(BIN).args(["--config", "/nonexistent/ringmq.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ringmq.toml"));
}

/// Starts the binary on an ephemeral port and returns it with the address it logged.
fn spawn_broker() -> (Child, std::net::SocketAddr) {
    let (child, addr, _log) = spawn_broker_logged();
    (child, addr)
}

/// Like [`spawn_broker`], with every log line the broker writes from then on.
fn spawn_broker_logged() -> (Child, std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    spawn_broker_with(&[])
}

/// Every line the child writes to stderr from now on.
fn log_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end even when nobody listens, so the broker never blocks on stderr.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Like [`spawn_broker_logged`], with more arguments.
fn spawn_broker_with(more: &[&str]) -> (Child, std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--shards", "2", "--no-pin"])
        .args(more)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the broker did not log its address");
        };
        if let Some(rest) = line.split("addr=").nth(1) {
            let addr = rest.split_whitespace().next().unwrap_or("").parse().expect("an address");
            return (child, addr, rx);
        }
    }
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success();
    assert!(ok);
}

#[test]
fn sigterm_sends_v5_clients_0x8b_and_exits_0() {
    let (mut child, addr) = spawn_broker();
    let mut v5 = Raw::connect(addr, Protocol::V5, "stay-v5");
    let mut v4 = Raw::connect(addr, Protocol::V4, "stay-v4");
    signal(&child, "-TERM");
    match v5.expect_closed().last() {
        Some(Packet::Disconnect(d)) => assert_eq!(d.reason, reason::SERVER_SHUTTING_DOWN),
        other => panic!("expected DISCONNECT 0x8B, got {other:?}"),
    }
    assert!(v4.expect_closed().is_empty());
    let status = wait_exit(&mut child);
    assert_eq!(status.code(), Some(0));
    assert!(std::net::TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

/// Issue 10: a 65 000-byte client id is logged as its first 128 characters, an ellipsis
/// and its length.
#[test]
fn long_client_ids_are_logged_short_issue_10() {
    let (mut child, addr, log) = spawn_broker_logged();
    let id = "k".repeat(65_000);
    let c = Raw::connect(addr, Protocol::V4, &id);
    drop(c);
    let mut other = Raw::connect(addr, Protocol::V4, "after-long-id");
    signal(&child, "-TERM");
    assert!(other.expect_closed().is_empty());
    assert_eq!(wait_exit(&mut child).code(), Some(0));
    // The reader thread ends with the broker's stderr.
    let lines: Vec<String> = log.iter().collect();
    let shown = format!("{}… (65000 bytes)", "k".repeat(128));
    let connected = lines.iter().find(|l| l.contains("client connected") && l.contains("kkkk"));
    let connected = connected.unwrap_or_else(|| panic!("no connect line for the long id in {lines:#?}"));
    assert!(connected.contains(&shown), "{connected}");
    let whole = lines.iter().find(|l| l.contains(&"k".repeat(129)));
    assert!(whole.is_none(), "a log line holds more of the id: {:.300}", whole.unwrap());
}

#[test]
fn sigint_exits_0() {
    let (mut child, addr) = spawn_broker();
    let _c = Raw::connect(addr, Protocol::V4, "c");
    signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child).code(), Some(0));
}

/// Installs a seccomp filter making io_uring_setup(2) fail with EPERM, as a container's
/// default profile does.
fn forbid_io_uring() -> std::io::Result<()> {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let filter = [
        // Load the syscall number (offset 0 of struct seccomp_data).
        libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl(2) with a valid, live filter program; runs in the child before exec.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
fn io_uring_forbidden_is_reported_as_such() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0"]);
    // SAFETY: the closure only calls prctl, which is async-signal-safe.
    unsafe { cmd.pre_exec(forbid_io_uring) };
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RingMQ needs io_uring") && err.contains("not permitted"), "{err}");
}

#[test]
fn a_second_broker_on_a_taken_port_fails_instead_of_sharing_it() {
    let (mut first, addr) = spawn_broker();
    let mut second = Command::new(BIN)
        .args(["--listen", &addr.to_string(), "--no-pin"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Bounded: a second broker that joined the port would keep running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("the second broker started on a port already in use");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot listen on {addr}")) && err.contains("in use"), "{err}");
    signal(&first, "-TERM");
    assert_eq!(wait_exit(&mut first).code(), Some(0));
}

/// The `THP_enabled` line of a process's status: 0 once it disabled transparent huge pages.
fn thp_enabled(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).expect("THP_enabled in status").trim().to_owned()
}

#[test]
fn huge_pages_are_off_unless_configured() {
    let (mut child, _, _log) = spawn_broker_logged();
    let default = thp_enabled(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(default, "0", "the broker runs with transparent huge pages by default");

    let path = temp_file("huge.toml", "huge_pages = true\n");
    let config = path.to_str().unwrap();
    let (mut child, _, _log) = spawn_broker_with(&["--config", config]);
    let on = thp_enabled(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(on, "1", "huge_pages = true left them off");
}

/// The subject a TLS listener shows `openssl s_client` now.
fn served_subject(port: u16, ca: &std::path::Path) -> String {
    let connect = format!("127.0.0.1:{port}");
    let out = wire::run_bounded(
        "openssl",
        &["s_client", "-connect", &connect, "-CAfile", ca.to_str().unwrap()],
        Some(""),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find(|l| l.starts_with("subject=")).unwrap_or("no subject").to_owned()
}

/// Waits (bounded) for a log line containing `what`.
fn wait_log(rx: &std::sync::mpsc::Receiver<String>, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left =
            deadline.checked_duration_since(Instant::now()).unwrap_or_else(|| panic!("no log line with {what:?}"));
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(what) => return line,
            Ok(_) => {}
            Err(_) => panic!("no log line with {what:?}"),
        }
    }
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections_a_broken_file_keeps_the_old_one() {
    let ca = support::certs::TestCa::new("RingMQ reload CA");
    let first = ca.server("first", "first-cert");
    let second = ca.server("second", "second-cert");
    let (cert, key) = (ca.dir.path().join("live.pem"), ca.dir.path().join("live.key"));
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let config = temp_file(
        "reload.toml",
        &format!("[[listener]]\nbind = \"127.0.0.1:0\"\n[listener.tls]\ncert = {cert:?}\nkey = {key:?}\n"),
    );
    let (mut child, plain, rx) = spawn_broker_with(&["--config", config.to_str().unwrap()]);
    let tls: std::net::SocketAddr = {
        let line = wait_log(&rx, "addr=");
        line.split("addr=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap()
    };
    assert!(served_subject(tls.port(), &ca.ca()).contains("first-cert"));
    // A subscriber over TLS that stays connected through the reload.
    let mut publ = Raw::connect(plain, Protocol::V4, "reload-pub");
    let retained = proto::Publish {
        dup: false,
        qos: proto::QoS::AtLeastOnce,
        retain: true,
        topic: "reload/t".into(),
        pkid: 1,
        payload: "one".into(),
        properties: Default::default(),
    };
    publ.send(&Packet::Publish(retained));
    assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
    let port = tls.port().to_string();
    let ca_file = ca.ca();
    let mut sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "localhost",
            "-p",
            &port,
            "--cafile",
            ca_file.to_str().unwrap(),
            "-t",
            "reload/t",
            "-C",
            "2",
            "-W",
            "30",
            "-q",
            "1",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("mosquitto_sub (.ci/run installs mosquitto-clients)");
    let mut lines = BufReader::new(sub.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("one"), "the subscriber is connected");

    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    signal(&child, "-HUP");
    wait_log(&rx, "reloaded TLS certificate");
    assert!(served_subject(tls.port(), &ca.ca()).contains("second-cert"), "new connections get the new certificate");
    publ.publish("reload/t", b"two", proto::QoS::AtLeastOnce, 2);
    assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("two"), "the old connection still delivers");
    assert!(sub.wait().unwrap().success());

    std::fs::write(&cert, "not a certificate\n").unwrap();
    signal(&child, "-HUP");
    let kept = wait_log(&rx, "kept the old TLS certificate");
    assert!(kept.contains(cert.to_str().unwrap()), "{kept}");
    assert!(served_subject(tls.port(), &ca.ca()).contains("second-cert"));
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}

#[test]
fn an_open_listener_without_tls_or_authentication_is_warned_about() {
    let config = temp_file("open.toml", "[[listener]]\nbind = \"0.0.0.0:0\"\n");
    let mut child = Command::new(BIN)
        .args(["--shards", "1", "--no-pin", "--config", config.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let rx = log_lines(&mut child);
    let line = wait_log(&rx, "neither TLS nor authentication");
    assert!(line.contains("mqtt://0.0.0.0:0"), "{line}");
    wait_log(&rx, "listening");
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
}
