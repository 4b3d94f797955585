"""Prints the benchmark table from loadgen JSON lines, with ratios of switchboard to each peer."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip().startswith("{")]
by = {}
for r in rows:
    server, scenario = r["label"].split("|", 1)
    by.setdefault(scenario, {})[server] = r

print()
print(f"{'scenario':<16} {'server':<18} {'msg/s':>10} {'p50 µs':>8} {'p99 µs':>8} {'srv CPU s':>9} {'msg/CPU-s':>11} {'vs peer':>8}")
for scenario, servers in by.items():
    ours = servers.get("switchboard")
    for name, r in servers.items():
        if r["mode"] == "load":
            ratio = ""
            if ours and name != "switchboard" and r["msgs_per_cpu_s"]:
                ratio = f"{ours['msgs_per_cpu_s'] / r['msgs_per_cpu_s']:.2f}x"
            print(f"{scenario:<16} {name:<18} {r['msgs_per_sec']:>10.0f} {r['p50_us']:>8} {r['p99_us']:>8} {r['server_cpu_s']:>9.2f} {r['msgs_per_cpu_s']:>11.0f} {ratio:>8}")
print()
print(f"{'idle scenario':<22} {'server':<18} {'conns':>7} {'bytes/conn':>11} {'peer/ours':>10}")
for scenario, servers in by.items():
    ours = servers.get("switchboard")
    for name, r in servers.items():
        if r["mode"] == "idle":
            ratio = ""
            if ours and name != "switchboard" and ours["bytes_per_conn"] > 0:
                ratio = f"{r['bytes_per_conn'] / ours['bytes_per_conn']:.2f}x"
            print(f"{scenario:<22} {name:<18} {r['conns']:>7} {r['bytes_per_conn']:>11.0f} {ratio:>10}")
print()
print("msg/CPU-s: messages echoed per second of server CPU (higher is better); 'vs peer' = switchboard / peer.")
print("bytes/conn: server RSS growth per idle connection (lower is better); 'peer/ours' = peer / switchboard.")
