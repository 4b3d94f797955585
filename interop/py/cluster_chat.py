"""python-socketio as a chat member of a clustered hub, driven over stdin/stdout.

Usage: python3 cluster_chat.py URL TOKEN TRANSPORT NAME   (TRANSPORT: polling | websocket)
Connects (auth {token}), subscribes to chat:users, prints "ready <sid>". Then:
  stdin "say TEXT"  -> publish {"room": "chat:users", "event": "my reply", "data": {"name": NAME, "text": TEXT}}
  stdin "quit"      -> disconnect and exit 0
Prints "got <name> <text>" for every "my reply", "notification <json>" for pushes, and answers a
"whoami" call with {"name": NAME, "asked": data}.
"""
import json
import sys
import threading

import socketio

url, token, transport, name = sys.argv[1:5]
sio = socketio.Client(reconnection=False)
_lock = threading.Lock()


def out(line):
    # Handlers run on several threads: one whole line at a time.
    with _lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()



@sio.on('my reply')
def on_reply(data):
    d = data.get('data', {}) if isinstance(data, dict) else {}
    out(f"got {d.get('name')} {d.get('text')}")


@sio.on('notification')
def on_notification(data):
    out(f"notification {json.dumps(data, sort_keys=True)}")


@sio.on('disconnect')
def on_disconnect(reason=None):
    out(f"disconnected {reason}")


@sio.on('whoami')
def on_whoami(data):
    out(f"call {json.dumps(data, sort_keys=True)}")
    return {"name": name, "asked": data}


sio.connect(url, auth={"token": token}, transports=[transport], wait_timeout=10)
r = sio.call('subscribe', {"room": "chat:users"}, timeout=10)
if not r or not r.get('ok'):
    out(f"subscribe failed {r}")
    sys.exit(1)
out(f"ready {sio.get_sid()} {sio.transport()}")

for line in sys.stdin:
    line = line.strip()
    if line.startswith("say "):
        r = sio.call('publish', {"room": "chat:users", "event": "my reply",
                                 "data": {"name": name, "text": line[4:]}}, timeout=10)
        out(f"published {json.dumps(r, sort_keys=True)}")
    elif line == "quit":
        break
out(f"transport {sio.transport()}")
sio.disconnect()
sys.exit(0)
