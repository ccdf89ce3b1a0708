"""paho-mqtt over TLS, WebSocket and WebSocket over TLS against RingMQ (issue 13).

Usage: transports.py CAFILE MQTTS_PORT WS_PORT WSS_PORT

Each transport: a 5.0 and a 3.1.1 client subscribe, publish at QoS 0, 1 and 2 with
payloads from empty to 300 kB (a packet in several TLS records and large WebSocket
frames), and read every message back. Every wait is bounded. Prints "N passed, M failed".
"""
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

WAIT = 20.0
SIZES = [0, 10, 70_000, 300_000]


def client(transport, port, cafile, protocol, cid):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, transport=transport, protocol=protocol)
    if transport == "websockets":
        c.ws_set_options(path="/mqtt")
    if cafile:
        c.tls_set(ca_certs=cafile, cert_reqs=ssl.CERT_REQUIRED)
    got = []
    done = threading.Event()
    connected = threading.Event()
    c.on_connect = lambda c, u, f, rc, p=None: connected.set()

    def on_message(c, u, m):
        got.append((m.topic, len(m.payload), m.qos))
        if len(got) >= 3 * len(SIZES):
            done.set()

    c.on_message = on_message
    c.connect("localhost", port, keepalive=30)
    c.loop_start()
    if not connected.wait(WAIT):
        raise AssertionError(f"{cid}: no CONNACK within {WAIT}s")
    return c, got, done


def check(name, transport, port, cafile, protocol):
    c, got, done = client(transport, port, cafile, protocol, f"paho-{name}")
    topic = f"tr/{name}"
    subscribed = threading.Event()
    c.on_subscribe = lambda *a: subscribed.set()
    c.subscribe(topic + "/#", qos=2)
    if not subscribed.wait(WAIT):
        raise AssertionError(f"{name}: no SUBACK")
    for qos in (0, 1, 2):
        for size in SIZES:
            info = c.publish(f"{topic}/{qos}", b"x" * size, qos=qos)
            info.wait_for_publish(WAIT)
    if not done.wait(WAIT):
        raise AssertionError(f"{name}: got {len(got)} of {3 * len(SIZES)} messages: {got}")
    sizes = sorted(s for _, s, _ in got)
    assert sizes == sorted(SIZES * 3), f"{name}: sizes {sizes}"
    c.disconnect()
    c.loop_stop()


def main():
    cafile, mqtts, ws, wss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cases = []
    for proto, pname in ((mqtt.MQTTv5, "v5"), (mqtt.MQTTv311, "v311")):
        cases.append((f"tls-{pname}", "tcp", mqtts, cafile, proto))
        cases.append((f"ws-{pname}", "websockets", ws, None, proto))
        cases.append((f"wss-{pname}", "websockets", wss, cafile, proto))
    passed = failed = 0
    for case in cases:
        started = time.time()
        try:
            check(*case)
            passed += 1
            print(f"ok   {case[0]} ({time.time() - started:.2f}s)")
        except Exception as e:  # report every case, then fail
            failed += 1
            print(f"FAIL {case[0]}: {e!r}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
