"""A WebSocket echo server from the `websockets` library, for interop tests.

Usage: ws_echo_server.py PORT SECONDS [CERT KEY]
Listens on 127.0.0.1:PORT (wss with CERT and KEY), echoes every message, and when it stops prints
one line per finished connection: `closed <code>` (the close code the
client sent, or `none`), then `messages <n>`.
"""

import asyncio
import ssl
import sys

import websockets


async def main(port: int, seconds: float, tls) -> None:
    codes = []
    count = 0

    async def echo(ws):
        nonlocal count
        try:
            async for message in ws:
                count += 1
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass
        codes.append(ws.close_code)

    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    async with websockets.serve(echo, "127.0.0.1", port, ssl=context):
        print("ready", flush=True)
        await asyncio.sleep(seconds)
    for code in codes:
        print(f"closed {code if code is not None else 'none'}")
    print(f"messages {count}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:5]))
