//! Authentication and ACLs per listener, from Mosquitto's own files (issue 13): password
//! files made by `mosquitto_passwd` and by `ringmq passwd`, refusals in each protocol's
//! codes, repeated failures counted, and an ACL matrix of users x topics x actions
//! (wildcards, `%c`/`%u` patterns, deny rules, retained messages, delivery through `#`).

mod wire;

use std::path::Path;
use std::time::{Duration, Instant};

use proto::{reason, Packet, Protocol, QoS};
use wire::{broker_toml, login, run_bounded, Raw};

const LIMIT: Duration = Duration::from_secs(30);

fn ringmq_passwd(file: &Path, user: &str, password: &str) {
    let out = run_bounded(
        env!("CARGO_BIN_EXE_ringmq"),
        &["passwd", file.to_str().unwrap(), user],
        Some(&format!("{password}\n")),
        LIMIT,
    );
    assert!(out.status.success(), "ringmq passwd: {}", String::from_utf8_lossy(&out.stderr));
}

fn mosquitto_passwd(file: &Path, user: &str, password: &str) {
    let out = run_bounded("mosquitto_passwd", &["-b", file.to_str().unwrap(), user, password], None, LIMIT);
    assert!(out.status.success(), "mosquitto_passwd: {}", String::from_utf8_lossy(&out.stderr));
}

/// Waits (bounded) until the node's metrics satisfy `f`.
fn wait_metrics(node: &ringmq::Node, what: &str, f: impl Fn(&ringmq::ShardMetrics) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f(&node.metrics().total) {
        assert!(Instant::now() < deadline, "metrics never showed {what}: {:?}", node.metrics().total);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn password_files_from_mosquitto_passwd_and_ringmq_passwd_authenticate_mosquitto_clients() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    std::fs::write(&file, "").unwrap();
    mosquitto_passwd(&file, "alice", "apw");
    ringmq_passwd(&file, "bob", "bpw");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("alice:$7$") && text.contains("bob:$argon2id$"), "{text}");
    let node = broker_toml(&format!("[[listener]]\nbind = \"127.0.0.1:0\"\npassword_file = {:?}\n", file));
    let addr = node.local_addrs()[0];
    let port = addr.port().to_string();
    let publish = |user: &str, pw: &str| {
        let args = ["-h", "127.0.0.1", "-p", &port, "-u", user, "-P", pw, "-t", "acc/t", "-m", "x", "-q", "1"];
        run_bounded("mosquitto_pub", &args, None, LIMIT)
    };
    assert!(publish("alice", "apw").status.success(), "mosquitto_passwd's $7$ entry");
    assert!(publish("bob", "bpw").status.success(), "ringmq passwd's argon2id entry");
    let wrong = publish("alice", "nope");
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(said.contains("bad user name or password"), "{said}");

    // The codes in each protocol: bad credentials 0x86 / 4, no credentials (anonymous
    // not allowed with a password file) 0x87 / 5.
    assert_eq!(login(addr, Protocol::V5, "c5", Some("alice"), Some("no")).1, reason::BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(login(addr, Protocol::V4, "c4", Some("alice"), Some("no")).1, reason::V4_BAD_USER_NAME_OR_PASSWORD);
    assert_eq!(login(addr, Protocol::V5, "c5", None, None).1, reason::NOT_AUTHORIZED);
    assert_eq!(login(addr, Protocol::V4, "c4", None, None).1, reason::V4_NOT_AUTHORIZED);
    assert_eq!(login(addr, Protocol::V5, "c5", Some("bob"), Some("bpw")).1, 0);
    wait_metrics(&node, "five authentication failures", |m| m.auth_failures >= 5);

    // An edit of the file reaches new connections without a restart (SIGHUP's reload).
    mosquitto_passwd(&file, "carol", "cpw");
    assert_eq!(login(addr, Protocol::V4, "c4", Some("carol"), Some("cpw")).1, reason::V4_BAD_USER_NAME_OR_PASSWORD);
    let reloaded = node.reload(false);
    assert!(reloaded.iter().all(|(_, r)| r.is_ok()), "{reloaded:?}");
    assert_eq!(login(addr, Protocol::V4, "c4", Some("carol"), Some("cpw")).1, 0);
    // A file that no longer reads keeps the old users.
    std::fs::write(&file, "carol:not-a-hash\n").unwrap();
    let reloaded = node.reload(false);
    assert!(reloaded.iter().any(|(_, r)| r.as_ref().is_err_and(|e| e.contains("line 1"))), "{reloaded:?}");
    assert_eq!(login(addr, Protocol::V4, "c4", Some("carol"), Some("cpw")).1, 0);
    node.stop();
    node.join().unwrap();
}

#[test]
fn repeated_failures_from_one_address_wait_and_other_clients_keep_their_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("passwd");
    ringmq_passwd(&file, "slow", "argon-pw");
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\npassword_file = {file:?}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n"
    ));
    let (guarded, open) = (node.local_addrs()[0], node.local_addrs()[1]);
    let mut sub = Raw::connect(open, Protocol::V4, "steady-sub");
    sub.subscribe("steady/t", QoS::AtMostOnce);
    let mut publ = Raw::connect(open, Protocol::V4, "steady-pub");
    // Bad passwords against an argon2 entry (each check takes milliseconds, off the shard)
    // while a client on the same shards keeps publishing.
    let storm = std::thread::spawn(move || {
        let mut codes = Vec::new();
        for i in 0..4 {
            codes.push(login(guarded, Protocol::V5, &format!("storm-{i}"), Some("slow"), Some("wrong")).1);
        }
        codes
    });
    for i in 0..50u32 {
        publ.publish("steady/t", &i.to_be_bytes(), QoS::AtMostOnce, 0);
        match sub.recv() {
            Some(Packet::Publish(p)) => assert_eq!(&p.payload[..], i.to_be_bytes()),
            other => panic!("steady traffic stopped at {i}: {other:?}"),
        }
    }
    let codes = storm.join().unwrap();
    assert!(codes.iter().all(|c| *c == reason::BAD_USER_NAME_OR_PASSWORD), "{codes:?}");
    // Past two failures the address waits before it is judged: the next refusal is late.
    let started = Instant::now();
    assert_eq!(login(guarded, Protocol::V5, "late", Some("slow"), Some("wrong")).1, reason::BAD_USER_NAME_OR_PASSWORD);
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "no delay after repeated failures: {:?}",
        started.elapsed()
    );
    // A right password still gets in (after the wait).
    assert_eq!(login(guarded, Protocol::V5, "right", Some("slow"), Some("argon-pw")).1, 0);
    // Many slow checks, more than run at once on a shard, each get their turn.
    let many: Vec<_> = (0..12)
        .map(|i| {
            std::thread::spawn(move || {
                login(guarded, Protocol::V4, &format!("many-{i}"), Some("slow"), Some("argon-pw")).1
            })
        })
        .collect();
    let codes: Vec<u8> = many.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == 0), "{codes:?}");
    node.stop();
    node.join().unwrap();
}

