"""What a worker holds at once: the compute slot, the bytes of request bodies, a body handed
over to the application, and an answer that frees both once it is sent.

Part of service/worker (see its docstring for the whole design).
"""

from __future__ import annotations

import io
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import Connection


class ComputeSlot:
    """One computation at a time; the others wait in arrival order (a lock hands over FIFO)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False
        #: time.monotonic() when the running application call began, else None
        self.computing_since: float | None = None
        self.computing_conn: Connection | None = None

    def acquire(self) -> bool:
        """Take the slot; True when it had to wait for it."""
        with self._mutex:
            if not self._held:
                self._held = True
                return False
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        waiter.acquire()  # released by release(), which hands the slot over
        return True

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    @property
    def busy(self) -> bool:
        return self._held

    @property
    def contended(self) -> bool:
        return bool(self._waiters)


class ByteBudget:
    """Bytes of request bodies a worker holds in memory at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = threading.Condition()

    def acquire(self, size: int, deadline: float) -> bool:
        """Reserve ``size`` bytes, waiting until ``deadline`` (time.monotonic()) at most."""
        with self._changed:
            while self.used + size > self.capacity:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or size > self.capacity:
                    return False
                self._changed.wait(remaining)
            self.used += size
            return True

    def release(self, size: int) -> None:
        if size:
            with self._changed:
                self.used -= size
                self._changed.notify_all()


class ReadOnce(io.RawIOBase):
    """A body read before the application ran. Read whole, it hands its bytes over and keeps
    none (a BytesIO would keep them alive, and in memory, for the rest of the request)."""

    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data, at = self._data, self._at
        if at == 0 and (size is None or size < 0 or size >= len(data)):
            self._data = b""
            return data
        end = len(data) if size is None or size < 0 else min(len(data), at + size)
        self._at = end
        return data[at:end]

    def readinto(self, buffer) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class Answer:
    """The application's answer, with the slot and the body's bytes freed when it is sent."""

    def __init__(self, result, done) -> None:
        self._result = result
        self._done = done

    def __iter__(self):
        return iter(self._result)

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            done, self._done = self._done, None
            if done is not None:
                done()
