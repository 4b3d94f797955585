"""python-socketio (the official Python client) against our Socket.IO server.

Usage: python3 sio_client.py URL HEARTBEAT_URL MODE   (MODE: polling | websocket | upgrade)
Prints one line per check and "N passed, M failed"; exits 1 if any failed.
"""
import sys
import threading
import time

import socketio

url, hb_url, mode = sys.argv[1:4]
transports = {"polling": ["polling"], "websocket": ["websocket"], "upgrade": ["polling", "websocket"]}[mode]
passed = failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}", flush=True)
    else:
        failed += 1
        print(f"FAIL {name} {detail}", flush=True)


def step(f):
    try:
        f()
    except Exception as e:  # noqa: BLE001 - any failure is a failed check
        check(f.__name__, False, repr(e))
    return f


class Inbox:
    """Collects events by name; wait() blocks until one arrives."""

    def __init__(self):
        self.cv = threading.Condition()
        self.items = {}

    def put(self, name, *args):
        with self.cv:
            self.items.setdefault(name, []).append(args)
            self.cv.notify_all()

    def wait(self, name, timeout=5.0):
        end = time.time() + timeout
        with self.cv:
            while not self.items.get(name):
                left = end - time.time()
                if left <= 0:
                    raise TimeoutError(f"no {name}")
                self.cv.wait(left)
            return self.items[name].pop(0)

    def none(self, name, within=0.4):
        time.sleep(within)
        with self.cv:
            return not self.items.get(name)


def client(auth=None, namespaces=None, target=None):
    sio = socketio.Client(reconnection=False)
    box = Inbox()
    for ev in ("welcome", "echo", "news", "news2", "answer", "message"):
        sio.on(ev, (lambda e: lambda *a: box.put(e, *a))(ev))
    for ns in namespaces or []:
        if ns != "/":
            sio.on(ns.strip("/").split("-")[0] + "-welcome", lambda *a: box.put("ns-welcome", *a), namespace=ns)
    sio.on("disconnect", lambda *a: box.put("disconnect", *a))
    sio.connect(target or url, transports=transports, auth=auth, namespaces=namespaces, wait_timeout=5)
    return sio, box


@step
def seed_client_snippet():
    # The seed's client, unchanged in shape: sio = socketio.Client(), @sio.on('connect'),
    # sio.connect(url), sio.wait(). The server ends the wait by disconnecting us.
    sio = socketio.Client()
    seen = []

    @sio.on('connect')
    def on_connect():
        seen.append('connect')
        sio.emit('chat')
        sio.emit('server_disconnect')

    @sio.on('disconnect')
    def on_disconnect(*args):
        seen.append('disconnect')

    sio.connect(url, transports=transports)
    t = threading.Timer(10, sio.disconnect)
    t.start()
    sio.wait()
    t.cancel()
    check("seed client: connect, emit, wait until the server disconnects", seen == ['connect', 'disconnect'], seen)


