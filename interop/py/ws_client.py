"""Python `websockets` as a client against a Switchboard WebSocket echo server.

usage: ws_client.py URL [CA_PEM]

Runs the interop matrix (sizes, text/binary, fragmented messages, ping/pong, every valid
close code) and exits non-zero if any check fails. INTEROP_DEFLATE=1 turns permessage-deflate
on (websockets' default) and checks that it was negotiated.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.client import connect

SIZES = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]
CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]


async def main(url, ca):
    deflate = os.environ.get("INTEROP_DEFLATE") == "1"
    kw = dict(max_size=None, compression="deflate" if deflate else None, open_timeout=10, close_timeout=10)
    if url.startswith("wss:"):
        kw["ssl"] = ssl.create_default_context(cafile=ca)
    results = []

    def check(name, ok):
        results.append((name, ok))
        if not ok:
            print(f"FAIL {name}", flush=True)

    async with connect(url, **kw) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        check("permessage-deflate negotiated" if deflate else "no extension", ("permessage-deflate" in ext) == deflate)
        for n in SIZES:
            text = "é" * (n // 2) + "a" * (n % 2)
            await ws.send(text)
            check(f"text {n} B", await ws.recv() == text)
            data = os.urandom(n)
            await ws.send(data)
            check(f"binary {n} B", await ws.recv() == data)
        await ws.send(["frag", "mented ", "tëxt"])
        check("fragmented text", await ws.recv() == "fragmented tëxt")
        await ws.send([b"\x00\x01", b"", b"\x02" * 70000])
        check("fragmented binary", await ws.recv() == b"\x00\x01" + b"\x02" * 70000)
        waiter = await ws.ping(b"py-ping")
        await asyncio.wait_for(waiter, 5)
        check("ping/pong", True)
    for code in CODES:
        async with connect(url, **kw) as ws:
            await ws.close(code, "bye")
            rcvd = ws.protocol.close_rcvd
            check(f"close {code} echoed", rcvd is not None and rcvd.code == code)
    failed = sum(1 for _, ok in results if not ok)
    print(f"python websockets client matrix: {len(results) - failed} ok, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)))