const ACL: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite alice/#
topic read shared/#
topic deny shared/secret/#

user bob
topic write shared/#
topic write public/#

pattern readwrite clients/%c/#
pattern read users/%u/inbox
";

/// A 5.0 client logged in as `user` (password `user`), or anonymous.
fn client(addr: std::net::SocketAddr, id: &str, user: Option<&str>) -> Raw {
    let (c, code) = login(addr, Protocol::V5, id, user, user);
    assert_eq!(code, 0, "{id} connects");
    c
}

/// SUBACK codes for one filter each.
fn suback(c: &mut Raw, filter: &str) -> u8 {
    let f = proto::SubscribeFilter {
        filter: filter.into(),
        qos: QoS::AtLeastOnce,
        no_local: false,
        retain_as_published: false,
        retain_handling: 0,
    };
    c.send(&Packet::Subscribe(proto::Subscribe { pkid: 1, filters: vec![f], properties: Default::default() }));
    match c.recv() {
        Some(Packet::SubAck(a)) => a.codes[0],
        other => panic!("SUBACK for {filter}: {other:?}"),
    }
}

/// The PUBACK code of a QoS 1 PUBLISH.
fn puback(c: &mut Raw, topic: &str, retain: bool, pkid: u16) -> u8 {
    let mut p = proto::Publish {
        topic: topic.as_bytes().to_vec().into(),
        payload: topic.as_bytes().to_vec().into(),
        qos: QoS::AtLeastOnce,
        pkid,
        retain,
        dup: false,
        properties: Default::default(),
    };
    p.retain = retain;
    c.send(&Packet::Publish(p));
    loop {
        match c.recv() {
            Some(Packet::PubAck(a)) if a.pkid == pkid => return a.reason,
            Some(Packet::Publish(_)) => continue,
            other => panic!("PUBACK for {topic}: {other:?}"),
        }
    }
}