@step
def events_and_acks():
    sio, box = client()
    (w,) = box.wait("welcome")
    check("welcome after CONNECT", w["sid"] == sio.get_sid(), (w, sio.get_sid()))
    if mode == "upgrade":
        for _ in range(50):
            if sio.transport() == "websocket":
                break
            time.sleep(0.1)
    check(f"transport for {mode}", sio.transport() == ("polling" if mode == "polling" else "websocket"), sio.transport())
    sio.emit("echo", ({"a": 1}, "two", 3))
    check("event client→server→client", box.wait("echo") == ({"a": 1}, "two", 3))
    r = sio.call("echo", {"b": 2}, timeout=5)
    check("client→server ack", r == {"b": 2}, r)
    sio.on("question", lambda q: {"answer": 42, "q": q})
    sio.emit("ask")
    (a,) = box.wait("answer")
    check("server→client ack", a == {"ok": [{"answer": 42, "q": {"q": "life"}}]}, a)
    sio.send("hello")
    check("send / message", box.wait("message") == ("hello",))
    data = bytes([0, 1, 2, 250, 255])
    sio.emit("echo", ({"name": "file"}, data))
    meta, b = box.wait("echo")
    check("binary event round trip", meta == {"name": "file"} and b == data, (meta, b))
    big = bytes([7]) * 200000
    check("binary ack (200 kB)", sio.call("echo", big, timeout=5) == big)
    sio.emit("echo", (1, data, {"a": 2}))
    got = box.wait("echo")
    check("binary between arguments keeps its place", got == (1, data, {"a": 2}), got)
    # Binary nested in objects, both ways.
    file, part, tail = b"abc", bytes([1, 2]), b"tail"
    sio.on("nested-raw", lambda *a: box.put("nested-raw", *a))
    reply, first = sio.call("nested", ({"file": file, "meta": {"parts": [part, "x"]}}, 7, tail), timeout=5)
    check("server read nested binary into typed fields", reply["sizes"] == [3, 2, 4], reply)
    check("server sent binary nested in an object", reply["swapped"]["a"] == tail, reply)
    check("server sent binary nested in an array", reply["swapped"]["b"] == [7, file], reply)
    check("binary as a later argument", first == part and reply["text"] == "x", (first, reply))
    raw = box.wait("nested-raw")
    check("received arguments sent on unchanged", raw == ({"file": file, "meta": {"parts": [part, "x"]}}, 7, tail), raw)
    sio.disconnect()


@step
def rooms_and_except():
    a, abox = client()
    b, bbox = client()
    c, cbox = client()
    check("join", a.call("join", "r1", timeout=5) is True)
    b.call("join", "r1", timeout=5)
    rooms = a.call("rooms", timeout=5)
    check("rooms lists own id and r1", a.get_sid() in rooms and "r1" in rooms, rooms)
    a.call("to_room", {"room": "r1", "event": "news", "data": 1}, timeout=5)
    check("room member gets broadcast", bbox.wait("news") == (1,))
    check("sender skipped; non-member not reached", abox.none("news") and cbox.none("news", 0))
    c.call("join", "r1", timeout=5)
    a.call("to_room", {"room": "r1", "event": "news2", "data": 2, "except": b.get_sid()}, timeout=5)
    check("except sid (skip_sid): others get it", abox.wait("news2") == (2,) and cbox.wait("news2") == (2,))
    check("except sid: skipped one does not", bbox.none("news2"))
    for s in (a, b, c):
        s.disconnect()


@step
def namespaces_and_auth():
    s, box = client(auth={"role": "admin"}, namespaces=["/", "/admin"])
    check("namespace /admin with auth", box.wait("ns-welcome")[-1] == "hello admin")
    s.disconnect()
    try:
        client(auth={"token": "bad"})
        check("auth refusal", False, "connected")
    except socketio.exceptions.ConnectionError as e:
        check("auth refusal", "failed to connect" in str(e), str(e))
    try:
        client(namespaces=["/nope"])
        check("unknown namespace refused", False, "connected")
    except socketio.exceptions.ConnectionError as e:
        check("unknown namespace refused", True, str(e))
    s, box = client(namespaces=["/dyn-7"])
    check("dynamic namespace", box.wait("ns-welcome")[-1] == "/dyn-7")
    s.disconnect()


@step
def disconnects():
    s, box = client()
    s.emit("server_disconnect")
    box.wait("disconnect")
    check("server disconnect", not s.connected)
    s2, _ = client()
    print(f"client-disconnect-sid {s2.get_sid()}", flush=True)
    s2.disconnect()


@step
def heartbeat_timeout():
    s, box = client(target=hb_url)
    print(f"heartbeat-sid {s.get_sid()}", flush=True)
    orig = s.eio._send_packet

    def no_pong(pkt):
        if pkt.packet_type != 3:  # PONG
            orig(pkt)

    s.eio._send_packet = no_pong
    box.wait("disconnect", timeout=8)
    check("server closes a client that stops answering pings", not s.connected)


print(f"{passed} passed, {failed} failed", flush=True)
sys.exit(1 if failed else 0)
