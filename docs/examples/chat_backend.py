#!/usr/bin/env python3
"""Backend hooks for the switchboard hub: the seeds' chat, without writing Rust.

A client's `chat` event puts it in room `chat_users`; its `my message` goes to everyone in
`chat_users` as `my reply`, except the sender (python-socketio's `skip_sid`). The connect hook
refuses the user `banned` and puts everyone else in `lobby`; the subscribe hook keeps `admin:*`
rooms for users whose name starts with `admin`. Python's standard library only.

    python3 docs/examples/chat_backend.py 9000
    switchboard serve --config hooks.toml

with hooks.toml:

    [hooks]
    connect_url = "http://127.0.0.1:9000/connect"
    subscribe_url = "http://127.0.0.1:9000/subscribe"
    [[hooks.events]]
    pattern = "*"
    url = "http://127.0.0.1:9000/event"
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(path, req):
    if path == "/connect":
        user = req["client"]["user"]
        if user == "banned":
            return {"allow": False, "reason": "this user is banned"}
        return {"allow": True, "rooms": ["lobby"]}
    if path == "/subscribe":
        if req["room"].startswith("admin:") and not req["client"]["user"].startswith("admin"):
            return {"allow": False, "reason": "admin rooms are for admins"}
        return {"allow": True}
    event, data = req["event"], req["data"]
    if event == "chat":
        return {"actions": [{"join": "chat_users"}], "reply": {"ok": True, "room": "chat_users"}}
    if event == "my message":
        publish = {"room": "chat_users", "event": "my reply", "data": data, "skip_sender": True}
        return {"actions": [{"publish": publish}], "reply": {"ok": True}}
    if event == "slow":
        time.sleep(float(data or 1))
        return {"reply": {"ok": True}}
    if event == "bye":
        return {"actions": [{"disconnect": True}], "reply": {"ok": True, "bye": req["client"]["id"]}}
    return {"reply": {"ok": False, "error": f"unknown event {event!r}"}}


class Hooks(BaseHTTPRequestHandler):
    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        body = json.dumps(answer(self.path, req)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hooks).serve_forever()
