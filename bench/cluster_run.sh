#!/usr/bin/env bash
# Side-by-side cluster benchmark: three nodes of each server (switchboard-socketio +
# switchboard-cluster on Redis and on NATS; socketioxide + socketioxide-redis; Node socket.io
# 4.8 + @socket.io/redis-adapter, sharded), each run on a fresh redis-server (nats-server for
# switchboard-nats). Nodes A and B hold CONNS/2 sockets each, all in room "bench"; node C holds
# none and publishes: ROUNDS_LAT single broadcasts timed from publish to last delivery
# (p50/p99), then COUNT broadcasts of SIZE bytes back to back, counted as deliveries per
# CPU-second of all three nodes and the broker together. Servers and the broker on core 0, the load generator on core 1. Also: the idle memory per socket
# of one switchboard node with the Redis adapter against the in-memory one.
#
#   bash bench/cluster_run.sh                 # 10k sockets, 100 x 100 B, 3 rounds (about 5 minutes)
#   ROUNDS=1 CONNS=2000 bash bench/cluster_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ulimit -n "$(ulimit -Hn)"
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10000}
COUNT=${COUNT:-100}
SIZE=${SIZE:-100}
LAT=${LAT:-50}
OUT=bench/results
mkdir -p "$OUT"
RES="$OUT/cluster_latest.txt"
: > "$RES"

echo "==> building (release)"
cargo build --release -q -p switchboard-bench --bin switchboard-sioload --example sio_switchboard_server --example sio_socketioxide_server
[ -d interop/node_modules/@socket.io/redis-adapter ] || (cd interop && npm ci --no-audit --no-fund --loglevel=error)
command -v redis-server >/dev/null || { echo "redis-server is needed"; exit 1; }
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || { echo "nats-server is needed"; exit 1; }
export PATH="$PATH:/usr/sbin"

LOAD="taskset -c 1 target/release/switchboard-sioload"
RPORT=7400
NPORT=7402


server_cmd() { # impl port
  local url="redis://127.0.0.1:$RPORT"
  case $1 in
    switchboard) echo "target/release/examples/sio_switchboard_server 127.0.0.1:$2 $url bench" ;;
    switchboard-nats) echo "target/release/examples/sio_switchboard_server 127.0.0.1:$2 nats://127.0.0.1:$NPORT bench" ;;
    socketioxide) echo "target/release/examples/sio_socketioxide_server 127.0.0.1:$2 $url" ;;
    node) echo "node bench/sio_node_server.js $2 $url bench" ;;
  esac
}

run_cluster() { # impl [recovery 0|1]
  local impl=$1 rec=${2:-0} pids=() ports=(7411 7412 7413)
  local js_dir
  js_dir=$(mktemp -d)
  if [ "$impl" = switchboard-nats ]; then
    taskset -c 0 nats-server -a 127.0.0.1 -p $NPORT -js -sd "$js_dir" >/dev/null 2>&1 &
  else
    taskset -c 0 redis-server --port $RPORT --save '' --appendonly no --bind 127.0.0.1 >/dev/null 2>&1 &
  fi
  local rpid=$!
  if [ "$impl" = switchboard-nats ]; then wait_port $NPORT; else wait_port $RPORT; fi
  for p in "${ports[@]}"; do
    SB_RECOVERY=$rec taskset -c 0 $(server_cmd "$impl" "$p") >/dev/null 2>&1 &
    pids+=($!)
  done
  for p in "${ports[@]}"; do wait_port "$p"; done
  sleep 1
  local line
  line=$($LOAD --mode cluster --addr 127.0.0.1:${ports[0]} --pid "${pids[0]}" \
    --addrs "127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}" --control "127.0.0.1:${ports[2]}" \
    --pids "${pids[0]},${pids[1]},${pids[2]},$rpid" --conns "$CONNS" --count "$COUNT" --size "$SIZE" --rounds "$LAT" | tail -1)
  kill "${pids[@]}" "$rpid" 2>/dev/null; wait "${pids[@]}" "$rpid" 2>/dev/null || true
  rm -rf "$js_dir"
  local label=$impl
  [ "$rec" = 1 ] && label="$impl-rec"
  echo "$label $line" | tee -a "$RES"
}

