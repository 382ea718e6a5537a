"""A WebSocket client from the `websockets` library, for interop tests.

Usage: ws_client.py PORT COUNT [CA]
Connects to ws://127.0.0.1:PORT/ (wss://localhost:PORT/, verified against
CA, when CA is given), sends COUNT text messages, reads frames
until 20 arrived (or two quiet seconds, or a close), closes normally, and prints `received <n>` and
`first <repr of the first message>`.
"""

import asyncio
import ssl
import sys

import websockets


async def main(port: int, count: int, ca) -> None:
    url, context = f"ws://127.0.0.1:{port}/", None
    if ca:
        url = f"wss://localhost:{port}/"
        context = ssl.create_default_context(cafile=ca)
    async with websockets.connect(url, ssl=context) as ws:
        for i in range(count):
            await ws.send(f"hello {i}")
        received = []
        try:
            while len(received) < 20:
                received.append(await asyncio.wait_for(ws.recv(), timeout=2))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
    print(f"received {len(received)}")
    print(f"first {received[0]!r}" if received else "first none", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
