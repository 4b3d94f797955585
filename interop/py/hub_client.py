"""python-socketio against the switchboard hub, with a JWT.

Usage: python3 hub_client.py URL TOKEN TRANSPORT   (TRANSPORT: polling | websocket)
Prints "ready <sid>", then waits for a pushed "notification" and answers a "whoami" call;
prints what it got and exits 0, or 1 after 20 s.
"""
import sys
import threading

import socketio

url, token, transport = sys.argv[1:4]
sio = socketio.Client(reconnection=False)
done = threading.Event()
got = {}


@sio.on('connect')
def on_connect():
    print(f"ready {sio.get_sid()}", flush=True)


@sio.on('notification')
def on_notification(data):
    got['notification'] = data
    print(f"notification {data}", flush=True)
    if 'call' in got:
        # Let the ack of the call leave before disconnecting.
        threading.Timer(0.3, done.set).start()


@sio.on('whoami')
def on_whoami(data):
    got['call'] = data
    print(f"call {data}", flush=True)
    if 'notification' in got:
        # The ack is sent when this handler returns; disconnect a moment later.
        threading.Timer(0.3, done.set).start()
    return {"user": "alice", "asked": data}


sio.connect(url, auth={"token": token}, transports=[transport], wait_timeout=10)
ok = done.wait(20)
print(f"transport {sio.transport()}", flush=True)
sio.disconnect()
sys.exit(0 if ok else 1)
