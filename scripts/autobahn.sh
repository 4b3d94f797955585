#!/usr/bin/env bash
# Autobahn|Testsuite against our echo examples, both sides, permessage-deflate on:
#   server: wstest fuzzingclient → target/release/examples/echo_server (DEFLATE=1)
#   client: wstest fuzzingserver ← target/release/examples/echo_client --deflate
#
#   bash scripts/autobahn.sh quick   # about 10 s per side: everything but 9.*, 12.*, 13.*
#   bash scripts/autobahn.sh full    # about 15 minutes per side: all 517 cases
#   KEEP=dir bash scripts/autobahn.sh full   # keep the JSON/HTML reports in dir/{server,client}
#
# The suite itself (a Python 3.11 port of wstest) lives outside this repository, in the
# workplace's shared tools: AUTOBAHN_TOOL (default ../shared/tools/autobahn beside the
# checkout). It is the only part of the project that needs it. Without it this script skips
# (exit 0) and says why, unless SWITCHBOARD_REQUIRE_PEERS=1 (CI), where that is a failure.
# Exit status: 0 when both sides have 0 FAILED, at most 5 NON-STRICT and, in full mode,
# 0 UNIMPLEMENTED.
# docs/conformance.md holds the latest full tables.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-quick}
case "$mode" in quick | full) ;; *) echo "usage: $0 quick|full" >&2; exit 2 ;; esac
tool=${AUTOBAHN_TOOL:-$PWD/../shared/tools/autobahn}
if [ ! -x "$tool/run.sh" ]; then
  echo "autobahn: skipped: the suite is not at $tool (set AUTOBAHN_TOOL)"
  [ "${SWITCHBOARD_REQUIRE_PEERS:-}" = 1 ] && exit 1
  exit 0
fi
cargo build --release -q --locked -p switchboard-ws --examples || exit 1
status=0
for side in server client; do
  keep=()
  [ -n "${KEEP:-}" ] && keep=(KEEP="$KEEP/$side")
  log=$(mktemp)
  env SKIP_BUILD=1 DEFLATE=1 CLIENT_ARGS=--deflate "${keep[@]}" "$tool/run.sh" "$side" "$mode" | tee "$log" || status=1
  # The last line is the summary: also hold NON-STRICT to at most 5 (docs/conformance.md).
  nonstrict=$(tail -n 1 "$log" | sed -n 's/.*NON-STRICT=\([0-9]*\).*/\1/p')
  rm -f "$log"
  if [ "${nonstrict:-99}" -gt 5 ]; then echo "autobahn $side: NON-STRICT=${nonstrict:-?} (at most 5 allowed)"; status=1; fi
done
exit $status
