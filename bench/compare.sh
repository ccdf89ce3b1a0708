#!/usr/bin/env bash
# Side-by-side broker comparison: the same loadgen scenarios against RingMQ, the peers
# (Mosquitto, nats-server, rumqttd; see ../shared/peers) and the raw io_uring relay, in one
# go on this machine, printed as one table with the machine's description on top.
#
#   bench/compare.sh [--quick] [--per-core] [--brokers "ringmq mosquitto nats rumqttd relay mosquitto-nodelay ..."]
#                    [--only TEXT] [--no-build] [--out DIR] [--generator loadgen|clientgen]
#
# ringmq-seg-interval and ringmq-seg-always are RingMQ with segment storage (fsync
# interval:5ms / always); they run only the QoS 1 storage row, where plain ringmq is the
# memory figure.
# mosquitto-nodelay is Mosquitto with `set_tcp_nodelay true` (not in the default list):
# RingMQ sets TCP_NODELAY, Mosquitto by default does not, and on loopback a segment Nagle
# holds back is sent later from the peer's CPU, when the peer's packet acknowledges the
# last one; per core that moves about half of Mosquitto's transmit work (and its loopback
# delivery) onto the generator's CPU (bench/RESULTS.md, 2026-12-02, session 7).
# --quick: 3 s runs instead of 10 s (a smoke test of the script, not a measurement).
# --per-core: the broker on CPU 0 alone (RingMQ --shards 1, nats-server GOMAXPROCS=1, every
# broker under taskset), loadgen on CPU 1: broker against broker per core. Without it both
# share the whole machine.
# --only TEXT: only the scenarios whose name contains TEXT (e.g. --only flood).
# --no-build: use the release binaries already built (in $CARGO_TARGET_DIR or target/).
# --generator clientgen: load from the second generator (bench/src/bin/clientgen.rs, rumqttc
# on tokio) instead of loadgen, for the rows it can run (the fixed-rate p2p, fan-out and
# fan-in rows); the others are skipped.
# Flood rows (loadgen --flood): every publisher as fast as its own in-flight window allows,
# no end-to-end limit; "msg/s received" is then messages delivered over the time from the
# first publish to the last delivery, and "lost" adds "(N acked)" when the broker lost
# messages it had acknowledged (loadgen exits 1 then; the row is still recorded).
# Per broker and scenario it records received msg/s, end-to-end p50/p99/p99.9, broker CPU
# seconds per million messages delivered (utime+stime from /proc), and the broker's peak
# RSS (VmHWM). Each broker is restarted for every scenario so peak RSS is per scenario.
# Results: DIR/results.md (the table) and one loadgen JSON per run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PEERS="${PEERS:-$ROOT/../shared/peers}"
OUT="$ROOT/target/compare"
DUR=10s
WARM=2s
BROKERS="ringmq mosquitto nats rumqttd relay ringmq-seg-interval ringmq-seg-always"
ONLY=""
BUILD=1
PER_CORE=0
GEN=loadgen
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) DUR=3s; WARM=1s ;;
    --per-core) PER_CORE=1 ;;
    --brokers) BROKERS="$2"; shift ;;
    --only) ONLY="$2"; shift ;;
    --no-build) BUILD=0 ;;
    --out) OUT="$2"; shift ;;
    --generator) GEN="$2"; shift ;;
    *) echo "usage: bench/compare.sh [--quick] [--per-core] [--brokers LIST] [--only TEXT] [--no-build] [--out DIR] [--generator loadgen|clientgen]" >&2; exit 2 ;;
  esac
  shift
done
case "$GEN" in loadgen|clientgen) ;; *) echo "--generator $GEN: loadgen or clientgen" >&2; exit 2 ;; esac
mkdir -p "$OUT"
ulimit -n 20000 2>/dev/null || true

if [ "$BUILD" = 1 ]; then cargo build --release -q -p ringmq -p loadgen -p bench --bins; fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
LG="$BIN/loadgen"
CG="$BIN/clientgen"
RUN="${PEERS_RUN:-/tmp/ringmq-peers}"
# Per core: the broker (and everything it starts) on CPU 0, loadgen on CPU 1.
BPIN=(); LGPIN=(); SHARDS=()
if [ "$PER_CORE" = 1 ]; then
  BPIN=(taskset -c 0); LGPIN=(taskset -c 1); SHARDS=(--shards 1)
  export GOMAXPROCS=1
fi

port_of() {
  case "$1" in ringmq|ringmq-seg-interval|ringmq-seg-always) echo 18880 ;; mosquitto|mosquitto-nodelay) echo 18830 ;; nats) echo 18831 ;; rumqttd) echo 18833 ;; relay) echo 18884 ;; esac
}