/// The topics of the PUBLISHes received until `end` arrives (acknowledged as they come).
fn topics_until(c: &mut Raw, end: &str) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        match c.recv() {
            Some(Packet::Publish(p)) => {
                if p.qos != QoS::AtMostOnce {
                    c.send(&Packet::PubAck(proto::Ack { pkid: p.pkid, reason: 0, properties: Default::default() }));
                }
                let t = String::from_utf8_lossy(&p.topic).into_owned();
                if t == end {
                    return seen;
                }
                seen.push(t);
            }
            other => panic!("waiting for {end}: {other:?} after {seen:?}"),
        }
    }
    panic!("{end} never came: {seen:?}")
}

#[test]
fn an_acl_file_in_mosquittos_format_decides_publish_subscribe_and_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let (acl, passwd) = (dir.path().join("acl"), dir.path().join("passwd"));
    std::fs::write(&acl, ACL).unwrap();
    std::fs::write(&passwd, "").unwrap();
    for u in ["alice", "bob"] {
        mosquitto_passwd(&passwd, u, u);
    }
    let node = broker_toml(&format!(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\npassword_file = {passwd:?}\nacl_file = {acl:?}\n"
    ));
    let addr = node.local_addrs()[0];
    const OK: u8 = 0;
    const NO: u8 = reason::NOT_AUTHORIZED;
    const GRANTED: u8 = 1;

    let mut cs =
        [client(addr, "anon-1", None), client(addr, "alice-1", Some("alice")), client(addr, "bob-1", Some("bob"))];
    let (anon, alice, bob) = (0, 1, 2);
    // Subscriptions: a read rule must cover the whole filter, and no deny rule may.
    let subs = [
        (anon, "public/#", GRANTED),
        (anon, "alice/#", NO),
        (alice, "alice/+/x", GRANTED),
        (alice, "shared/#", GRANTED),
        (alice, "shared/secret/#", NO),
        (alice, "#", NO),
        (alice, "users/alice/inbox", GRANTED),
        (alice, "users/bob/inbox", NO),
        (bob, "shared/#", NO),
        (bob, "clients/bob-1/#", GRANTED),
        (bob, "clients/alice-1/#", NO),
    ];
    for (c, filter, want) in subs {
        assert_eq!(suback(&mut cs[c], filter), want, "SUBSCRIBE {filter}");
    }
    // Publishing: write (or readwrite) on the topic, nothing denied.
    let pubs = [
        (anon, "public/a", NO),
        (bob, "public/a", OK),
        (alice, "alice/a/y", OK),
        (alice, "shared/open", NO),
        (alice, "clients/alice-1/t", OK),
        (alice, "clients/bob-1/t", NO),
    ];
    for (i, (c, topic, want)) in pubs.into_iter().enumerate() {
        assert_eq!(puback(&mut cs[c], topic, false, 100 + i as u16), want, "PUBLISH {topic}");
    }
    // Delivery through alice's `shared/#`: everything bob publishes there except the
    // denied `shared/secret/...` (the sync message ends the list).
    assert_eq!(puback(&mut cs[bob], "shared/open", false, 110), OK);
    assert_eq!(puback(&mut cs[bob], "shared/secret/x", false, 111), OK);
    assert_eq!(puback(&mut cs[bob], "shared/end", false, 200), OK);
    assert_eq!(topics_until(&mut cs[alice], "shared/end"), ["shared/open"]);
    // Anonymous reads public/: bob's publish reached it.
    assert_eq!(puback(&mut cs[bob], "public/end", false, 201), OK);
    assert_eq!(topics_until(&mut cs[anon], "public/end"), ["public/a"]);

    // Retained messages answering a subscription: the denied one stays out.
    assert_eq!(puback(&mut cs[bob], "shared/secret/r", true, 202), OK);
    assert_eq!(puback(&mut cs[bob], "shared/open/r", true, 203), OK);
    let mut late = client(addr, "alice-2", Some("alice"));
    assert_eq!(suback(&mut late, "shared/+/r"), GRANTED);
    assert_eq!(puback(&mut cs[bob], "shared/end/r", false, 204), OK);
    assert_eq!(topics_until(&mut late, "shared/end/r"), ["shared/open/r"]);
    assert_eq!(topics_until(&mut cs[alice], "shared/end/r"), ["shared/open/r"]);
    wait_metrics(&node, "the refusals counted", |m| m.acl_denied >= 12);

    // 3.1.1: a refused filter is 0x80, a refused QoS 1 PUBLISH is acknowledged and dropped.
    let (mut a4, code) = login(addr, Protocol::V4, "alice-4", Some("alice"), Some("alice"));
    assert_eq!(code, 0);
    assert_eq!(suback(&mut a4, "users/bob/inbox"), reason::V4_SUBACK_FAILURE);
    assert_eq!(puback(&mut a4, "shared/dropped", false, 7), 0);
    assert_eq!(puback(&mut cs[bob], "shared/end", false, 208), OK);
    assert_eq!(topics_until(&mut cs[alice], "shared/end"), Vec::<String>::new());

    // The rules change on reload; the decisions cached per connection go with them.
    std::fs::write(&acl, ACL.replace("topic deny shared/secret/#", "topic deny shared/open/#")).unwrap();
    node.reload(false);
    assert_eq!(puback(&mut cs[bob], "shared/open", false, 205), OK);
    assert_eq!(puback(&mut cs[bob], "shared/secret/x", false, 206), OK);
    assert_eq!(puback(&mut cs[bob], "shared/end", false, 207), OK);
    assert_eq!(topics_until(&mut cs[alice], "shared/end"), ["shared/secret/x"]);
    node.stop();
    node.join().unwrap();
}

