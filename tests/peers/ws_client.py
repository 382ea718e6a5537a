"""A WebSocket client from the `websockets` library, for interop tests.

Usage: ws_client.py PORT COUNT
Connects to ws://127.0.0.1:PORT/, sends COUNT text messages, reads frames
until 20 arrived (or two quiet seconds, or a close), closes normally, and prints `received <n>` and
`first <repr of the first message>`.
"""

import asyncio
import sys

import websockets


async def main(port: int, count: int) -> None:
    async with websockets.connect(f"ws://127.0.0.1:{port}/") as ws:
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
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