start_broker() {
  case "$1" in
    ringmq) "${BPIN[@]}" "$BIN/ringmq" --listen 127.0.0.1:18880 --log-level warn "${SHARDS[@]}" >"$OUT/ringmq.log" 2>&1 &
            echo $! >"$OUT/ringmq.pid" ;;
    relay) "${BPIN[@]}" "$BIN/relay" --listen 127.0.0.1:18884 >"$OUT/relay.log" 2>&1 &
           echo $! >"$OUT/relay.pid" ;;
    mosquitto-nodelay)
      # The peer's configuration with Nagle's algorithm off, as RingMQ runs: see above.
      { cat "$PEERS/mosquitto.conf"; echo "set_tcp_nodelay true"; } >"$OUT/mosquitto-nodelay.conf"
      "${BPIN[@]}" mosquitto -c "$OUT/mosquitto-nodelay.conf" >"$OUT/mosquitto-nodelay.log" 2>&1 &
      echo $! >"$OUT/mosquitto-nodelay.pid" ;;
    ringmq-seg-*)
      rm -rf "$OUT/data"
      local fsync=always; [ "$1" = ringmq-seg-interval ] && fsync=interval:5ms
      "${BPIN[@]}" "$BIN/ringmq" --listen 127.0.0.1:18880 --log-level warn --storage segment \
        --data-dir "$OUT/data" --fsync "$fsync" "${SHARDS[@]}" >"$OUT/$1.log" 2>&1 &
      echo $! >"$OUT/$1.pid" ;;
    *) "${BPIN[@]}" bash "$PEERS/peers.sh" start "$1" >/dev/null; cp "$RUN/$1.pid" "$OUT/$1.pid" ;;
  esac
  local port; port=$(port_of "$1")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0; sleep 0.1; done
  echo "$1 did not come up on $port" >&2; return 1
}

stop_broker() {
  local pid; pid=$(cat "$OUT/$1.pid" 2>/dev/null || true)
  case "$1" in
    ringmq|ringmq-seg-*|relay|mosquitto-nodelay) kill "$pid" 2>/dev/null || true ;;
    *) bash "$PEERS/peers.sh" stop "$1" >/dev/null || true ;;
  esac
  # Gone before the next broker starts: one still listening on a shared port would take
  # the next run's connections.
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

# A row that runs for a time; one with --count runs until its messages are sent (no
# warm-up, at most 60 s) and delivered (or loadgen's drain is over).
T="--duration $DUR --warmup $WARM"
# Flood rows: a fixed count per publisher with the window of a common client (rumqttc's
# default, 100), and up to 60 s after publishing for the subscribers to receive what the
# broker accepted (the run ends as soon as they have): a deep buffer is not a loss.
F="--inflight 100 --drain 60s"
# name | loadgen arguments | which brokers can run it | clientgen arguments (none: loadgen only)
SCENARIOS=(
  "fan-in 8->1 QoS0 64B max|fan-in --publishers 8 --subscribers 1 --qos 0 --size 64 --max $T|all"
  "fan-out 1->100 QoS0 64B max|fan-out --publishers 1 --subscribers 100 --qos 0 --size 64 --max $T|all"
  "fan-out 1->100 QoS0 64B 100k/s delivered|fan-out --publishers 1 --subscribers 100 --qos 0 --size 64 --rate 1000 $T|all|--scenario fan-out --publishers 1 --subscribers 100 --qos 0 --size 64 --rate 1000 --duration ${DUR%s} --warmup ${WARM%s}"
  "fan-in 100->1 QoS1 64B 50k msg/s|fan-in --publishers 100 --subscribers 1 --qos 1 --size 64 --rate 50000 $T|qos1|--scenario fan-in --publishers 100 --subscribers 1 --qos 1 --size 64 --rate 50000 --duration ${DUR%s} --warmup ${WARM%s}"
  "p2p 20k msg/s QoS1 64B|p2p --publishers 10 --qos 1 --size 64 --rate 20000 $T|qos1|--publishers 10 --qos 1 --size 64 --rate 20000 --duration ${DUR%s} --warmup ${WARM%s}"
  "15000 idle connections|conn --subscribers 15000 --connect-rate 5000 $T|all"
  "fan-in 8->1 QoS1 64B max|fan-in --publishers 8 --subscribers 1 --qos 1 --size 64 --max --inflight 100 $T|storage"
  "flood 1->1 QoS1 64B 50k msg|fan-in --flood --publishers 1 --subscribers 1 --qos 1 --size 64 $F --count 50000|qos1"
  "flood 10->1 QoS0 64B 10x20k msg|fan-in --flood --publishers 10 --subscribers 1 --qos 0 --size 64 $F --count 20000|all"
  "flood 10->1 QoS1 64B 10x20k msg|fan-in --flood --publishers 10 --subscribers 1 --qos 1 --size 64 $F --count 20000|qos1"
  "flood 10->10 QoS0 64B 10x20k msg|fan-in --flood --publishers 10 --subscribers 10 --qos 0 --size 64 $F --count 20000|all"
  "flood 1->10 QoS0 64B 200k msg|fan-out --flood --publishers 1 --subscribers 10 --qos 0 --size 64 $F --count 200000|all"
)

