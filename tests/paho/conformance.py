"""Paho-style interoperability checks run with the paho-mqtt client (PyPI) against a
running RingMQ: basic QoS, retained through wildcards, $-topics, overlapping
subscriptions, keep-alive with a will, offline queueing, MQTT 5 subscription options and
properties, and shared subscriptions. (paho-mqtt 2.2 does not resolve topic aliases the
broker assigns, so those are checked with rumqttc and raw packets in net_v5_flow.rs.) Usage: conformance.py PORT. Exit status 1 on any failure."""
import time, sys
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes
PORT=int(sys.argv[1])
def client(cid, proto=mqtt.MQTTv311, clean=True, **kw):
    got=[]
    c=mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=proto, **({"clean_session":clean} if proto!=mqtt.MQTTv5 else {}))
    c.on_message=lambda cl,u,m: got.append((m.topic,m.payload,m.qos,m.retain))
    c.got=got
    return c
def wait_for(cond, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()

def subscribed(c, *args, **kw):
    done = []
    c.on_subscribe = lambda *a: done.append(1)
    c.subscribe(*args, **kw)
    assert wait_for(lambda: done), "no SUBACK"

results=[]
def check(name, cond):
    results.append((name,cond)); print(("PASS " if cond else "FAIL ")+name)

# basic
a=client("basic"); a.connect("127.0.0.1",PORT); a.loop_start()
subscribed(a, "TopicA", 2)
for q in (0,1,2): a.publish("TopicA", b"qos %d"%q, q)
check("basic", wait_for(lambda: len(a.got)==3))
# retained via +/+
for i,t in enumerate(["TopicA/B","Topic/C","TopicA/C"]): a.publish(t, b"ret", i, retain=True)
time.sleep(0.3)
b=client("ret"); b.connect("127.0.0.1",PORT); b.loop_start(); subscribed(b, "+/+", 2)
check("retained", wait_for(lambda: len(b.got)==3) and all(m[3] for m in b.got))
for t in ["TopicA/B","Topic/C","TopicA/C"]: a.publish(t, b"", 0, retain=True)
time.sleep(0.3)
c=client("ret2"); c.connect("127.0.0.1",PORT); c.loop_start(); subscribed(c, "+/+", 2); time.sleep(0.5)
check("retained cleared", len(c.got)==0)
# dollar topics
d=client("dollar"); d.connect("127.0.0.1",PORT); d.loop_start(); subscribed(d, "#", 2)
a.publish("$TopicA/B", b"x", 1, retain=True); a.publish("TopicA/marker", b"m", 1)
wait_for(lambda: any(m[0]=="TopicA/marker" for m in d.got))
check("dollar not matched by #", all(not m[0].startswith("$") for m in d.got))
a.publish("$TopicA/B", b"", 1, retain=True)
# overlapping
e=client("overlap"); e.connect("127.0.0.1",PORT); e.loop_start(); subscribed(e, [("TopicA/#",2),("TopicA/+",1)])
a.publish("TopicA/C", b"ov", 2); wait_for(lambda: e.got); time.sleep(0.3)
check("overlapping", len(e.got)==1 and e.got[0][2]==2 or (len(e.got)==2))
# keepalive + will
w=client("willer"); w.will_set("TopicA/will", b"gone", 1); w.connect("127.0.0.1",PORT, keepalive=2)
# never loop: no pings
t0=time.time(); subscribed(a, "TopicA/will", 1); a.got.clear()
wait_for(lambda: a.got, 10)
check("keepalive 2s: will after %.1fs"%(time.time()-t0), len(a.got)==1 and 2.5<=time.time()-t0<9)
# offline queueing
o=client("offline", clean=False); o.connect("127.0.0.1",PORT); o.loop_start(); subscribed(o, "+/+", 2); o.disconnect(); time.sleep(0.2); o.loop_stop()
for q in (0,1,2): a.publish("TopicA/B", b"off %d"%q, q).wait_for_publish(5)
o2=client("offline", clean=False); o2.connect("127.0.0.1",PORT); o2.loop_start(); wait_for(lambda: len(o2.got)>=2); time.sleep(0.3)
check("offline queue %r"%[m[1] for m in o2.got], [m[1] for m in o2.got] in ([b"off 1",b"off 2"],[b"off 0",b"off 1",b"off 2"]))
# v5 subscription id + user props + no local
v=client("v5", proto=mqtt.MQTTv5); v.connect("127.0.0.1",PORT); v.loop_start()
props=Properties(PacketTypes.SUBSCRIBE); props.SubscriptionIdentifier=7
seen=[]
v.on_message=lambda cl,u,m: seen.append(m)
subscribed(v, "v5/t", options=mqtt.SubscribeOptions(qos=1, noLocal=True), properties=props)
pp=Properties(PacketTypes.PUBLISH); pp.UserProperty=("k","v"); pp.ContentType="text/plain"
v.publish("v5/t", b"self", 1, properties=pp).wait_for_publish(5); a.publish("v5/t", b"other", 1); wait_for(lambda: seen); time.sleep(0.2)
check("no local", [m.payload for m in seen]==[b"other"])
check("sub id", seen and getattr(seen[0].properties,"SubscriptionIdentifier",None)==[7])
v2=client("v5b", proto=mqtt.MQTTv5); v2.connect("127.0.0.1",PORT); v2.loop_start(); seen2=[]
v2.on_message=lambda cl,u,m: seen2.append(m); subscribed(v2, "v5/t", 1)
v.publish("v5/t", b"props", 1, properties=pp); wait_for(lambda: seen2)
check("user props passthrough", seen2 and seen2[0].properties.UserProperty==[("k","v")] and seen2[0].properties.ContentType=="text/plain")
# shared subscription: a 3.1.1 and a 5.0 member, each message to exactly one
s1=client("share1"); s1.connect("127.0.0.1",PORT); s1.loop_start(); subscribed(s1, "$share/pg/share/t", 1)
s2=client("share2", proto=mqtt.MQTTv5); s2.connect("127.0.0.1",PORT); s2.loop_start(); subscribed(s2, "$share/pg/share/t", 1)
for i in range(20): a.publish("share/t", b"%d"%i, 1).wait_for_publish(5)
wait_for(lambda: len(s1.got)+len(s2.got)>=20); time.sleep(0.3)
shared=sorted(int(m[1]) for m in s1.got+s2.got)
check("shared subscription %d/%d"%(len(s1.got),len(s2.got)), shared==list(range(20)) and s1.got and s2.got)
passed = sum(1 for _,c in results if c)
print("%d passed, %d failed" % (passed, len(results)-passed))
sys.exit(0 if passed == len(results) else 1)
