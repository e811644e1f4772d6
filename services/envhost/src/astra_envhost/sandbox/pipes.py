"""The host's end of a worker's pipes: bounded reply lines, a stderr tail, exit notices."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import cast

STDERR_TAIL_BYTES = 4096
"""How much of the worker's stderr is kept (the end of it), for crash messages."""


class ReplyTooLarge(Exception):
    """The worker wrote more than the line limit without a newline, or unread lines piled up."""


class WorkerPipes(asyncio.SubprocessProtocol):
    """Collects the worker's stdout into lines, never holding more than ``line_limit`` bytes.

    Past the limit the pipe is no longer read (the worker's writes then block) and
    ``readline()`` raises ``ReplyTooLarge``: a worker writing garbage cannot grow host memory.
    """

    def __init__(self, line_limit: int) -> None:
        loop = asyncio.get_running_loop()
        self._line_limit = line_limit
        self._transport: asyncio.SubprocessTransport | None = None
        self._partial = bytearray()
        self._lines: deque[bytes] = deque()
        self._queued_bytes = 0
        self._overflowed = False
        self._stdout_closed = False
        self._waiter: asyncio.Future[None] | None = None
        self.stderr_tail = bytearray()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.SubprocessTransport, transport)

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        if fd == 2:
            self.stderr_tail += data
            del self.stderr_tail[:-STDERR_TAIL_BYTES]
        elif fd == 1 and not self._overflowed:
            self._receive_stdout(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self._stdout_closed = True
            self._wake()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    async def readline(self) -> bytes:
        """The next line, newline included; ``b""`` once stdout is closed (the worker died)."""
        while not self._lines:
            if self._overflowed:
                raise ReplyTooLarge
            if self._stdout_closed:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        line = self._lines.popleft()
        self._queued_bytes -= len(line)
        return line

    def _receive_stdout(self, data: bytes | bytearray) -> None:
        self._partial += data
        while (end := self._partial.find(b"\n")) >= 0:
            line = bytes(self._partial[: end + 1])
            del self._partial[: end + 1]
            self._lines.append(line)
            self._queued_bytes += len(line)
        if len(self._partial) + self._queued_bytes > self._line_limit:
            self._overflowed = True
            self._partial = bytearray()
            self._lines.clear()
            self._queued_bytes = 0
            stdout = self._transport.get_pipe_transport(1) if self._transport else None
            if isinstance(stdout, asyncio.ReadTransport):
                stdout.pause_reading()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
