"""A rude TLS 1.3 peer (Python's ssl, i.e. OpenSSL) for tests/hostile.rs.

server PORT CERT KEY MODE COUNT
    Serves COUNT connections one after another, then stops listening. Each
    gets 1000 bytes of application data, then MODE:
      fin  a plain TCP FIN, no close_notify; waits up to 3 s for the
           client to close its side too (prints "closed" or "stuck")
      rst  a TCP reset
      bad  a forged application-data record, then the socket is held
           until the client gives up on it
    Prints "served N" at the end.

client PORT COUNT
    Opens COUNT connections at once, each sends 10 bytes and a plain TCP
    FIN without close_notify, then waits up to 3 s for the sink to close
    its side. Prints "closed N of COUNT".
"""

import os
import socket
import ssl
import struct
import sys
import time


def wait_for_close(sock, seconds):
    """True when the peer closes its side (or resets) within `seconds`."""
    sock.settimeout(seconds)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def serve(port, cert, key, mode, count):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    listener.settimeout(10)
    served = 0
    outcomes = []
    while served < count:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            break
        # Every record leaves at once: Nagle would hold the data behind the
        # session tickets until the client's delayed ACK, and a reset
        # would then discard it before it was ever sent.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = ctx.wrap_socket(conn, server_side=True)
            tls.sendall(b"a" * 1000)
        except (ssl.SSLError, OSError):
            conn.close()
            continue
        served += 1
        # The same socket, written around the TLS layer.
        raw = socket.socket(fileno=os.dup(tls.fileno()))
        if mode == "fin":
            raw.shutdown(socket.SHUT_WR)
            outcomes.append("closed" if wait_for_close(raw, 3) else "stuck")
        elif mode == "rst":
            # At once: the reset lands behind the data, before the
            # client has read it.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "bad":
            raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
            wait_for_close(raw, 3)
        raw.close()
        tls.close()
    listener.close()
    for outcome in outcomes:
        print(outcome)
    print(f"served {served}", flush=True)


def rude_clients(port, count):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    raws = []
    for _ in range(count):
        tls = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)))
        tls.sendall(b"0123456789")
        raw = socket.socket(fileno=os.dup(tls.fileno()))
        raw.shutdown(socket.SHUT_WR)
        raws.append((tls, raw))
    deadline = time.time() + 3
    closed = 0
    for tls, raw in raws:
        if wait_for_close(raw, max(0.01, deadline - time.time())):
            closed += 1
        raw.close()
        tls.close()
    print(f"closed {closed} of {count}", flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        rude_clients(int(sys.argv[2]), int(sys.argv[3]))