#[test]
fn a_will_the_acl_refuses_is_refused_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, ACL).unwrap();
    let node = broker_toml(&format!("[[listener]]\nbind = \"127.0.0.1:0\"\nacl_file = {acl:?}\n"));
    let addr = node.local_addrs()[0];
    for (protocol, topic, want) in [
        (Protocol::V5, "public/will", reason::NOT_AUTHORIZED),
        (Protocol::V4, "public/will", reason::V4_NOT_AUTHORIZED),
        (Protocol::V5, "clients/willer/gone", 0),
    ] {
        let mut p = wire::connect_packet(protocol, "willer", true);
        if let Packet::Connect(c) = &mut p {
            c.will = Some(proto::LastWill {
                topic: topic.as_bytes().to_vec().into(),
                payload: b"bye".to_vec().into(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: Default::default(),
            });
        }
        let mut c = Raw::open(addr, protocol);
        c.send(&p);
        match c.recv() {
            Some(Packet::ConnAck(a)) => assert_eq!(a.code, want, "will on {topic}"),
            other => panic!("CONNACK: {other:?}"),
        }
    }
    node.stop();
    node.join().unwrap();
}

/// Lets in only clients whose address (as the transport reports it) is 192.0.2.7 or
/// 2001:db8::7, under the user name `proxied`.
#[derive(Debug)]
struct FromDocumentationNet;

impl ringmq::Authenticator for FromDocumentationNet {
    fn authenticate(&self, c: &ringmq::Credentials<'_>) -> Result<ringmq::Principal, ringmq::Refusal> {
        let ok = c.peer.is_some_and(|p| ["192.0.2.7", "2001:db8::7"].contains(&p.ip().to_string().as_str()));
        if !ok {
            return Err(ringmq::Refusal::NotAuthorized);
        }
        Ok(ringmq::Principal::new(c.client_id, Some("proxied"), c.peer))
    }
}

