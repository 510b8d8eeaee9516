"""The gunicorn worker: gunicorn's threaded worker, made to hold against slow clients.

gunicorn's sync worker reads a request on the one thread that computes, with no
deadline: two clients sending their headers a byte a second stopped a two-worker
service for as long as they liked.  Plain gthread holds a thread for every
connection being read, also without a deadline.  This worker (measured against
both in bench/slowclients.py):

- reads each request's head (request line and headers) in the worker's event
  loop, so a client dribbling its headers holds no thread at all;
- gives every request a read deadline, GUNICORN_READ_TIMEOUT after its first
  byte (after the accept, on a new connection) plus the time its bytes take at
  GUNICORN_MIN_TRANSFER_RATE; past it the client gets a 408 and is disconnected;
- reads the whole body before the application runs (the application never
  waits on a socket); bodies over 1 MiB share a per-worker memory budget,
  GUNICORN_BODY_BUFFER_BYTES;
- runs one request to /v1/ at a time, the others waiting in arrival order: a
  worker's memory stays one computation's worth and its CPU-bound throughput
  the sync worker's, while /healthz, /readyz and /metrics are answered by other
  threads even during a 20 s computation;
- bounds every send the same way (GUNICORN_SEND_TIMEOUT plus the rate);
- leaves new connections to an idle worker for a moment while it computes;
- answers gunicorn's own refusals (400, 408, 414, 431, ...) in problem+json;
- on SIGTERM turns /readyz 503 and keeps accepting for GUNICORN_DRAIN_SECONDS,
  then closes its listening sockets, so new connections are refused at once
  instead of hanging, and finishes the requests it holds;
- keeps the sync worker's watchdog: a computation running longer than
  GUNICORN_TIMEOUT gets the worker replaced.

Plain HTTP/1.1 only: TLS and HTTP/2 end in front (nginx, the ingress).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections import deque
from functools import partial

from gunicorn.http.body import ChunkedReader, LengthReader
from gunicorn.workers.gthread import ThreadWorker

from . import lifecycle
from .budgets import Answer, ByteBudget, ComputeSlot, ReadOnce
from .connection import (
    Connection,
    ReadTimedOut,
    WorkerSettings,
    client_ip,
    hang_up,
    send_quietly,
)
from .problems import BUSY, CLIENT_ERRORS, excerpt, problem_bytes

__all__ = ["ARRIVED", "ComputeSlot", "GradientWorker", "ReadOnce", "WorkerSettings"]

#: WSGI environ key: when this request arrived, in time.monotonic() seconds
ARRIVED = "gradient.arrived"
#: requests under this path take the worker's compute slot
COMPUTING_PREFIX = "/v1/"
#: a request head still unfinished at this size goes to gunicorn's parser as it is
HEAD_LIMIT = 32 * 1024
#: bodies up to this size are read without asking the body budget
SMALL_BODY = 1 << 20
#: how long a computing worker leaves a new connection to an idle one
ACCEPT_DELAY = 0.02
_READ = 1  # selectors.EVENT_READ


class GradientWorker(ThreadWorker):
    """See the module docstring; ``configured`` gives it the settings gunicorn_conf read."""

    settings = WorkerSettings()

    @classmethod
    def configured(cls, settings: WorkerSettings) -> type[GradientWorker]:
        return type(cls.__name__, (cls,), {"settings": settings, "__module__": cls.__module__})

    @classmethod
    def check_config(cls, cfg, log):
        super().check_config(cfg, log)
        if cfg.is_ssl or "h2" in cfg.http_protocols:
            raise RuntimeError(
                "service.worker serves plain HTTP/1.1: end TLS and HTTP/2 in front of it"
            )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slot = ComputeSlot()
        self.bodies = ByteBudget(self.settings.body_buffer_bytes)
        self.max_body: int | None = None
        self.reading: deque[Connection] = deque()  # heads arriving, oldest deadline first
        self.accept_paused_until = 0.0
        self.drain_until: float | None = None
        self.current = threading.local()  # the connection and request a thread serves

    # -- the application call -------------------------------------------------------------

    def load_wsgi(self):
        super().load_wsgi()
        # Flask's own limit: a body over it is refused by the app without being read here
        self.max_body = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        self.wsgi = partial(self.serve, self.wsgi)

    def serve(self, app, environ, start_response):
        """Read the body, wait for the compute slot if this is a computation, call the app."""
        conn, req = self.current.conn, self.current.req
        environ[ARRIVED] = conn.started
        if lifecycle.is_draining():
            req.must_close = True  # come back on a new connection, to a server that stays
        reserved = self.read_body(environ, conn, req)
        if reserved is None:
            req.must_close = True
            start_response(
                "503 Service Unavailable",
                [
                    ("Content-Type", "application/problem+json"),
                    ("Content-Length", str(len(BUSY))),
                    ("Retry-After", "5"),
                ],
            )
            return [BUSY]
        computing = environ.get("PATH_INFO", "").startswith(COMPUTING_PREFIX)
        if computing:
            if self.slot.acquire() or self.slot.contended:
                # a new connection for the next request may find an idle worker
                req.must_close = True
            self.slot.computing_conn = conn
            self.slot.computing_since = time.monotonic()
        try:
            result = app(environ, start_response)
        except BaseException:
            self._done(computing, reserved)
            raise
        if computing:
            self.slot.computing_since = None  # sending is not computing (the watchdog)
        return Answer(result, partial(self._done, computing, reserved))

    def _done(self, computing: bool, reserved: int) -> None:
        """The answer is sent (or failed): free the body's bytes and the slot."""
        self.bodies.release(reserved)
        if computing:
            self.slot.computing_since = None
            self.slot.release()

    def read_body(self, environ, conn: Connection, req) -> int | None:
        """Read the whole body into memory before the app runs; the bytes reserved, or None."""
        reader = req.body.reader
        if isinstance(reader, LengthReader):
            wanted = reader.length
            if not wanted:
                return 0
            if self.max_body is not None and wanted > self.max_body:
                req.must_close = True  # the app answers 413; the body is never read
                return 0
        elif isinstance(reader, ChunkedReader):
            # one byte past the limit tells the app (service/http/body.py) it is over
            wanted = self.max_body + 1 if self.max_body is not None else self.bodies.capacity
        else:
            return 0
        reserved = wanted if wanted > SMALL_BODY else 0
        if reserved and not self.bodies.acquire(reserved, conn.read_deadline()):
            return None
        try:
            body = environ["wsgi.input"].read(wanted)
        except BaseException:
            self.bodies.release(reserved)
            raise
        if isinstance(reader, ChunkedReader) and len(body) == wanted:
            req.must_close = True  # over the limit: the rest is never read
        elif len(body) < wanted:
            req.must_close = True  # the client stopped sending (the app answers 400)
        if reserved:
            self.bodies.release(reserved - len(body))
            reserved = len(body)
        environ["wsgi.input"] = ReadOnce(body)
        return reserved

    def handle_request(self, req, conn):
        self.current.req = req
        raw, conn.sock = conn.sock, conn.sender  # the answer is sent through it
        try:
            return super().handle_request(req, conn)
        finally:
            conn.sock = raw

    def handle(self, conn):
        """Serve one request on a worker thread; its head was usually read by the event loop."""
        conn.data_ready = True  # never wait on a thread for a client's first bytes
        if conn.started is None:  # a request pipelined behind the last one
            conn.begin_request(time.monotonic())
        conn.sock.setblocking(True)
        conn.init()
        if conn.head:
            conn.parser.unreader.unread(bytes(conn.head))
            conn.received += len(conn.head)
            conn.head.clear()
        conn.parser.unreader.sock = conn.reader
        self.current.conn = conn
        try:
            keep = super().handle(conn)
        finally:
            conn.started = None
            self.current.conn = self.current.req = None
        if keep is False:
            # Here, not where gthread does it: its graceful close waits up to 2 s for
            # the client to hang up, and on the event loop that stalls every connection.
            conn.close(graceful=True)
        return keep

    def handle_abort(self, sig, frame):
        """The arbiter's watchdog (GUNICORN_TIMEOUT): tell the computation's client, then go
        at once (an interpreter exit would wait for the computing thread)."""
        conn = self.slot.computing_conn
        if self.slot.computing_since is not None and conn is not None:
            # nothing of its answer is sent while the application runs
            send_quietly(
                conn.sock,
                problem_bytes(
                    500,
                    f"the computation ran past {self.cfg.timeout} s (GUNICORN_TIMEOUT) and "
                    "its worker was replaced; send a smaller problem.",
                ),
            )
        self.alive = False
        self.cfg.worker_abort(self)
        os._exit(1)

    def notify(self):
        """The heartbeat; during a computation it says when the computation began, so that
        one running past GUNICORN_TIMEOUT gets this worker replaced, as a sync worker would."""
        started = self.slot.computing_since
        if started is None:
            super().notify()
        else:
            os.utime(self.tmp.fileno(), (started, started))

    # -- gunicorn's own answers -----------------------------------------------------------

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, ReadTimedOut):
            self.log.info("closed a request from %s not received in time", client_ip(addr))
            send_quietly(client, self.timeout_answer())
            return
        for kinds, status, advice in CLIENT_ERRORS:
            if isinstance(exc, kinds):
                self.log.warning(
                    "invalid request from %s: %s", client_ip(addr), excerpt(str(exc), 200)
                )
                detail = f"{advice} (gunicorn: {excerpt(str(exc))})"
                send_quietly(client, problem_bytes(status, detail))
                return
        self.log.exception("error handling a request")
        send_quietly(
            client,
            problem_bytes(500, "The service failed unexpectedly; the error has been logged."),
        )

    def timeout_answer(self) -> bytes:
        return problem_bytes(
            408,
            f"the request did not arrive within {self.settings.read_timeout:g} s "
            f"(plus 1 s per {self.settings.min_transfer_rate:,.0f} bytes); "
            "send the whole request at once.",
        )

    # -- the event loop: accepting and reading heads ----------------------------------------

    def accept(self, listener):
        now = time.monotonic()
        if self.slot.busy and now >= self.accept_paused_until + ACCEPT_DELAY:
            # computing: leave this connection to an idle worker, take it if none does
            self.accept_paused_until = now + ACCEPT_DELAY
            super().set_accept_enabled(False)
            return
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            if error.errno in (errno.EMFILE, errno.ENFILE):
                self.log.warning("out of file descriptors: not accepting for a second")
                self.accept_paused_until = now + 1.0
                super().set_accept_enabled(False)
                return
            raise
        self.nr_conns += 1
        conn = Connection(self.cfg, client, address, listener.getsockname(), self.settings)
        conn.begin_request(now)
        self.await_head(conn)

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection sends its next request."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        conn.begin_request(time.monotonic())
        self.await_head(conn)

    def await_head(self, conn: Connection) -> None:
        self.reading.append(conn)
        self.poller.register(conn.sock, _READ, partial(self.read_head, conn))
        self.read_head(conn, conn.sock)  # often the whole request is there already

    def read_head(self, conn: Connection, sock) -> None:
        try:
            data = conn.sock.recv(HEAD_LIMIT)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self.stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        seen = len(conn.head)
        conn.head += data
        start = max(0, seen - 3)
        if (
            conn.head.find(b"\r\n\r\n", start) >= 0
            or conn.head.find(b"\n\n", start) >= 0
            or len(conn.head) >= HEAD_LIMIT
        ):
            self.stop_reading(conn)
            self.enqueue_req(conn)

    def stop_reading(self, conn: Connection) -> None:
        self.reading.remove(conn)
        self.poller.unregister(conn.sock)

    def murder_pending(self):
        """Also close the connections whose head did not arrive in time (408 if it began)."""
        super().murder_pending()
        now = time.monotonic()
        while self.reading and self.reading[0].head_deadline() <= now:
            conn = self.reading.popleft()
            self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            if conn.head:
                self.log.info(
                    "closed a request from %s not received in time", client_ip(conn.client)
                )
                send_quietly(conn.sock, self.timeout_answer())
                hang_up(conn.sock)
            conn.close()

    def set_accept_enabled(self, enabled):
        if enabled and time.monotonic() < self.accept_paused_until:
            enabled = False
        super().set_accept_enabled(enabled)

    def wait_for_and_dispatch_events(self, timeout):
        """gthread's wait, woken in time for a paused accept, a deadline or the drain's end."""
        now = time.monotonic()
        moments = [self.accept_paused_until]
        if self.reading:
            moments.append(self.reading[0].head_deadline())
        if self.drain_until is not None:
            moments.append(self.drain_until)
        for moment in moments:
            if moment > now:
                timeout = min(timeout, moment - now)
        super().wait_for_and_dispatch_events(timeout)
        if self.drain_until is not None and self.alive and time.monotonic() >= self.drain_until:
            self.stop_listening()

    # -- SIGTERM ----------------------------------------------------------------------------

    def handle_exit(self, sig, frame):
        """Drain: /readyz 503 at once, new connections accepted a little longer, then refused."""
        lifecycle.mark_draining()
        if self.alive and self.drain_until is None:
            self.drain_until = time.monotonic() + self.settings.drain_seconds
            self.method_queue.defer(lambda: None)  # wake the loop to time the drain

    def stop_listening(self) -> None:
        """Stop accepting and close this worker's listening sockets: once every process has,
        the port refuses connections instead of queueing them for no one."""
        self.alive = False
        super().set_accept_enabled(False)
        for listener in self.sockets:
            listener.close()
        self.log.info("stopped accepting; finishing %d connection(s)", self.nr_conns)
