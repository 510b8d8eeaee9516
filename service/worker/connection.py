"""A connection as the worker reads and answers it: every read and send has a deadline.

Part of service/worker (see its docstring for the whole design).
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from dataclasses import dataclass

from gunicorn.workers.gthread import TConn


@dataclass(frozen=True)
class WorkerSettings:
    """What service/operations/gunicorn_conf.py reads from the environment for this worker."""

    read_timeout: float = 10.0
    send_timeout: float = 30.0
    min_transfer_rate: float = float(1 << 20)
    drain_seconds: float = 2.0
    body_buffer_bytes: int = 64 << 20


class ReadTimedOut(Exception):
    """The request did not arrive by its deadline (not an OSError: gthread would log a trace)."""


class SendTimedOut(BrokenPipeError):
    """The client did not read the answer in time: closed like a client that went away."""

    def __init__(self) -> None:
        super().__init__(errno.EPIPE, "the client did not read the answer in time")


class Connection(TConn):
    """gthread's connection, with the request being read: its first bytes and its deadline."""

    def __init__(self, cfg, sock, client, server, settings: WorkerSettings):
        super().__init__(cfg, sock, client, server)
        self.settings = settings
        self.head = bytearray()  # bytes read by the event loop, not yet parsed
        self.started: float | None = None  # when the current request began to arrive
        self.received = 0  # bytes of the current request read so far
        self.reader = DeadlineReader(sock, self)
        self.sender = BoundedSender(sock, self)

    def close(self, graceful=False):
        if self.sock.fileno() != -1:  # not closed on its thread already (see handle)
            super().close(graceful)

    def begin_request(self, now: float) -> None:
        self.started, self.received = now, 0

    def head_deadline(self) -> float:
        return self.started + self.settings.read_timeout

    def read_deadline(self) -> float:
        """The request's read timeout, plus the time its bytes so far take at the minimum rate."""
        return self.head_deadline() + self.received / self.settings.min_transfer_rate


class _Delegating:
    def __init__(self, sock: socket.socket, conn: Connection):
        self._sock = sock
        self._conn = conn

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class DeadlineReader(_Delegating):
    """The client socket as gunicorn's parser sees it: no read goes past the request's deadline.

    A socket timeout bounds one ``recv``, not a request: a client sending a byte
    a second would never trip it.  So before each ``recv`` the timeout is set to
    what is left of the request's deadline.
    """

    def recv(self, size: int) -> bytes:
        remaining = self._conn.read_deadline() - time.monotonic()
        if remaining <= 0:
            raise ReadTimedOut
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(size)
        except TimeoutError:
            raise ReadTimedOut from None
        self._conn.received += len(data)
        return data


class BoundedSender(_Delegating):
    """The client socket as gunicorn's response sees it: every send has a deadline.

    A socket timeout bounds a whole ``sendall`` (Python 3.5+): the send timeout,
    plus the time the data takes at the minimum transfer rate.
    """

    def sendall(self, data: bytes) -> None:
        settings = self._conn.settings
        self._sock.settimeout(settings.send_timeout + len(data) / settings.min_transfer_rate)
        try:
            self._sock.sendall(data)
        except TimeoutError:
            raise SendTimedOut from None


def client_ip(address) -> str:
    return address[0] if isinstance(address, tuple) and address else str(address)


def hang_up(sock) -> None:
    """Read what the client sent since, then send FIN: closing with unread bytes would send
    a reset, which can destroy the answer before the client reads it. Never blocks."""
    try:
        sock.setblocking(False)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)


def send_quietly(sock, data: bytes) -> None:
    """Best effort, never blocking: the client may be gone or not reading."""
    try:
        sock.setblocking(False)
        sock.send(data)
    except OSError:
        pass
