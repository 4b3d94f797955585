"""Prints the benchmark table from loadgen JSON lines: per scenario and server, the median of
the rounds (and their min-max), with the ratio of switchboard's median to each peer's."""
import json
import statistics
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
runs = {}
for r in rows:
    server, scenario = r["label"].split("|", 1)
    runs.setdefault(scenario, {}).setdefault(server, []).append(r)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


print()
print(f"{'scenario':<12} {'server':<18} {'msg/s':>9} {'p50 us':>7} {'p99 us':>7} {'msg/CPU-s (min-max)':>26} {'ours/peer':>10}")
for scenario, servers in runs.items():
    if next(iter(servers.values()))[0]["mode"] != "load":
        continue
    ours = servers.get("switchboard")
    for name, rs in servers.items():
        m = med(rs, "msgs_per_cpu_s")
        spread = f"{m:.0f} ({min(r['msgs_per_cpu_s'] for r in rs):.0f}-{max(r['msgs_per_cpu_s'] for r in rs):.0f})"
        ratio = f"{med(ours, 'msgs_per_cpu_s') / m:.2f}x" if ours and name != "switchboard" and m else ""
        print(f"{scenario:<12} {name:<18} {med(rs, 'msgs_per_sec'):>9.0f} {med(rs, 'p50_us'):>7.0f} {med(rs, 'p99_us'):>7.0f} {spread:>26} {ratio:>10}")
print()
print(f"{'idle scenario':<16} {'server':<18} {'conns':>7} {'bytes/conn':>11} {'peer/ours':>10}")
for scenario, servers in runs.items():
    if next(iter(servers.values()))[0]["mode"] != "idle":
        continue
    ours = servers.get("switchboard")
    for name, rs in servers.items():
        b = med(rs, "bytes_per_conn")
        ratio = f"{b / med(ours, 'bytes_per_conn'):.2f}x" if ours and name != "switchboard" and med(ours, "bytes_per_conn") > 0 else ""
        print(f"{scenario:<16} {name:<18} {rs[0]['conns']:>7} {b:>11.0f} {ratio:>10}")
print()
print(f"rounds per throughput scenario: {max(len(rs) for s in runs.values() for rs in s.values())}")
print("msg/CPU-s: messages echoed per second of server CPU, median of the rounds (higher is better).")
print("ours/peer: switchboard's median / the peer's median. bytes/conn: server RSS growth per idle")
print("connection (lower is better); peer/ours: the peer's bytes / switchboard's.")
