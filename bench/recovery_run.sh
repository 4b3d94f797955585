#!/usr/bin/env bash
# The cost of connection state recovery, side by side: our server and Node socket.io 4.8, each
# with recovery off and on (SB_RECOVERY=1: Switchboard's in-memory log; Node's
# connectionStateRecovery with its in-memory SessionAwareAdapter), pinned to core 0, driven by
# switchboard-sioload on core 1 over WebSocket: idle bytes per socket and broadcast deliveries
# per server-CPU-second. ROUNDS interleaved rounds, medians.
#
#   bash bench/recovery_run.sh                  # 10k sockets, 3 rounds (about 4 minutes)
#   ROUNDS=1 CONNS=2000 bash bench/recovery_run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ulimit -n "$(ulimit -Hn)"
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-10000}
OUT=bench/results
mkdir -p "$OUT"
RES="$OUT/recovery_latest.txt"
: > "$RES"

echo "==> building (release)"
cargo build --release -q -p switchboard-bench --bin switchboard-sioload --example sio_switchboard_server
[ -d interop/node_modules/socket.io ] || (cd interop && npm ci --no-audit --no-fund --loglevel=error)
LOAD="taskset -c 1 target/release/switchboard-sioload"

run_one() { # label recovery(0|1) mode args...
  local label=$1 rec=$2 mode=$3; shift 3
  case $label in
    switchboard*) SB_RECOVERY=$rec taskset -c 0 target/release/examples/sio_switchboard_server 127.0.0.1:7131 >/dev/null 2>&1 & ;;
    node*) SB_RECOVERY=$rec taskset -c 0 node bench/sio_node_server.js 7131 >/dev/null 2>&1 & ;;
  esac
  local pid=$!
  wait_port 7131
  sleep 0.5
  local line
  line=$($LOAD --mode "$mode" --addr 127.0.0.1:7131 --pid "$pid" "$@" | tail -1)
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  echo "$label $line" | tee -a "$RES"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round/$ROUNDS"
  for s in switchboard:0 switchboard-recovery:1 node:0 node-recovery:1; do
    label=${s%%:*}; rec=${s##*:}
    run_one "$label" "$rec" idle --conns "$CONNS" --settle 3
    run_one "$label" "$rec" broadcast --conns "$CONNS" --count 100 --size 100
  done
done

python3 - "$RES" <<'PY'
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, mode = line.split()[:2]
    kv = dict(re.findall(r"(\w+)=([\w./]+)", line))
    key = {"idle": "bytes_per_socket", "broadcast": "deliveries_per_cpu_s"}[mode]
    rows.setdefault((mode, name), []).append(float(kv[key]))
    if mode == "broadcast" and kv.get("lost") != "0":
        print(f"WARNING: {name} lost {kv.get('lost')} deliveries")
med = lambda m, n: statistics.median(rows.get((m, n), [0]))
print()
print(f"{'figure':30} {'sb off':>10} {'sb on':>10} {'on/off':>7} {'node off':>10} {'node on':>10} {'on/off':>7} {'sb on / node on':>16}")
for mode, label in [("idle", "idle bytes/socket"), ("broadcast", "deliveries/CPU-s")]:
    a, b, c, d = med(mode, "switchboard"), med(mode, "switchboard-recovery"), med(mode, "node"), med(mode, "node-recovery")
    r = lambda x, y: f"{x / y:.2f}x" if y else "n/a"
    vs = (d / b if mode == "idle" else b / d) if b and d else 0
    print(f"{label:30} {a:>10.0f} {b:>10.0f} {r(b, a):>7} {c:>10.0f} {d:>10.0f} {r(d, c):>7} {vs:>15.2f}x")
print("(last column: Switchboard with recovery against Node with recovery; higher is better for Switchboard)")
PY
