"""Python `websockets` echo server for Switchboard's client interop tests.

usage: ws_server.py [CERT_PEM KEY_PEM]   (prints the port it listens on, then serves)
INTEROP_DEFLATE=1 turns permessage-deflate on.
"""
import asyncio
import os
import ssl
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for msg in ws:
            await ws.send(msg)
    except ConnectionClosed:
        # Closes with codes other than 1000/1001 end the iteration with an exception; the
        # close handshake itself already completed.
        pass


async def main():
    deflate = os.environ.get("INTEROP_DEFLATE") == "1"
    kw = dict(max_size=None, compression="deflate" if deflate else None)
    if len(sys.argv) > 2:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        kw["ssl"] = ctx
    async with serve(echo, "127.0.0.1", 0, **kw) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