run_idle() { # label [redis|nats] [recovery 0|1]
  local label=$1 broker=${2:-} rec=${3:-0}
  local rpid=""
  export SB_RECOVERY=$rec
  if [ "$broker" = redis ]; then
    taskset -c 0 redis-server --port $RPORT --save '' --appendonly no --bind 127.0.0.1 >/dev/null 2>&1 &
    rpid=$!
    wait_port $RPORT
    taskset -c 0 target/release/examples/sio_switchboard_server 127.0.0.1:7421 "redis://127.0.0.1:$RPORT" bench >/dev/null 2>&1 &
  elif [ "$broker" = nats ]; then
    taskset -c 0 nats-server -a 127.0.0.1 -p $NPORT -js -sd "$(mktemp -d)" >/dev/null 2>&1 &
    rpid=$!
    wait_port $NPORT
    taskset -c 0 target/release/examples/sio_switchboard_server 127.0.0.1:7421 "nats://127.0.0.1:$NPORT" bench >/dev/null 2>&1 &
  else
    taskset -c 0 target/release/examples/sio_switchboard_server 127.0.0.1:7421 >/dev/null 2>&1 &
  fi
  local pid=$!
  wait_port 7421
  sleep 0.5
  local line
  line=$($LOAD --mode idle --addr 127.0.0.1:7421 --pid "$pid" --conns "$((CONNS / 2))" --settle 3 | tail -1)
  kill "$pid" $rpid 2>/dev/null; wait "$pid" $rpid 2>/dev/null || true
  unset SB_RECOVERY
  echo "$label $line" | tee -a "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  for s in switchboard switchboard-nats socketioxide node; do
    run_cluster "$s"
  done
  # The cost of recovery across nodes (RECOVERY=0 skips it): the log in Redis Streams /
  # JetStream against Node with @socket.io/redis-streams-adapter.
  if [ "${RECOVERY:-1}" = 1 ]; then
    for s in switchboard switchboard-nats node; do
      run_cluster "$s" 1
    done
  fi
  run_idle memory
  run_idle redis redis
  run_idle nats nats
  if [ "${RECOVERY:-1}" = 1 ]; then
    run_idle memory-rec "" 1
    run_idle redis-rec redis 1
    run_idle nats-rec nats 1
  fi
done

python3 - "$RES" <<'PY'
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, mode = line.split()[:2]
    kv = dict(re.findall(r"(\w+)=([\w./]+)", line))
    if mode == "cluster":
        for k in ("deliveries_per_cpu_s", "p50_ms", "p99_ms"):
            rows.setdefault((name, k), []).append(float(kv[k]))
        if kv.get("lost") != "0":
            print(f"WARNING: {name} lost {kv.get('lost')} deliveries")
    else:
        rows.setdefault((name, "bytes_per_socket"), []).append(float(kv["bytes_per_socket"]))
med = lambda n, k: statistics.median(rows.get((n, k), [0]))
print()
print(f"{'figure':34} {'switchboard':>12} {'sb on NATS':>11} {'socketioxide':>13} {'node':>10} {'vs sioxide':>10} {'vs node':>8} {'NATS/Redis':>10}")
for k, label, hi in [("deliveries_per_cpu_s", "deliveries per CPU-second", True), ("p50_ms", "publish -> last delivery p50 ms", False), ("p99_ms", "publish -> last delivery p99 ms", False)]:
    a, n, b, c = med("switchboard", k), med("switchboard-nats", k), med("socketioxide", k), med("node", k)
    r = lambda o: (a / o if hi else o / a) if o and a else 0
    nr = n / a if a else 0
    print(f"{label:34} {a:12.2f} {n:11.2f} {b:13.2f} {c:10.2f} {r(b):9.2f}x {r(c):7.2f}x {nr:9.2f}x")
print("(vs columns: switchboard on Redis against each peer, higher is better for switchboard; NATS/Redis: the raw ratio of each figure)")
print()
print("recovery on (the log in the broker) vs off, deliveries per CPU-second and latency:")
print(f"{'':16} {'off':>12} {'on':>12} {'on/off':>8} {'p50 off':>8} {'p50 on':>8}")
for n in ("switchboard", "switchboard-nats", "node"):
    a, b = med(n, "deliveries_per_cpu_s"), med(n + "-rec", "deliveries_per_cpu_s")
    pa, pb = med(n, "p50_ms"), med(n + "-rec", "p50_ms")
    print(f"{n:16} {a:12.0f} {b:12.0f} {(b / a if a else 0):7.2f}x {pa:8.1f} {pb:8.1f}")
sr, nr = med("switchboard-rec", "deliveries_per_cpu_s"), med("node-rec", "deliveries_per_cpu_s")
print(f"switchboard (Redis Streams) vs Node redis-streams-adapter, both with recovery: {(sr / nr if nr else 0):.2f}x")
for n in ("memory", "redis", "nats"):
    a, b = med(n, "bytes_per_socket"), med(n + "-rec", "bytes_per_socket")
    print(f"idle bytes/socket {n:8} off {a:8.0f}  on {b:8.0f}  ({(b / a - 1) * 100 if a else 0:+.1f}%)")
m, r, n = med("memory", "bytes_per_socket"), med("redis", "bytes_per_socket"), med("nats", "bytes_per_socket")
print(f"{'idle bytes/socket, in-memory':34} {m:12.0f}")
print(f"{'idle bytes/socket, Redis adapter':34} {r:12.0f}   ({(r / m - 1) * 100 if m else 0:+.1f}%)")
print(f"{'idle bytes/socket, NATS adapter':34} {n:12.0f}   ({(n / m - 1) * 100 if m else 0:+.1f}%)")
PY