#[test]
fn behind_a_load_balancer_the_proxy_protocol_address_is_the_clients() {
    let node = wire::broker(|cfg| {
        let mut l = shards::config::ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        l.proxy_protocol = true;
        l.authenticator = Some(std::sync::Arc::new(FromDocumentationNet));
        cfg.listeners.push(l);
    });
    let addr = node.local_addrs()[1];
    let connect = |header: &[u8], id: &str| {
        let mut c = Raw::open(addr, Protocol::V5);
        c.send_bytes(header);
        c.send(&wire::connect_packet(Protocol::V5, id, true));
        c
    };
    // Version 1, then version 2 (binary, IPv6): the address it carries is the one judged.
    let mut v1 = connect(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 1883\r\n", "behind-v1");
    assert!(matches!(v1.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x24".to_vec();
    v2.extend_from_slice(&"2001:db8::7".parse::<std::net::Ipv6Addr>().unwrap().octets());
    v2.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v2.extend_from_slice(&[0x9c, 0x40, 0x07, 0x5b]);
    let mut c2 = connect(&v2, "behind-v2");
    assert!(matches!(c2.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    // Another address is refused by the authenticator; no header at all ends the connection.
    let mut other = connect(b"PROXY TCP4 198.51.100.1 127.0.0.1 40000 1883\r\n", "elsewhere");
    assert!(matches!(other.recv(), Some(Packet::ConnAck(a)) if a.code == reason::NOT_AUTHORIZED));
    let mut bare = Raw::open(addr, Protocol::V5);
    bare.send(&wire::connect_packet(Protocol::V5, "no-header", true));
    assert!(bare.expect_closed().is_empty(), "a connection without the header gets nothing");
    wait_metrics(&node, "the missing header counted", |m| m.proxy_failures >= 1);
    // Messages flow through the proxied connection.
    v1.subscribe("lb/t", QoS::AtMostOnce);
    c2.publish("lb/t", b"through the balancer", QoS::AtMostOnce, 0);
    assert!(matches!(v1.recv(), Some(Packet::Publish(p)) if &p.payload[..] == b"through the balancer"));
    node.stop();
    node.join().unwrap();
}

/// A slow check (it sleeps 300 ms, off the shard) that lets everyone in.
#[derive(Debug)]
struct Sluggish;

impl ringmq::Authenticator for Sluggish {
    fn authenticate(&self, c: &ringmq::Credentials<'_>) -> Result<ringmq::Principal, ringmq::Refusal> {
        std::thread::sleep(Duration::from_millis(300));
        Ok(ringmq::Principal::new(c.client_id, None, c.peer))
    }

    fn slow(&self, _: &ringmq::Credentials<'_>) -> bool {
        true
    }
}

#[test]
fn slow_checks_wait_their_turn_for_at_most_the_connect_timeout_then_the_server_is_busy() {
    let node = wire::broker(|cfg| {
        cfg.limits.connect_timeout = Duration::from_millis(500);
        let mut l = shards::config::ListenerConfig::plain("127.0.0.1:0".parse().unwrap());
        l.authenticator = Some(std::sync::Arc::new(Sluggish));
        cfg.listeners.push(l);
    });
    let addr = node.local_addrs()[1];
    // 20 at once on two shards: four checks at a time per shard, 300 ms each; a shard
    // with ten or more has a third round, which would start past the 500 ms bound.
    let all: Vec<_> = (0..20)
        .map(|i| std::thread::spawn(move || login(addr, Protocol::V5, &format!("queue-{i}"), None, None).1))
        .collect();
    let codes: Vec<u8> = all.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.iter().all(|c| *c == 0 || *c == reason::SERVER_BUSY), "{codes:?}");
    assert!(codes.iter().filter(|c| **c == 0).count() >= 8, "the first turns got in: {codes:?}");
    assert!(codes.contains(&reason::SERVER_BUSY), "the queue past the bound was refused: {codes:?}");
    node.stop();
    node.join().unwrap();
}

#[test]
fn a_listeners_connection_limit_refuses_past_it_and_frees_with_a_close() {
    let node = broker_toml(
        "[[listener]]\nbind = \"127.0.0.1:0\"\nmax_connections = 2\n\n[[listener]]\nbind = \"127.0.0.1:0\"\n",
    );
    let (limited, other) = (node.local_addrs()[0], node.local_addrs()[1]);
    let (first, code) = login(limited, Protocol::V5, "lim-1", None, None);
    assert_eq!(code, 0);
    assert_eq!(login(limited, Protocol::V5, "lim-2", None, None).1, 0);
    // lim-2's connection was dropped by the helper's return: wait until it is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.listener_connections()[0] != 1 {
        assert!(Instant::now() < deadline, "connections per listener: {:?}", node.listener_connections());
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_second, code) = login(limited, Protocol::V5, "lim-3", None, None);
    assert_eq!(code, 0);
    assert_eq!(login(limited, Protocol::V5, "lim-4", None, None).1, reason::QUOTA_EXCEEDED);
    assert_eq!(login(limited, Protocol::V4, "lim-5", None, None).1, reason::V4_SERVER_UNAVAILABLE);
    // Another listener is not held to it.
    let (_free, code) = login(other, Protocol::V5, "free-1", None, None);
    assert_eq!(code, 0);
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_c, code) = login(limited, Protocol::V5, "lim-6", None, None);
        if code == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place was not given again: {code:#x}");
        std::thread::sleep(Duration::from_millis(50));
    }
    node.stop();
    node.join().unwrap();
}

#[test]
fn an_offline_session_is_judged_as_its_last_connection_after_a_restart_too() {
    let dir = tempfile::tempdir().unwrap();
    let (acl, passwd, data) = (dir.path().join("acl"), dir.path().join("passwd"), dir.path().join("data"));
    std::fs::write(&acl, "topic write a/#\nuser alice\ntopic read a/#\ntopic deny a/secret/#\n").unwrap();
    std::fs::write(&passwd, "").unwrap();
    mosquitto_passwd(&passwd, "alice", "alice");
    let config = format!(
        "[storage]\npersistence = true\ndata_dir = {data:?}\n\n[[listener]]\nbind = \"127.0.0.1:0\"\nallow_anonymous = true\npassword_file = {passwd:?}\nacl_file = {acl:?}\n"
    );
    // alice subscribes with a persistent session and leaves.
    let node = broker_toml(&config);
    let mut p = wire::login_packet(Protocol::V4, "alice-p", Some("alice"), Some("alice"));
    if let Packet::Connect(c) = &mut p {
        c.clean_start = false;
    }
    let mut alice = Raw::open(node.local_addrs()[0], Protocol::V4);
    alice.send(&p);
    assert!(matches!(alice.recv(), Some(Packet::ConnAck(a)) if a.code == 0));
    alice.subscribe("a/#", QoS::AtLeastOnce);
    alice.send(&Packet::Disconnect(proto::Disconnect { reason: 0, properties: Default::default() }));
    drop(alice);
    node.stop();
    node.join().unwrap();
    // After a restart, messages published while she is away: the denied one is not kept.
    let node = broker_toml(&config);
    let addr = node.local_addrs()[0];
    let mut publ = Raw::connect(addr, Protocol::V4, "anon-pub");
    for (i, t) in ["a/secret/x", "a/open"].iter().enumerate() {
        publ.publish(t, b"m", QoS::AtLeastOnce, i as u16 + 1);
        assert!(matches!(publ.recv(), Some(Packet::PubAck(_))));
    }
    let mut alice = Raw::open(addr, Protocol::V4);
    alice.send(&p);
    assert!(matches!(alice.recv(), Some(Packet::ConnAck(a)) if a.code == 0 && a.session_present));
    assert_eq!(topics_until(&mut alice, "a/open"), Vec::<String>::new(), "a/secret/x was kept for her");
    node.stop();
    node.join().unwrap();
}

#[test]
fn a_session_taken_up_by_another_user_has_its_subscriptions_judged_for_that_user() {
    let dir = tempfile::tempdir().unwrap();
    let (acl, passwd) = (dir.path().join("acl"), dir.path().join("passwd"));
    std::fs::write(&acl, "user alice\ntopic read a/#\nuser bob\ntopic read b/#\ntopic write a/#\ntopic write b/#\n")
        .unwrap();
    std::fs::write(&passwd, "").unwrap();
    for u in ["alice", "bob"] {
        mosquitto_passwd(&passwd, u, u);
    }
    let node =
        broker_toml(&format!("[[listener]]\nbind = \"127.0.0.1:0\"\npassword_file = {passwd:?}\nacl_file = {acl:?}\n"));
    let addr = node.local_addrs()[0];
    let as_user = |user: &str| {
        let mut p = wire::login_packet(Protocol::V4, "roaming", Some(user), Some(user));
        if let Packet::Connect(c) = &mut p {
            c.clean_start = false;
        }
        let mut c = Raw::open(addr, Protocol::V4);
        c.send(&p);
        assert!(matches!(c.recv(), Some(Packet::ConnAck(a)) if a.code == 0), "{user} connects");
        c
    };
    // alice's a/# is readable whole for her.
    let mut alice = as_user("alice");
    alice.subscribe("a/#", QoS::AtLeastOnce);
    alice.send(&Packet::Disconnect(proto::Disconnect { reason: 0, properties: Default::default() }));
    drop(alice);
    // bob takes the session up: a/# is still there, and not his to read.
    let mut bob = as_user("bob");
    bob.subscribe("b/#", QoS::AtLeastOnce);
    let (mut publ, code) = login(addr, Protocol::V5, "bob-pub", Some("bob"), Some("bob"));
    assert_eq!(code, 0);
    assert_eq!(puback(&mut publ, "a/x", false, 1), 0);
    assert_eq!(puback(&mut publ, "b/end", false, 2), 0);
    assert_eq!(topics_until(&mut bob, "b/end"), Vec::<String>::new(), "alice's a/# delivered to bob");
    node.stop();
    node.join().unwrap();
}
