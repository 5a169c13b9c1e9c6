"""Opens N keep-alive connections to HOST:PORT, sends one request on each,
holds them all idle for 10 s, then sends a second request on each: every
connection must still be open and answered. Prints one line of results."""
import selectors
import socket
import sys
import time

host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def round_trip(sockets):
    """Sends the request on every socket and waits for every answer."""
    selector = selectors.DefaultSelector()
    failed = 0
    for s in sockets:
        try:
            s.sendall(request)
        except OSError:
            failed += 1
            continue
        selector.register(s, selectors.EVENT_READ)
    pending, deadline = len(selector.get_map()), time.time() + 60
    while pending and time.time() < deadline:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(4096)
            except OSError:
                data = b""
            if not data.startswith(b"HTTP/1.1 200"):
                failed += 1
            selector.unregister(key.fileobj)
            pending -= 1
    return failed + pending


sockets, connect_errors = [], 0
for _ in range(count):
    try:
        s = socket.create_connection((host, port), timeout=10)
        s.setblocking(False)
        sockets.append(s)
    except OSError:
        connect_errors += 1
first = round_trip(sockets)
time.sleep(10)
second = round_trip(sockets)
print(f"{len(sockets)} opened, {connect_errors} refused, {first} failed first requests, "
      f"{second} failed after 10 s idle")
