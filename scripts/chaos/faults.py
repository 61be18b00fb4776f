"""Fault injectors of the chaos campaign (scripts/chaos/campaign.py).

`FaultProxy` is a TCP relay between the daemon and a service it needs (PostgreSQL, RabbitMQ): `down()`
resets every relayed connection and stops listening, so the daemon sees its connections terminated and
new ones refused, as when the service's host goes away; `up()` listens again on the same port. The
services themselves are the machine's shared ones and are never touched. The S3-protocol server is the
campaign's own process and is paused with SIGSTOP (requests hang, as with a stalled store)."""

from __future__ import annotations

import os
import signal
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FaultProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", self.port))
            s.listen(256)
            self._listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            s, self._listener = self._listener, None
            pairs, self._pairs = self._pairs, set()
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it
            except OSError:
                pass
            s.close()
        for pair in pairs:
            for sock in pair:
                _reset(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            pair = (client, upstream)
            with self._lock:
                if self._listener is not listener:  # went down meanwhile
                    _reset(client)
                    _reset(upstream)
                    return
                self._pairs.add(pair)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, pair), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket, pair) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _reset(sock: socket.socket) -> None:
    """Closes with an RST (SO_LINGER 0), as a vanished peer looks. The read side is shut down first:
    closing the descriptor alone does not wake a pump thread blocked in recv() on it, whose reference
    then kept the socket open, with no RST sent — both ends of every proxied connection stayed
    established, and the long campaign ran PostgreSQL out of connections (100 leaked backends)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


def pause(pid: int) -> None:
    os.kill(pid, signal.SIGSTOP)


def resume(pid: int) -> None:
    os.kill(pid, signal.SIGCONT)
