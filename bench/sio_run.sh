#!/usr/bin/env bash
# Side-by-side Socket.IO benchmark: our server (switchboard-socketio) against socketioxide and
# Node socket.io 4.8, each pinned to core 0, driven by switchboard-sioload on core 1 over the
# WebSocket transport. Servers take turns in ROUNDS interleaved rounds; the summary gives the
# median of each figure and its ratio to socketioxide and Node. Server RSS and CPU time come
# from /proc/PID, so the load generator's own cost is not counted. About 4 minutes.
#
#   bash bench/sio_run.sh               # 10k idle, 10k x 100 broadcast, 100-client acks, 3 rounds
#   ROUNDS=1 CONNS=2000 bash bench/sio_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ulimit -n "$(ulimit -Hn)"
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10000}
ACK_CLIENTS=${ACK_CLIENTS:-100}
ACK_SECS=${ACK_SECS:-5}
OUT=bench/results
mkdir -p "$OUT"
RES="$OUT/sio_latest.txt"
: > "$RES"

echo "==> building (release)"
cargo build --release -q -p switchboard-bench --bin switchboard-sioload --example sio_switchboard_server --example sio_socketioxide_server
[ -d interop/node_modules/socket.io ] || (cd interop && npm ci --no-audit --no-fund --loglevel=error)

LOAD="taskset -c 1 target/release/switchboard-sioload"
declare -A CMD=(
  [switchboard]="target/release/examples/sio_switchboard_server 127.0.0.1:7101"
  [socketioxide]="target/release/examples/sio_socketioxide_server 127.0.0.1:7102"
  [node]="node bench/sio_node_server.js 7103"
)
declare -A PORT=([switchboard]=7101 [socketioxide]=7102 [node]=7103)


run_one() { # server mode args...
  local name=$1 mode=$2; shift 2
  taskset -c 0 ${CMD[$name]} >/dev/null 2>&1 &
  local pid=$!
  wait_port "${PORT[$name]}"
  sleep 0.5
  local line
  line=$($LOAD --mode "$mode" --addr "127.0.0.1:${PORT[$name]}" --pid "$pid" "$@" | tail -1)
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  echo "$name $line" | tee -a "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  for s in switchboard socketioxide node; do
    run_one "$s" idle --conns "$CONNS" --settle 3
    run_one "$s" broadcast --conns "$CONNS" --count 100 --size 100
    run_one "$s" ack --conns "$ACK_CLIENTS" --secs "$ACK_SECS"
  done
done

python3 - "$RES" <<'PY'
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, mode = line.split()[:2]
    kv = dict(re.findall(r"(\w+)=([\w./]+)", line))
    key = {"idle": "bytes_per_socket", "broadcast": "deliveries_per_cpu_s", "ack": "rtt_per_cpu_s"}[mode]
    rows.setdefault((mode, name), []).append(float(kv[key]))
    if mode == "broadcast" and kv.get("lost") != "0":
        print(f"WARNING: {name} lost {kv.get('lost')} deliveries")
print()
print(f"{'figure':34} {'switchboard':>12} {'socketioxide':>13} {'node':>10} {'vs sioxide':>10} {'vs node':>8}")
for mode, label, better in [("idle", "idle bytes/socket (10k)", "lower"), ("broadcast", "broadcast deliveries/CPU-s", "higher"), ("ack", "ack round trips/CPU-s", "higher")]:
    med = {n: statistics.median(rows.get((mode, n), [0])) for n in ("switchboard", "socketioxide", "node")}
    def ratio(o):
        a, b = med["switchboard"], med[o]
        if not a or not b: return "n/a"
        return f"{(b / a if better == 'lower' else a / b):.2f}x"
    spread = {n: (min(rows.get((mode, n), [0])), max(rows.get((mode, n), [0]))) for n in med}
    print(f"{label:34} {med['switchboard']:>12.0f} {med['socketioxide']:>13.0f} {med['node']:>10.0f} {ratio('socketioxide'):>10} {ratio('node'):>8}")
    print(f"{'  (min-max)':34} {'%.0f-%.0f' % spread['switchboard']:>12} {'%.0f-%.0f' % spread['socketioxide']:>13} {'%.0f-%.0f' % spread['node']:>10}")
PY