if [[ " $BROKERS " == *" mosquitto "* || " $BROKERS " == *" mosquitto-nodelay "* || " $BROKERS " == *" nats "* || " $BROKERS " == *" rumqttd "* ]]; then
  bash "$PEERS/peers.sh" install >/dev/null
fi

HZ=$(getconf CLK_TCK)
ROWS="$OUT/rows.tsv"
: >"$ROWS"
for sc in "${SCENARIOS[@]}"; do
  IFS='|' read -r name args which cgargs <<<"$sc"
  if [ -n "$ONLY" ] && [[ "$name" != *"$ONLY"* ]]; then continue; fi
  if [ "$GEN" = clientgen ] && [ -z "$cgargs" ]; then continue; fi
  for b in $BROKERS; do
    # The relay has no acknowledgements: QoS 1 runs are not meaningful against it.
    if [ "$which" = qos1 ] && [ "$b" = relay ]; then continue; fi
    # Storage rows compare RingMQ's engines with each other (memory is plain ringmq).
    if [ "$which" = storage ] && [[ "$b" != ringmq* ]]; then continue; fi
    if [ "$which" != storage ] && [[ "$b" == ringmq-seg-* ]]; then continue; fi
    start_broker "$b"
    pid=$(cat "$OUT/$b.pid")
    port=$(port_of "$b")
    before=$(cpu_ticks "$pid")
    json="$OUT/$(echo "$b-$name" | tr -c 'a-zA-Z0-9\n' '_').json"
    rm -f "$json"
    if [ "$GEN" = clientgen ]; then
      # shellcheck disable=SC2086
      "${LGPIN[@]}" "$CG" $cgargs --broker "127.0.0.1:$port" --json "$json" \
        >"$json.txt" 2>&1 || echo "  ($b: clientgen exited $?; see $json.txt)" >&2
    else
      # shellcheck disable=SC2086
      "${LGPIN[@]}" "$LG" $args --broker "127.0.0.1:$port" --quiet --json "$json" \
        >"$json.txt" 2>&1 || echo "  ($b: loadgen exited $?; see $json.txt)" >&2
    fi
    after=$(cpu_ticks "$pid")
    rss=$(peak_rss_kb "$pid")
    stop_broker "$b"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$b" "$json" "$(( after - before ))" "$rss" >>"$ROWS"
    echo "done: $name / $b" >&2
  done
done

python3 - "$ROWS" "$HZ" "$DUR" "$PER_CORE" "$GEN" >"$OUT/results.md" <<'PY'
import json, sys, platform, os, subprocess
rows, hz, dur, per_core, gen = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5]
cpu = "unknown CPU"
try:
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip(); break
except OSError:
    pass
mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
mode = f"per core: broker on CPU 0 (RingMQ 1 shard), {gen} on CPU 1" if per_core else f"whole machine: broker and {gen} share every CPU"
print(f"Machine: {cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB, Linux {platform.release()}; generator {gen}; runs of {dur} after warm-up; {mode}.\n")
print("| scenario | broker | msg/s received | p50 ms | p99 ms | p99.9 ms | lost | broker CPU s / M msg | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for line in open(rows):
    name, broker, path, ticks, rss = line.rstrip("\n").split("\t")
    try:
        j = json.load(open(path))
    except (OSError, ValueError):
        print(f"| {name} | {broker} | failed: see {os.path.basename(path)}.txt | | | | | | |"); continue
    cpu_s = int(ticks) / hz
    rss_mib = int(rss or 0) / 1024
    if j["params"]["scenario"] == "conn":
        print(f"| {name} | {broker} | {j['connected']} connected in {j['connect_time_s']:.2f} s | "
              f"{j['connect_latency_us']['p50']/1000:.2f} | {j['connect_latency_us']['p99']/1000:.2f} | "
              f"{j['connect_latency_us']['p99_9']/1000:.2f} | | {cpu_s:.2f} s total | {rss_mib:.0f} |")
        continue
    l = j["latency_us"]
    per_m = cpu_s / (j["unique"] / 1e6) if j["unique"] else float("nan")
    lost = f"{j['lost']}" + (f" ({j['acked_lost']} acked)" if j.get("acked_lost") else "")
    print(f"| {name} | {broker} | {j['received_rate']:.0f} | {l['p50']/1000:.2f} | {l['p99']/1000:.2f} | "
          f"{l['p99_9']/1000:.2f} | {lost} | {per_m:.2f} | {rss_mib:.0f} |")
PY
cat "$OUT/results.md"
