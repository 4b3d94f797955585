#!/usr/bin/env bash
# Side-by-side WebSocket benchmark: our echo server against tokio-tungstenite, fastwebsockets
# and Node `ws`, one after the other on the same pinned core (0), driven by the same load
# generator on the other core (1). Throughput runs in ROUNDS interleaved rounds (servers take
# turns, so drift of a shared machine spreads over all of them) and the table reports medians
# with their spread. Raw results go to bench/results/latest.jsonl. About 8 minutes on 2 cores.
#
#   bash bench/run.sh            # everything
#   QUICK=1 bash bench/run.sh    # shorter runs, no 100k test
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
. bench/lib.sh

ulimit -n "$(ulimit -Hn)"
DUR=${DUR:-6}
WARM=${WARM:-2}
ROUNDS=${ROUNDS:-3}
if [ "${QUICK:-0}" = 1 ]; then DUR=3; WARM=1; ROUNDS=1; fi
OUT=bench/results
mkdir -p "$OUT"
RES="$OUT/latest.jsonl"
: > "$RES"

echo "==> building (release)"
cargo build --release -q -p switchboard-ws --example echo_server
cargo build --release -q -p switchboard-bench --bin switchboard-loadgen --example tungstenite_echo --example fastwebsockets_echo
[ -d interop/node_modules/ws ] || (cd interop && npm ci --no-audit --no-fund --loglevel=error)

LOADGEN=target/release/switchboard-loadgen
PORT=9301
SERVER_PID=

start() { # name
  PORT=$((PORT + 1))
  case "$1" in
    switchboard) taskset -c 0 target/release/examples/echo_server "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
    tokio-tungstenite) taskset -c 0 target/release/examples/tungstenite_echo "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
    fastwebsockets) taskset -c 0 target/release/examples/fastwebsockets_echo "127.0.0.1:$PORT" >/dev/null 2>&1 & ;;
    node-ws) PORT=$PORT taskset -c 0 node interop/node/ws_server.mjs >/dev/null 2>&1 & ;;
  esac
  SERVER_PID=$!
  wait_port "$PORT"
}

stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  sleep 1
}

gen() { # label args...
  local label=$1; shift
  taskset -c 1 "$LOADGEN" --url "ws://127.0.0.1:$PORT/" --server-pid "$SERVER_PID" --label "$label" "$@" | tee -a "$RES"
}

SERVERS=(switchboard tokio-tungstenite fastwebsockets node-ws)
for round in $(seq 1 "$ROUNDS"); do
  for s in "${SERVERS[@]}"; do
    echo "==> round $round/$ROUNDS, $s: throughput"
    start "$s"
    gen "$s|100x20B" --conns 100 --size 20 --inflight 1 --duration "$DUR" --warmup "$WARM"
    gen "$s|100x16KiB" --conns 100 --size 16384 --inflight 1 --duration "$DUR" --warmup "$WARM"
    gen "$s|16x1KiBx16" --conns 16 --size 1024 --inflight 16 --duration "$DUR" --warmup "$WARM"
    stop
  done
done
for s in "${SERVERS[@]}"; do
  for n in 10000 19000; do
    echo "==> $s: idle memory at $n connections"
    start "$s"
    gen "$s|idle$n" --idle --conns "$n" --sources 8 --first-source 10
    stop
  done
done

if [ "${QUICK:-0}" != 1 ]; then
  echo "==> switchboard: 100k idle connections over 6 processes sharing the port (SO_REUSEPORT)"
  PORT=$((PORT + 1))
  pids=()
  for i in 0 1 2 3 4 5; do
    REUSEPORT=1 taskset -c 0 target/release/examples/echo_server "127.0.0.1:$PORT" >/dev/null 2>&1 &
    pids+=($!)
  done
  wait_port "$PORT"
  sleep 0.5
  rss() { local t=0; for p in "${pids[@]}"; do t=$((t + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done; echo $t; }
  before=$(rss)
  gens=()
  logs=()
  for i in 0 1 2 3 4 5; do
    log=$(mktemp)
    logs+=("$log")
    taskset -c 1 "$LOADGEN" --url "ws://127.0.0.1:$PORT/" --idle --conns 16667 --hold 60 --sources 4 --first-source $((20 + i * 4)) >"$log" &
    gens+=($!)
  done
  # Measure only once every generator holds all its connections.
  for _ in $(seq 1 120); do
    ready=0
    for log in "${logs[@]}"; do grep -q '^holding' "$log" && ready=$((ready + 1)); done
    [ "$ready" = 6 ] && break
    sleep 0.5
  done
  if [ "$ready" != 6 ]; then echo "100k: only $ready of 6 generators connected" >&2; fi
  sleep 2
  after=$(rss)
  per=$(( (after - before) * 1024 / 100002 ))
  echo "{\"label\":\"switchboard|idle100k-6proc\",\"mode\":\"idle\",\"conns\":100002,\"rss_before_kib\":$before,\"rss_after_kib\":$after,\"bytes_per_conn\":$per}" | tee -a "$RES"
  for p in "${gens[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "${logs[@]}"
  for p in "${gens[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
fi

python3 bench/table.py "$RES"
