"""Forward the connections made to a unix socket to a TCP address, both ways, until killed.

Run inside a network namespace (``ip netns exec NS python3 uds_forward.py SOCKET HOST PORT``), it lets a process of
another namespace reach a TCP service there: a unix socket is found by its path in the file system, which every
namespace shares, while the TCP address exists only inside NS. The tests reach the service inside ``srv`` this way
(tests/support/netns_service.py). Standard library only; one thread a direction of each connection.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading

BUFFER = 65536
BACKLOG = 128
CONNECT_TIMEOUT_S = 10.0


def pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until ``source`` ends, then end ``sink``'s writing side."""
    with contextlib.suppress(OSError):
        while data := source.recv(BUFFER):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def bridge(client: socket.socket, host: str, port: int) -> None:
    with client:
        try:
            upstream = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        except OSError:
            return  # the client sees its connection closed, as when nothing listens
        with upstream:
            upstream.settimeout(None)
            back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
            back.start()
            pump(client, upstream)
            back.join()


def main(path: str, host: str, port: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(BACKLOG)
    while True:
        client, _ = listener.accept()
        threading.Thread(target=bridge, args=(client, host, port), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
