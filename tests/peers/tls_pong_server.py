"""A TLS server from Python's ssl module (OpenSSL), for interop tests.

Usage: tls_pong_server.py PORT CERT KEY SECONDS
Listens on 127.0.0.1:PORT, answers every `PING\n` with `PONG\n` on each
connection, prints `ready`, and when it stops prints `pings <n>` (requests
answered) and `handshakes <n>`.
"""

import socket
import ssl
import sys
import threading
import time


def main(port: int, cert: str, key: str, seconds: float) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", port))
    listener.settimeout(0.2)
    counts = {"pings": 0, "handshakes": 0}
    lock = threading.Lock()

    def serve(conn: socket.socket) -> None:
        try:
            with ctx.wrap_socket(conn, server_side=True) as tls:
                with lock:
                    counts["handshakes"] += 1
                pending = b""
                while True:
                    data = tls.recv(65536)
                    if not data:
                        return
                    pending += data
                    n = pending.count(b"PING\n")
                    if n:
                        pending = pending[pending.rindex(b"PING\n") + 5:]
                        tls.sendall(b"PONG\n" * n)
                        with lock:
                            counts["pings"] += n
        except (OSError, ssl.SSLError):
            return

    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    print(f"pings {counts['pings']}")
    print(f"handshakes {counts['handshakes']}", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4]))
